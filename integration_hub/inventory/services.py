"""Inbound stock from inventory masters: webhook batches and polled change pages.

:func:`apply_stock_changes` is the one entry point. It validates every change, maps the master's
location ids (``Location.external_id`` on that connection) and master SKUs (``Item.sku``), writes
``StockLevel`` with one upsert per 2,000 rows, ignores changes older than what is stored
(``source_updated_at``; the guard is in the upsert itself so concurrent writers cannot regress a
row), and enqueues the pushes those changes cause in the same transaction.

Reservations the master now carries are released in the same transaction
(:func:`.reservations.release_reflected`; the whole reservation lifecycle lives in :mod:`.reservations`): an
acknowledged order's hold stays until this master reports
a changed figure for the item where it allocated the line (``Reservation.allocated_location``, wherever that
is; any of its locations when it did not say), with a change time at or after the acknowledgement (a
repeated, unchanged figure releases nothing). A figure that arrived before the acknowledgement is re-checked
when the hold is marked (``reservations.mark_holds_acknowledged`` → ``recheck_holds``, against
``StockLevel.moved_at``), and every acknowledged hold is bounded (``reservations.expire_holds``: released with a record).

Bad rows never block good ones; each becomes an exception record merged by key:
  unknown SKU        unknown_sku:<connection name>:<master sku>   (no channel yet: the master's name
                     takes the channel slot of the convention). From the SKU master (``options.item_master``)
                     a well-formed unknown SKU becomes a pending item instead and its stock is kept
                     (:func:`integration_hub.catalog.master_pull.create_pending_items`)
  unknown location   bad_payload:<connection name>:stock-location:<location id>
  bad quantity/state bad_payload:<connection name>:stock:<sku@location> (the change ref when those are missing);
  or a change time   different problems on one sku@location stay listed apart in the record's
  in the future      ``context["problems"]`` (message, count, example), across batches too; a ``changed_at``
                     more than ``HUB["FUTURE_TOLERANCE_SECONDS"]`` ahead of the hub's clock is a bad row too
                     (kept, it would make every later real change of that SKU look stale)

A negative *available* figure is not a bad row but a fact (the master oversold): it is stored as reported
(drift and reports see it), counts as 0 towards ATS (:mod:`.ats`), and raises one record per master SKU and
location, ``stock_drift:<connection name>:negative:<sku@location>``, cleared when that figure is back to
zero or more. A negative figure in any other state is a bad row.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import connection as db, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from connectors.base import StockChange
from connectors.parsing import RejectedRow
from exceptions_app import kinds
from exceptions_app.services import Problem, clear, raise_many
from integration_hub.catalog.master_pull import create_pending_items
from integration_hub.catalog.models import Item
from integration_hub.core.models import Location, SyncCursor

from . import outbox, reservations
from .models import InventoryState, PendingPush, StockLevel
from .reservations import ATS_STATES

log = logging.getLogger(__name__)

UPSERT_CHUNK = 2000
LOOKUP_CHUNK = 5000
_INT_RX = re.compile(r"^\s*\d+\s*$")


@dataclass
class ApplyResult:
    received: int = 0
    applied: int = 0  # rows written with a new quantity
    unchanged: int = 0  # same quantity as stored (timestamp refreshed only)
    stale: int = 0  # older than what is stored: ignored
    rejected: int = 0  # became exception records
    enqueued: int = 0  # pending-push rows inserted or updated
    released: int = 0  # acknowledged orders' reservations the master's figures now carry

    def as_dict(self) -> dict:
        return asdict(self)


class InvalidChange(ValueError):
    pass


def _field(change, name, default=None):
    if isinstance(change, dict):
        return change.get(name, default)
    return getattr(change, name, default)


def _quantity(value) -> int:
    if isinstance(value, bool):
        raise InvalidChange(f"quantity {value!r} is not a number")
    if isinstance(value, int):
        q = value
    elif isinstance(value, float) and value.is_integer():
        q = int(value)
    elif isinstance(value, str) and _INT_RX.match(value):
        q = int(value)
    else:
        raise InvalidChange(f"quantity {value!r} is not a whole number")
    return q


def _timestamp(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise InvalidChange(f"changed_at {value!r} is not a timestamp")
        value = parsed
    if not isinstance(value, datetime):
        raise InvalidChange(f"changed_at {value!r} is not a timestamp")
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt_timezone.utc)
    return value


def future_horizon() -> datetime:
    """The latest change time the hub accepts: now plus ``HUB["FUTURE_TOLERANCE_SECONDS"]`` (default 300)."""
    return timezone.now() + timedelta(seconds=int(settings.HUB.get("FUTURE_TOLERANCE_SECONDS", 300)))


def _validate(change, horizon: datetime | None = None) -> tuple[str, str, int, str, datetime | None, str]:
    sku, loc = _field(change, "sku"), _field(change, "location")
    if not isinstance(sku, str) or not sku.strip():
        raise InvalidChange(f"sku {sku!r} is missing or not text")
    if isinstance(loc, int) and not isinstance(loc, bool):
        loc = str(loc)
    if not isinstance(loc, str) or not loc.strip():
        raise InvalidChange(f"location {loc!r} is missing or not text")
    state = _field(change, "state", InventoryState.AVAILABLE) or InventoryState.AVAILABLE
    if state not in InventoryState.values:
        raise InvalidChange(f"state {state!r} is not one of {', '.join(InventoryState.values)}")
    qty = _quantity(_field(change, "quantity"))
    if qty < 0 and state != InventoryState.AVAILABLE:  # an oversold shelf is a fact; a negative hold is not
        raise InvalidChange(f"quantity {qty} is negative")
    ts = _timestamp(_field(change, "changed_at"))
    if ts is not None and horizon is not None and ts > horizon:
        # kept, it would make every later real change of this SKU look stale until that date
        raise InvalidChange(
            f"changed_at {ts.isoformat()} is in the future (more than "
            f"{int(settings.HUB.get('FUTURE_TOLERANCE_SECONDS', 300))} s ahead of the hub's clock)"
        )
    return sku.strip(), loc.strip(), qty, str(state), ts, str(_field(change, "ref", "") or "")


def _excerpt(change) -> dict:
    if isinstance(change, dict):
        raw = change
    elif isinstance(change, StockChange):
        raw = asdict(change)
    else:
        raw = {"value": repr(change)}
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in list(raw.items())[:12]}


def apply_stock_changes(connection, changes, *, source: str = "stock") -> ApplyResult:
    """Apply absolute stock changes from master ``connection``. Returns counts; never raises for a bad row.
    ``changes`` may be a :class:`connectors.parsing.ParsedBatch`: its ``rejected`` rows (what the connector could not
    read) are filed with the rows this validator rejects, as the same ``bad_payload`` records."""
    rejected: list[RejectedRow] = list(getattr(changes, "rejected", []))
    changes = list(changes)
    result = ApplyResult(received=len(changes) + len(rejected))
    problems: list[Problem] = []
    conn_name = connection.name

    parsed = []
    horizon = future_horizon()
    bad = list(rejected)
    for i, change in enumerate(changes):
        try:
            parsed.append(_validate(change, horizon))
        except InvalidChange as exc:
            bad.append(
                RejectedRow(
                    index=i,
                    ref=str(_field(change, "ref", "") or ""),
                    field="stock change",
                    message=str(exc),
                    raw=change,
                )
            )
    if bad:
        problems.extend(_bad_row_problems(connection, bad, source))

    with transaction.atomic():
        locations = {}
        ext_ids = sorted({p[1] for p in parsed})
        for start in range(0, len(ext_ids), LOOKUP_CHUNK):
            locations.update(
                Location.objects.filter(
                    connection=connection, external_id__in=ext_ids[start : start + LOOKUP_CHUNK]
                ).values_list("external_id", "id")
            )
        skus = sorted({p[0] for p in parsed})
        items: dict[str, int] = {}
        for start in range(0, len(skus), LOOKUP_CHUNK):
            items.update(Item.objects.filter(sku__in=skus[start : start + LOOKUP_CHUNK]).values_list("sku", "id"))
        if len(items) < len(skus):  # the SKU master's new SKUs become pending items, not unknown_sku forever (issue 17)
            items.update(create_pending_items(connection, [s for s in skus if s not in items]))

        unknown_locations: dict[str, list] = defaultdict(list)
        unknown_skus: dict[str, list] = defaultdict(list)
        latest: dict[tuple[int, int, str], tuple] = {}
        multiplicity: dict[tuple[int, int, str], int] = defaultdict(int)
        for order, (sku, loc, qty, state, ts, ref) in enumerate(parsed):
            loc_id, item_id = locations.get(loc), items.get(sku)
            if loc_id is None:
                unknown_locations[loc].append((sku, qty, state, ref))
                continue
            if item_id is None:
                unknown_skus[sku].append((loc, qty, state, ref))
                continue
            key = (item_id, loc_id, state)
            multiplicity[key] += 1
            prev = latest.get(key)
            # the newest change wins; a change without a timestamp, or with an equal one, wins over the
            # earlier rows of the batch (masters list changes in order)
            if prev is None or ts is None or prev[1] is None or ts >= prev[1]:
                latest[key] = (qty, ts, order)
        for loc, rows in unknown_locations.items():
            problems.append(
                Problem(
                    kind="bad_payload",
                    key=kinds.key("bad_payload", conn_name, "stock-location", loc),
                    title=f"Stock for unknown location {loc!r} from {conn_name}",
                    message=f"{len(rows)} change(s) name location {loc!r}, which is not configured for {conn_name}. "
                    "Add the location (or fix the master) and re-sync.",
                    context={
                        "location": loc,
                        "changes": len(rows),
                        "example": dict(zip(("sku", "quantity", "state", "ref"), rows[0])),
                        "connection": conn_name,
                        "action": "add_location",
                    },
                    connection_id=connection.pk,
                )
            )
        for sku, rows in unknown_skus.items():
            problems.append(
                Problem(
                    kind="unknown_sku",
                    key=kinds.key("unknown_sku", conn_name, sku),
                    severity="warning",
                    title=f"Stock for unknown master SKU {sku!r} from {conn_name}",
                    message=f"{len(rows)} change(s) for {sku!r}, which is not in the item master.",
                    context={
                        "master_sku": sku,
                        "changes": len(rows),
                        "example": dict(zip(("location", "quantity", "state", "ref"), rows[0])),
                        "connection": conn_name,
                        "action": "add_item",
                    },
                    connection_id=connection.pk,
                    sku=sku,
                )
            )

        existing: dict[tuple[int, int, str], tuple[int, datetime | None]] = {}
        keys = list(latest)
        item_ids = sorted({k[0] for k in keys})
        loc_ids = sorted({k[1] for k in keys})
        for start in range(0, len(item_ids), LOOKUP_CHUNK):
            for i, loc, st, qty, ts in StockLevel.objects.filter(
                item_id__in=item_ids[start : start + LOOKUP_CHUNK], location_id__in=loc_ids
            ).values_list("item_id", "location_id", "state", "quantity", "source_updated_at"):
                existing[(i, loc, st)] = (qty, ts)

        rows, touched = [], defaultdict(list)  # touched: location_id -> [item ids, repeated per raw change]
        for key, (qty, ts, _) in latest.items():
            old = existing.get(key)
            # a stored time beyond the horizon (written before this check existed) never makes a change stale
            if old is not None and old[1] is not None and ts is not None and ts < old[1] <= horizon:
                result.stale += multiplicity[key]
                continue
            rows.append((key, qty, ts))
            if old is not None and old[0] == qty:
                result.unchanged += multiplicity[key]
            else:
                result.applied += multiplicity[key]
                if key[2] in ATS_STATES:
                    touched[key[1]].extend([key[0]] * multiplicity[key])
        _upsert_levels(rows, horizon)
        problems.extend(_negative_figures(connection, rows, existing, items, locations))
        for loc_id, ids in touched.items():
            result.enqueued += outbox.enqueue(
                ids, location_ids=[loc_id], priority=PendingPush.Priority.ROUTINE, reason=f"{source}:{conn_name}"
            )
        # only a figure that moved can carry an order's allocation (a repeat of the same figure cannot)
        result.released = reservations.release_reflected(
            connection, [r for r in rows if existing.get(r[0]) is None or existing[r[0]][0] != r[1]]
        )

    result.rejected = (
        len(rejected)
        + len(changes)
        - len(parsed)
        + sum(len(v) for v in unknown_locations.values())
        + sum(len(v) for v in unknown_skus.values())
    )
    if problems:
        raise_many(problems)
    applied_skus = {sku for sku, loc, *_ in parsed if sku in items and loc in locations}
    if applied_skus:
        clear([kinds.key("unknown_sku", conn_name, s) for s in applied_skus], reason="master SKU now known")
    return result


def _bad_row_problems(connection, rejected: list[RejectedRow], source: str) -> list[Problem]:
    """The rejected stock rows (the connector's and this validator's) as ``bad_payload`` records: one per
    sku@location (keyed on what is wrong, not the change id, so a recurring bad feed is one record; the row's ref
    when it names no pair); each distinct problem keeps its own line (message, count, example) in
    ``context["problems"]``, merged with what the open record already lists — two different bad rows on one pair
    never collapse into the last message. One query (the open records)."""
    from exceptions_app.models import ExceptionRecord

    bad: dict[str, list] = defaultdict(list)  # subject -> [(message, change, ref, sku)]
    for row in rejected:
        sku, loc = _field(row.raw, "sku"), _field(row.raw, "location")
        subject = (
            f"{sku}@{loc}" if isinstance(sku, str) and sku and loc not in (None, "") else (row.ref or f"{sku}@{loc}")
        )
        bad[subject].append((row.message, row.raw, row.ref, sku))
    conn_name = connection.name
    keys = {subject: kinds.key("bad_payload", conn_name, "stock", subject) for subject in bad}
    known = {
        r["dedupe_key"]: r["context"]
        for r in ExceptionRecord.objects.filter(
            dedupe_key__in=list(keys.values()), status__in=["open", "acknowledged"]
        ).values("dedupe_key", "context")
    }
    out = []
    for subject, rows in bad.items():
        listed: dict[str, dict] = {}
        for entry in (known.get(keys[subject]) or {}).get("problems") or []:
            if isinstance(entry, dict) and entry.get("message"):
                listed[entry["message"]] = dict(entry)
        for message, change, ref, _sku in rows:
            entry = listed.setdefault(message, {"message": message, "count": 0})
            entry["count"] = int(entry.get("count") or 0) + 1
            entry["example"], entry["ref"] = _excerpt(change), ref
        message, change, ref, sku = rows[-1]
        problems = sorted(listed.values(), key=lambda e: -e["count"])[:20]
        out.append(
            Problem(
                kind="bad_payload",
                key=keys[subject],
                title=f"Rejected stock change from {conn_name}: {message}"
                if len(listed) == 1
                else f"Rejected stock changes from {conn_name} for {subject}: {len(listed)} different problems",
                message="\n".join(f"{e['message']} (×{e['count']})" for e in problems),
                context={
                    "change": _excerpt(change),
                    "ref": ref,
                    "source": source,
                    "connection": conn_name,
                    "problems": problems,
                    "action": "fix_master_data",
                },
                connection_id=connection.pk,
                sku=str(sku or "")[:100],
            )
        )
    return out


def _negative_figures(connection, rows, existing, items: dict[str, int], locations: dict[str, int]) -> list[Problem]:
    """A ``stock_drift`` record per (master SKU, location) whose available figure just written is negative:
    the master oversold; the hub sells 0 there (ATS clamps each figure at 0) and keeps the real figure. A
    pair whose figure is back to zero or more has its record cleared."""
    conn_name = connection.name
    sku_of = {v: k for k, v in items.items()}
    loc_of = {v: k for k, v in locations.items()}
    out, recovered = [], []
    for (item_id, loc_id, state), qty, _ts in rows:
        if state != InventoryState.AVAILABLE:
            continue
        sku, loc = sku_of.get(item_id, str(item_id)), loc_of.get(loc_id, str(loc_id))
        key = kinds.key("stock_drift", conn_name, "negative", f"{sku}@{loc}")
        if qty < 0:
            out.append(
                Problem(
                    kind="stock_drift",
                    key=key,
                    severity="error",
                    connection_id=connection.pk,
                    sku=sku[:100],
                    title=f"{conn_name} reports {qty} available for {sku} at {loc} (oversold)",
                    message=f"The master's available figure for {sku} at {loc} is {qty}: the shelf is oversold. The hub "
                    "sells nothing from it (0 towards every channel's ATS) and keeps the real figure for drift "
                    "and reports. Check the orders allocated there and the master's count.",
                    context={
                        "master_sku": sku,
                        "location": loc,
                        "quantity": qty,
                        "connection": conn_name,
                        "action": "check_master_stock",
                    },
                )
            )
        elif (existing.get((item_id, loc_id, state)) or (0,))[0] < 0:
            recovered.append(key)
    if recovered:
        clear(recovered, reason="master figure no longer negative")
    return out


def _upsert_levels(
    rows: list[tuple[tuple[int, int, str], int, datetime | None]], horizon: datetime | None = None
) -> None:
    if not rows:
        return
    table = StockLevel._meta.db_table
    now = db.ops.adapt_datetimefield_value(timezone.now())
    future = db.ops.adapt_datetimefield_value(horizon or future_horizon())
    with db.cursor() as cur:
        for start in range(0, len(rows), UPSERT_CHUNK):
            chunk = rows[start : start + UPSERT_CHUNK]
            params: list = []
            for (item_id, loc_id, state), qty, ts in chunk:
                params += [
                    item_id,
                    loc_id,
                    state,
                    qty,
                    db.ops.adapt_datetimefield_value(ts),
                    now,
                    db.ops.adapt_datetimefield_value(ts) if ts is not None else now,
                ]
            cur.execute(
                f"""INSERT INTO {table} (item_id, location_id, state, quantity, source_updated_at, updated_at, moved_at)
                    VALUES """
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                + f"""
                    ON CONFLICT (item_id, location_id, state) DO UPDATE SET
                        moved_at = CASE WHEN {table}.quantity <> excluded.quantity THEN excluded.moved_at
                                        ELSE {table}.moved_at END,
                        quantity = excluded.quantity,
                        source_updated_at = COALESCE(excluded.source_updated_at, {table}.source_updated_at),
                        updated_at = excluded.updated_at
                    WHERE {table}.source_updated_at IS NULL OR excluded.source_updated_at IS NULL
                       OR excluded.source_updated_at >= {table}.source_updated_at
                       OR {table}.source_updated_at > %s""",
                params + [future],
            )


# --- polling ---------------------------------------------------------------------------------------
STREAM = "stock"


@dataclass
class PollResult:
    pages: int = 0
    changes: int = 0
    cursor: str = ""
    has_more: bool = False
    applied: ApplyResult | None = None


def poll_master(connection, *, max_pages: int = 50) -> PollResult:
    """Fetch stock changes since the stored cursor, page by page; each page and the cursor advance
    commit together, so a crash re-fetches at most one page (applying it twice is harmless: absolute
    quantities with timestamps)."""
    from connectors.registry import get_connector

    connector = get_connector(connection)
    cursor, _ = SyncCursor.objects.get_or_create(connection=connection, stream=STREAM)
    out = PollResult(cursor=cursor.value, applied=ApplyResult())
    for _ in range(max_pages):
        page = connector.stock_changes(cursor.value)
        with transaction.atomic():
            res = apply_stock_changes(connection, page.items, source="stock-poll")
            SyncCursor.objects.filter(pk=cursor.pk).update(value=page.cursor or cursor.value, updated_at=timezone.now())
        cursor.value = page.cursor or cursor.value
        out.pages += 1
        out.changes += len(page.items)
        for k, v in res.as_dict().items():
            setattr(out.applied, k, getattr(out.applied, k) + v)
        out.cursor, out.has_more = cursor.value, page.has_more
        if not page.has_more:
            break
    return out


def resync_master(connection, *, chunk: int = 5000) -> ApplyResult:
    """Apply the master's full snapshot (``stock_snapshot``) — the initial load, and the nightly safety net
    for anything a lost webhook and the change feed both missed. Same validation and outbox as the feed;
    rows older than what is stored are ignored, unchanged ones enqueue nothing."""
    from connectors.registry import get_connector

    total = ApplyResult()
    batch: list = []

    def flush():
        res = apply_stock_changes(connection, batch, source="stock-snapshot")
        for k, v in res.as_dict().items():
            setattr(total, k, getattr(total, k) + v)
        batch.clear()

    for change in get_connector(connection).stock_snapshot():
        batch.append(change)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return total
