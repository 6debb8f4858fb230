"""The reservation lifecycle, owned by the stock domain (:class:`.models.Reservation`).

An order's lines hold stock from capture until the master's own figures carry the order (or it is cancelled /
dispatched, or the hold outlives the master's feed lag). Every step is here, and every step queues the same
ORDER-priority push for the channels whose ATS it changes (:func:`_push`):

* **reserve** (:func:`reserve`): capture / validation (``orders.lines``) says which (order ref, item, channel)
  quantities are picked; rows not yet held are inserted (existing rows are kept).
* **discard** (:func:`discard`): an edited order line drops its active holds; validation reserves again.
* **release** (:func:`release`): cancelled or dispatched orders.
* **acknowledged** (:func:`mark_holds_acknowledged`): the master took the order; its holds wait for the master's
  stock feed to show it, re-checked at once (:func:`recheck_holds`) against figures that raced the acknowledgement.
* **carried by the feed** (:func:`release_reflected`): the inbound stock apply (``inventory.services``) releases
  holds the master now reports a moved figure for, in the transaction that wrote the figures.
* **expired** (:func:`expire_holds`, beat): a hold older than ``HUB["HOLD_MAX_SECONDS"]``, with a record.

Lock order: every write keyed by order touches reservation rows in ``order_ref`` order (sorted references, then
chunked; row-by-row marks sorted likewise), so two transactions releasing / marking overlapping orders take the row
locks in the same order instead of deadlocking each other; the set-based releases by stock figure
(:func:`release_reflected`, :func:`recheck_holds`, :func:`expire_holds`) are single statements per chunk. Callers
never write ``Reservation`` rows themselves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db, transaction
from django.utils import timezone

from exceptions_app import kinds
from exceptions_app.services import Problem, raise_many
from integration_hub.catalog.models import Item
from integration_hub.core.models import Connection, Location

from . import outbox
from .ats import _tables
from .models import InventoryState, PendingPush, Reservation, StockLevel

ATS_STATES = {InventoryState.AVAILABLE.value, InventoryState.RESERVED.value}  # the figures that count towards ATS
CHUNK = 500


def _chunks(seq, n=CHUNK):
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def reserve(wanted: dict[tuple[str, int, int], int], reason: str = "order reserved") -> int:
    """Hold ``wanted`` ((order ref, item id, channel id) → quantity): rows not held yet are inserted (existing
    ones, released or not, are kept), then one ORDER-priority push. Returns rows inserted."""
    if not wanted:
        return 0
    existing = set()
    refs = sorted({k for k, _, _ in wanted})
    for chunk in _chunks(refs):
        existing.update(
            Reservation.objects.filter(order_ref__in=chunk).values_list("order_ref", "item_id", "channel_id")
        )
    new = [
        Reservation(order_ref=k, item_id=i, channel_id=c, quantity=q)
        for (k, i, c), q in wanted.items()
        if (k, i, c) not in existing
    ]
    if not new:
        return 0
    Reservation.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
    _push({(r.channel_id, r.item_id) for r in new}, reason)
    return len(new)


def discard(order_ref: str) -> int:
    """Drop the active holds of an order whose lines are being edited (no push: validation reserves again)."""
    return Reservation.objects.filter(order_ref=order_ref, released_at__isnull=True).delete()[0]


def release(order_refs, reason: str) -> int:
    """Release the active holds of ``order_refs`` (cancelled / dispatched), then one push. Returns rows released."""
    refs = sorted(set(order_refs))
    pairs = set()
    now = timezone.now()
    n = 0
    for chunk in _chunks(refs):
        qs = Reservation.objects.filter(order_ref__in=chunk, released_at__isnull=True)
        pairs.update(qs.values_list("channel_id", "item_id"))
        n += qs.update(released_at=now, release_reason=reason[:50])
    if pairs:
        _push(pairs, f"order {reason}")
    return n


def mark_holds_acknowledged(acks) -> int:
    """Mark the active holds of acknowledged orders and re-check them at once. ``acks``: (order ref, master
    connection id, when the master took the order, allocations) — allocations maps master SKU → the master's
    location id where it allocated that line (``Acknowledgement.allocations``; may be empty).

    Each hold gets ``acknowledged_at``, ``warehouse`` and, where the master said, ``allocated_location``. Then
    :func:`recheck_holds`: the master's allocation figure may have reached the hub *before* this mark (the stock
    webhook raced the acknowledgement), and a figure already applied is never applied again — so a hold whose
    item already has a figure that moved at or after ``acknowledged_at`` (at the allocation location; any of the
    master's when unknown) is released now. Returns holds released. Call inside the acknowledging transaction."""
    acks = [(a[0], a[1], a[2], dict(a[3] or {}) if len(a) > 3 else {}) for a in acks]
    if not acks:
        return 0
    table = db.ops.quote_name(Reservation._meta.db_table)
    with db.cursor() as cur:
        rows = [[db.ops.adapt_datetimefield_value(at), wh, ref] for ref, wh, at, _ in sorted(acks, key=lambda a: a[0])]
        for start in range(0, len(rows), 500):
            cur.executemany(
                f"UPDATE {table} SET acknowledged_at = %s, warehouse_id = %s "
                "WHERE order_ref = %s AND released_at IS NULL AND acknowledged_at IS NULL",
                rows[start : start + 500],
            )
    wanted = {(wh, loc) for _, wh, _, alloc in acks for loc in alloc.values()}
    if wanted:
        loc_ids = {
            (c, e): i
            for c, e, i in Location.objects.filter(
                connection_id__in={w for w, _ in wanted}, external_id__in={e for _, e in wanted}
            ).values_list("connection_id", "external_id", "id")
        }
        skus = {s for *_, alloc in acks for s in alloc}
        item_ids = dict(Item.objects.filter(sku__in=skus).values_list("sku", "id"))
        updates = sorted(
            [
                [loc_ids[(wh, loc)], ref, item_ids[sku]]
                for ref, wh, _, alloc in acks
                for sku, loc in alloc.items()
                if (wh, loc) in loc_ids and sku in item_ids
            ],
            key=lambda u: (u[1], u[2]),
        )
        with db.cursor() as cur:
            for start in range(0, len(updates), 500):
                cur.executemany(
                    f"UPDATE {table} SET allocated_location_id = %s "
                    "WHERE order_ref = %s AND item_id = %s AND released_at IS NULL",
                    updates[start : start + 500],
                )
    return recheck_holds([ref for ref, *_ in acks])


def recheck_holds(order_refs=None) -> int:
    """Release the acknowledged holds of ``order_refs`` (None: every active acknowledged hold) whose master already
    reported a moved figure for the item at or after ``acknowledged_at`` (``StockLevel.moved_at``) — at
    ``allocated_location``, or at any location of the acknowledging master when that is unknown. One UPDATE per
    500 orders (one in all for None), plus the priority pushes. The hold-bound beat runs it over every hold first,
    so a stock apply that raced the acknowledgement in another transaction is caught within one beat."""
    chunks: list[list[str] | None] = [None]
    if order_refs is not None:
        refs = sorted(set(order_refs))
        if not refs:
            return 0
        chunks = [refs[start : start + 500] for start in range(0, len(refs), 500)]
    res, stock, loc = (db.ops.quote_name(m._meta.db_table) for m in (Reservation, StockLevel, Location))
    now = db.ops.adapt_datetimefield_value(timezone.now())
    pairs: set[tuple[int, int]] = set()
    released = 0
    with db.cursor() as cur:
        for chunk in chunks:
            refs_sql = f"AND order_ref IN ({', '.join(['%s'] * len(chunk))})" if chunk else ""
            cur.execute(
                f"""UPDATE {res} SET released_at = %s, release_reason = %s
                WHERE released_at IS NULL AND acknowledged_at IS NOT NULL AND warehouse_id IS NOT NULL {refs_sql}
                  AND EXISTS (SELECT 1 FROM {stock} s JOIN {loc} l ON l.id = s.location_id
                               WHERE s.item_id = {res}.item_id AND l.connection_id = {res}.warehouse_id
                                 AND s.state IN (%s, %s) AND s.moved_at >= {res}.acknowledged_at
                                 AND ({res}.allocated_location_id IS NULL OR s.location_id = {res}.allocated_location_id))
                RETURNING channel_id, item_id""",
                [now, "master stock feed (re-checked)", *(chunk or []), *sorted(ATS_STATES)],
            )
            got = cur.fetchall()
            released += len(got)
            pairs.update((int(c), int(i)) for c, i in got)
    _push(pairs, "reservation carried by the master (re-checked)")
    return released


def release_reflected(connection, rows: list[tuple[tuple[int, int, str], int, datetime | None]]) -> int:
    """Release the reservations of orders ``connection`` acknowledged whose item it has now reported (``rows``:
    the levels just written) with a moved figure at any of its locations — wherever the master allocated the
    order, not only where the order's channel sells from (WAIR allocates a uk-web order at EU1, issue 20) —
    changed at or after the acknowledgement: the master's figure carries the order from then on. One UPDATE per 2,000 (item,
    location) pairs, plus priority pushes for the (channel, item) pairs whose ATS that changes; a change
    without a timestamp counts as now. Call inside the transaction that wrote ``rows``."""
    now = timezone.now()
    newest: dict[tuple[int, int], datetime] = {}
    for (item_id, loc_id, state), _qty, ts in rows:
        if state not in ATS_STATES:
            continue
        ts = ts or now
        if newest.get((item_id, loc_id)) is None or ts > newest[(item_id, loc_id)]:
            newest[(item_id, loc_id)] = ts
    if (
        not newest
        or not Reservation.objects.filter(
            released_at__isnull=True, acknowledged_at__isnull=False, warehouse_id=connection.pk
        ).exists()
    ):
        return 0
    tables = _tables()
    res = db.ops.quote_name(tables["res"])
    ts_sql = "CAST(%s AS TIMESTAMP WITH TIME ZONE)" if db.vendor == "postgresql" else "%s"
    pairs: set[tuple[int, int]] = set()
    released = 0
    items = sorted(newest.items())
    with db.cursor() as cur:
        for start in range(0, len(items), RELEASE_CHUNK):
            chunk = items[start : start + RELEASE_CHUNK]
            params: list = []
            for (item_id, loc_id), ts in chunk:
                params += [item_id, loc_id, db.ops.adapt_datetimefield_value(ts)]
            sql = (
                "WITH chg(item_id, location_id, changed_at) AS (VALUES "
                + ", ".join([f"(CAST(%s AS BIGINT), CAST(%s AS BIGINT), {ts_sql})"] * len(chunk))
                + ") "
                + f"""UPDATE {res} SET released_at = %s, release_reason = %s
                    WHERE released_at IS NULL AND acknowledged_at IS NOT NULL AND warehouse_id = %s
                      AND EXISTS (SELECT 1 FROM chg  -- every location of chg is this master's
                                   WHERE chg.item_id = {res}.item_id AND chg.changed_at >= {res}.acknowledged_at
                                     AND ({res}.allocated_location_id IS NULL
                                          OR {res}.allocated_location_id = chg.location_id))
                    RETURNING channel_id, item_id"""
            )
            cur.execute(sql, params + [db.ops.adapt_datetimefield_value(now), "master stock feed", connection.pk])
            got = cur.fetchall()
            released += len(got)
            pairs.update((int(c), int(i)) for c, i in got)
    _push(pairs, f"reservation carried by {connection.name}")
    return released


def _push(pairs, reason: str) -> None:
    """Holds of these (channel, item) pairs were taken or are gone: ORDER-priority pushes for every channel selling from
    those shelves (the channel itself when it has no locations). The one push every reservation change queues."""
    by_channel: dict[int, set[int]] = defaultdict(set)
    for channel_id, item_id in pairs:
        by_channel[channel_id].add(item_id)
    for channel_id, item_ids in by_channel.items():
        locations = outbox.locations_for_channel(channel_id)
        if locations:
            outbox.enqueue(item_ids, location_ids=locations, priority=PendingPush.Priority.ORDER, reason=reason[:100])
        else:
            outbox.enqueue(item_ids, channel_ids=[channel_id], priority=PendingPush.Priority.ORDER, reason=reason[:100])


RELEASE_CHUNK = 2000  # (item, location) pairs per statement: 6,000 bind parameters
HOLD_MAX_SECONDS = 900  # default bound on an acknowledged hold: longer than any master's feed lag


def expire_holds(max_age_seconds: int | None = None) -> int:
    """Bound every acknowledged hold: one older than the master's feed lag (``HUB["HOLD_MAX_SECONDS"]``) is
    released — the master has had time to carry the order, and a hold it never released counts the stock
    twice — and never silently: one ``stock_drift`` record per master names how many and which orders, so
    ops can see holds piling up (a master allocating where the hub does not look, a lost feed). Returns
    rows released; queues the priority pushes that changes."""
    seconds = int(max_age_seconds or getattr(settings, "HUB", {}).get("HOLD_MAX_SECONDS", HOLD_MAX_SECONDS))
    cutoff = timezone.now() - timedelta(seconds=seconds)
    with transaction.atomic():
        recheck_holds()  # holds the master's figures already carry are released as carried, not as expired
        rows = list(
            Reservation.objects.select_for_update()
            .filter(released_at__isnull=True, acknowledged_at__isnull=False, acknowledged_at__lt=cutoff)
            .values("id", "channel_id", "item_id", "order_ref", "warehouse_id", "quantity")
        )
        if not rows:
            return 0
        Reservation.objects.filter(id__in=[r["id"] for r in rows]).update(
            released_at=timezone.now(), release_reason="hold expired"
        )
        _push({(r["channel_id"], r["item_id"]) for r in rows}, "hold expired")
        names = dict(Connection.objects.filter(pk__in={r["warehouse_id"] for r in rows}).values_list("pk", "name"))
        by_master: dict = defaultdict(list)
        for r in rows:
            by_master[r["warehouse_id"]].append(r)
        raise_many(
            [
                Problem(
                    kind="stock_drift",
                    key=kinds.key("stock_drift", names.get(wh, f"master-{wh}"), "holds-expired"),
                    severity="warning",
                    connection_id=wh,
                    title=f"{len(held)} order hold(s) outlived {names.get(wh, wh)}'s stock feed ({seconds} s)",
                    message="The master acknowledged these orders but its stock feed never showed a changed figure for their items "
                    "after that, so the hub held the stock itself. The holds are released now (the master's figures count "
                    "from here); if the master did not allocate these orders, its stock is overstated.",
                    context={
                        "orders": sorted({r["order_ref"] for r in held})[:50],
                        "holds": len(held),
                        "units": sum(r["quantity"] for r in held),
                        "max_age_seconds": seconds,
                        "action": "check_master_stock",
                    },
                )
                for wh, held in by_master.items()
            ]
        )
    return len(rows)
