"""The order flow: storefront → hub → warehouse → dispatch → storefront shipped.

Every public function here is what views, tasks, the admin and the console call; they hold the rules.
States change only through :mod:`.state` (``transition`` / ``transition_many``), so every move is checked
against the machine and logged with its cause and actor.

Flow
- **capture** (webhook or poll): one Order per (channel, storefront id) — the idempotency key
  ``<channel key>-<external id>`` is unique, so a webhook delivered twice and an overlapping poll give one
  row. Lines are stored, SKUs mapped (:mod:`.mapping`), bundles exploded to component lines and stock
  reserved (``inventory.Reservation`` + an ORDER-priority outbox row) in the same transaction.
- **validate**: every field the warehouse needs; failures hold the order with one exception per cause,
  naming the field (``unknown_sku:<channel>:<sku>``, ``bad_payload:<connection>:order:<order key>``) with
  ``context["fields"]`` as paths :func:`update_field_and_resend` accepts.
- **send**: claimed in batches with a lease (``claim_token`` + ``next_attempt_at``: a killed worker's orders
  come back when the lease runs out), posted with the idempotency key in parallel threads (HTTP only;
  the database work is set-based before and after). Only a positive acknowledgement moves an order to
  *acknowledged*; "received, not acknowledged", 429s and timeouts leave it *sent* with a back-off, and the
  beat resends (safe: the warehouse deduplicates on the key). No acknowledgement within
  ``HUB["ACK_TIMEOUT_MINUTES"]`` raises ``stuck_order``. A 422 holds the order naming the fields.
- **dispatch**: the warehouse's confirmation (webhook or poll) records tracking and moves the order to
  *dispatched*; only then does :func:`notify_storefront` mark the storefront order shipped (version/409
  safe in the connector) and move it to *storefront_notified*. A partial dispatch (``complete=False``)
  records its parcels but the order stays acknowledged until the warehouse confirms the rest.
- **fulfilments done storefront-side** are rows (:class:`StorefrontFulfilment`) re-sent to the master
  until it returns an acknowledgement id.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from connectors import errors
from connectors.base import Dispatch, Fulfilment, Parcel, Storefront, StorefrontOrder
from exceptions_app.services import Problem, clear, kind_for_error, make_key, raise_many, transport_keys
from integration_hub.core.leases import LeaseKeeper
from integration_hub.core.models import Channel, Connection, SyncCursor
from integration_hub.inventory.models import PendingPush, Reservation

from . import mapping
from .models import Order, OrderLine, OrderState as S, StorefrontFulfilment
from .shipped import update_shipped
from .state import IllegalTransition, log_created, transition, transition_many

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Orders per HTTP batch (send / notify): small enough that a batch finishes well inside its lease even when
# 429s and timeouts slow some calls down, so no other worker re-claims (and re-sends) orders still in flight.
HTTP_BATCH_SIZE = 48
LEASE_SECONDS = 30  # short: renewed while the warehouse / storefront calls are in flight (core.leases)
HTTP_THREADS = 8
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 300
ORDERS_STREAM = "orders"
DISPATCH_STREAM = "dispatches"
# retries end (ARCHITECTURE principle 4): after this many sends without an acknowledgement the order fails
MAX_SEND_ATTEMPTS = 30
ORPHAN_STREAM = "orphan-scan"
DISPATCH_AUDIT_STREAM = "dispatch-audit"
EDITABLE_BEFORE_SEND = {S.CAPTURED, S.VALIDATED, S.HELD, S.FAILED}
ADDRESS_PARTS = set(mapping.ADDRESS_FIELDS)


class OrderActionError(ValueError):
    """A console/admin action that does not apply to the order as it stands (message says why)."""


# --- keys -------------------------------------------------------------------------------------------
def order_key(channel: Channel, external_id: str) -> str:
    return f"{channel.key}-{external_id}"[:100]


def _bad_key(conn_name: str, source: str, ref: str) -> str:
    return make_key("bad_payload", conn_name, source, ref)


def order_problem_key(order: Order) -> str:
    return _bad_key(order.channel.connection.name, "order", order.idempotency_key)


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, min(attempts - 1, 10))))


def _save_fields(model, objs, fields: list[str], max_groups: int = 20) -> None:
    """Write ``fields`` of ``objs``: one plain UPDATE per distinct combination of values when there are few
    (the usual case: every acknowledged order gets the same cleared fields), else ``bulk_update``."""
    objs = list(objs)
    if not objs:
        return
    groups: dict[tuple, list[int]] = defaultdict(list)
    for o in objs:
        groups[tuple(repr(getattr(o, model._meta.get_field(f).attname)) for f in fields)].append(o.pk)
    if len(groups) > max_groups:
        model.objects.bulk_update(objs, fields, batch_size=500)
        return
    first = {}
    for o in objs:
        first.setdefault(tuple(repr(getattr(o, model._meta.get_field(f).attname)) for f in fields), o)
    for key, pks in groups.items():
        sample = first[key]
        values = {model._meta.get_field(f).attname: getattr(sample, model._meta.get_field(f).attname) for f in fields}
        for chunk in _chunks(pks):
            model.objects.filter(pk__in=chunk).update(**values)


def _save_varying(model, objs, fields: list[str]) -> None:
    """Per-row values in one ``executemany`` of ``UPDATE … SET a = %s, b = %s WHERE id = %s`` (what
    ``bulk_update`` does, without its per-row CASE expression objects, which dominate at this size; and
    typed per column, so NULLs and JSON bind correctly on PostgreSQL too)."""
    from django.db import connection as db

    objs = list(objs)
    if not objs or not fields:
        return
    table, pk_col = model._meta.db_table, model._meta.pk.column
    model_fields = [model._meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{db.ops.quote_name(f.column)} = %s" for f in model_fields)
    sql = f"UPDATE {db.ops.quote_name(table)} SET {assignments} WHERE {db.ops.quote_name(pk_col)} = %s"
    rows = [[f.get_db_prep_save(getattr(o, f.attname), db) for f in model_fields] + [o.pk] for o in objs]
    with db.cursor() as cur:
        for chunk in _chunks(rows):
            cur.executemany(sql, chunk)


def _save_split(model, objs, varying: list[str], constant: list[str]) -> None:
    """``varying`` fields differ per row (one CASE update each); ``constant`` ones are grouped (plain UPDATEs)."""
    if varying:
        _save_varying(model, objs, varying)
    if constant:
        _save_fields(model, objs, constant)


def _chunks(seq, n=500):
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


# --- nudging workers ----------------------------------------------------------------------------------
def kick(delay: float = 0) -> None:
    """Ask a worker to process due orders now (after the current transaction commits). Best effort: the
    beat sweep finds anything a lost nudge leaves behind. At most one nudge per second (shared cache);
    with the cache server down it nudges anyway — the caller's committed work never fails over a nudge."""
    from integration_hub.core.locks import cache_add

    def nudge():
        if not cache_add("orders:kick", 1, timeout=1, unavailable=True):
            return
        try:
            from .tasks import process

            process.apply_async(queue="priority", countdown=delay or None, retry=False)
        except Exception as exc:  # broker down: rows are safe in the database
            log.warning("could not dispatch orders.process (%s); the sweep will pick the orders up", exc)

    transaction.on_commit(nudge)


# --- capture ------------------------------------------------------------------------------------------
@dataclass
class CaptureResult:
    created: list = field(default_factory=list)  # Order rows
    existing: int = 0
    rejected: int = 0
    returns: int = 0  # return rows recorded or changed (planning.ReturnLine)

    def as_dict(self) -> dict:
        return {"created": len(self.created), "existing": self.existing, "rejected": self.rejected, "returns": self.returns}


def _addr(a) -> dict:
    return {k: v for k, v in asdict(a).items()} if a is not None else {}


def _new_order(channel: Channel, so: StorefrontOrder) -> Order:
    return Order(
        channel=channel, external_id=so.external_id, order_number=so.order_number or "", state=S.CAPTURED,
        storefront_version=so.version, placed_at=so.placed_at, currency=so.currency or "", total_cents=so.total_cents,
        customer_email=so.customer_email or "", shipping_address=_addr(so.shipping_address),
        billing_address=_addr(so.billing_address), shipping_method=so.shipping_method or "",
        gift_message=so.gift_message or "", delivery_notes=so.delivery_notes or "", custom_fields=dict(so.custom_fields or {}),
        promotion_codes=list(so.promotion_codes or []), raw=so.raw or {}, warehouse_id=channel.warehouse_id,
        idempotency_key=order_key(channel, so.external_id))


# orders another capture inserted first are skipped by the insert itself (ON CONFLICT DO NOTHING); what still
# collides (e.g. a concurrent capture of the same lines) is retried, each attempt re-reading what the others took
CAPTURE_ATTEMPTS = 6


def _capture(pairs: list[tuple[Channel, StorefrontOrder]], source: str) -> CaptureResult:
    """Insert the orders not yet known (by idempotency key) with their lines, map them and reserve stock.
    Runs in one transaction; retried when a concurrent capture inserted the same order first."""
    by_pair: dict[tuple[int, str], tuple[Channel, StorefrontOrder]] = {}
    for channel, so in pairs:
        if so.capturable:  # not placed / not released for export: never captured (the storefront decides)
            by_pair.setdefault((channel.pk, so.external_id), (channel, so))
    result = CaptureResult()
    if not by_pair:
        return result
    for attempt in range(CAPTURE_ATTEMPTS):
        try:
            with transaction.atomic():
                known = _known_pairs(by_pair)
                new = [_new_order(ch, so) for k, (ch, so) in by_pair.items() if k not in known]
                by_key = {o.idempotency_key: by_pair[(o.channel_id, o.external_id)] for o in new}
                result = CaptureResult(existing=len(known))
                if not new:
                    return result
                # ON CONFLICT DO NOTHING: an order a concurrent capture inserted meanwhile (a catch-up poll overlapping a
                # webhook burst) is left to it instead of failing the whole batch; the rows this insert wrote carry its
                # token, which finds them and is cleared again before commit (nobody else ever sees it)
                token = uuid.uuid4().hex
                for o in new:
                    o.claim_token = token
                Order.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
                ids = {}
                for chunk in _chunks([o.idempotency_key for o in new]):
                    ids.update(Order.objects.filter(idempotency_key__in=chunk, claim_token=token).values_list("idempotency_key", "pk"))
                Order.objects.filter(claim_token=token).update(claim_token="")
                taken = len(new) - len(ids)
                new = [o for o in new if o.idempotency_key in ids]
                for o in new:
                    o.pk = o.id = ids[o.idempotency_key]
                    o.claim_token = ""
                result.existing += taken
                if not new:
                    return result
                # SKUs resolved before the insert (one lookup per channel), so lines are written once
                skus_by_channel: dict[int, tuple[Channel, set[str]]] = {}
                for o in new:
                    ch, so = by_key[o.idempotency_key]
                    skus_by_channel.setdefault(ch.pk, (ch, set()))[1].update(ln.sku for ln in so.lines if ln.sku)
                resolved = {cid: mapping.resolve_skus(ch, skus) for cid, (ch, skus) in skus_by_channel.items()}
                lines = []
                for o in new:
                    ch, so = by_key[o.idempotency_key]
                    for ln in so.lines:
                        r = resolved[ch.pk].get(ln.sku or "")
                        lines.append(OrderLine(order_id=o.pk, line_id=str(ln.line_id)[:100], storefront_sku=(ln.sku or "")[:100],
                                               item=r.item if r else None, quantity=max(int(ln.quantity or 0), 0),
                                               unit_price_cents=ln.unit_price_cents, custom_fields=dict(ln.custom_fields or {})))
                OrderLine.objects.bulk_create(lines, batch_size=500)
                log_created(new, f"captured from {source}")
                preloaded = None
                if all(ln.pk for ln in lines):
                    orders_by_pk = {o.pk: o for o in new}
                    for ln in lines:
                        ln.order = orders_by_pk[ln.order_id]
                    preloaded = lines
                _map_lines([o.pk for o in new], preloaded)
                result.created = new
                kick()
                return result
        except IntegrityError:
            if attempt == CAPTURE_ATTEMPTS - 1:
                raise
            log.info("concurrent capture of the same orders; retrying")
            time.sleep(0.05 * (attempt + 1))  # let the other capture commit: the next attempt reads what it took
    return result


def _known_pairs(pairs) -> set[tuple[int, str]]:
    """Which (channel id, external id) pairs already have an Order (the dedupe key of capture)."""
    by_channel: dict[int, list[str]] = defaultdict(list)
    for channel_id, external_id in pairs:
        by_channel[channel_id].append(external_id)
    known = set()
    for channel_id, ids in by_channel.items():
        for chunk in _chunks(ids):
            known.update(Order.objects.filter(channel_id=channel_id, external_id__in=chunk).values_list("channel_id", "external_id"))
    return known


def _orders_for(pairs, qs=None) -> dict[tuple[int, str], Order]:
    """(channel id, external id) → Order for the pairs that exist."""
    by_channel: dict[int, list[str]] = defaultdict(list)
    for channel_id, external_id in pairs:
        by_channel[channel_id].append(external_id)
    qs = qs if qs is not None else Order.objects.all()
    out = {}
    for channel_id, ids in by_channel.items():
        for chunk in _chunks(ids):
            out.update({(o.channel_id, o.external_id): o for o in qs.filter(channel_id=channel_id, external_id__in=chunk)})
    return out


def resolve_channel(connection: Connection, channel_ref: str, channels: list[Channel] | None = None) -> Channel | None:
    """The hub channel a storefront order belongs to: by supply channel / store key, else the connection's
    only active channel."""
    channels = channels if channels is not None else list(Channel.objects.filter(connection=connection, active=True))
    for ch in channels:
        if channel_ref and ch.external_id == channel_ref:
            return ch
    for ch in channels:
        if channel_ref and ch.key == channel_ref:
            return ch
    return channels[0] if len(channels) == 1 else None


def capture(channel: Channel, storefront_order: StorefrontOrder, source: str = "api") -> tuple[Order, bool]:
    """One storefront order → (Order, created). Deduplicated by (channel, external id)."""
    result = _capture([(channel, storefront_order)], source)
    order = Order.objects.get(channel=channel, external_id=storefront_order.external_id)
    return order, bool(result.created)


def capture_many(connection: Connection, storefront_orders, source: str = "poll") -> CaptureResult:
    """Bulk capture for polls and webhook batches: a fixed number of queries per batch. Orders whose channel
    cannot be determined are not dropped silently: each raises a ``bad_payload`` exception."""
    channels = list(Channel.objects.filter(connection=connection, active=True))
    pairs, problems = [], []
    for so in storefront_orders:
        ch = resolve_channel(connection, so.channel_ref, channels)
        if ch is None:
            problems.append(Problem(
                "bad_payload", _bad_key(connection.name, "order", so.external_id),
                f"Order {so.order_number or so.external_id} from {connection.name}: unknown channel {so.channel_ref!r}",
                message="No active hub channel matches the order's supply channel / store; add the channel and re-poll.",
                context={"fields": {"channel_ref": f"{so.channel_ref!r} matches no channel"}, "action": "check_channel",
                         "order_id": so.external_id}, connection_id=connection.pk, order_ref=so.external_id))
            continue
        pairs.append((ch, so))
    result = _capture(pairs, source)
    result.rejected = len(problems)
    _record_storefront_side(connection, pairs)
    result.returns = _record_storefront_returns(connection, pairs)
    _apply_storefront_cancellations(connection, pairs)
    if problems:
        raise_many(problems)
    return result


def _apply_storefront_cancellations(connection: Connection, pairs) -> int:
    """Orders cancelled in the storefront: cancelled in the hub at once (reservations released) while the
    warehouse does not have them yet; once it does, a warehouse cancel is requested (:func:`cancel_due` asks
    the warehouse; the order is cancelled on its confirmation, or an exception says it refused). A fixed
    number of queries per batch."""
    cancelled = [(ch.pk, so.external_id) for ch, so in pairs if (so.status or "").lower() == "cancelled"]
    if not cancelled:
        return 0
    orders = list(_orders_for(cancelled, Order.objects.exclude(state=S.CANCELLED).select_related("channel__connection", "warehouse")
                              .defer("raw")).values())
    before = [o for o in orders if o.state in EDITABLE_BEFORE_SEND and not _maybe_at_warehouse(o)]
    n = len(cancel_many(before, "cancelled in the storefront")) if before else 0
    at_warehouse = [o.pk for o in orders if _maybe_at_warehouse(o) and o.cancel_requested_at is None]
    if at_warehouse:
        request_warehouse_cancel(at_warehouse, f"cancelled in {connection.name}")
    return n


def _record_storefront_side(connection: Connection, pairs) -> int:
    """Fulfilments the storefront side made itself (connector ``storefront_fulfilments``: deliveries the hub
    did not add) → StorefrontFulfilment rows, storefront SKUs mapped to master SKUs (bundles to their
    components), reported to the master by :func:`send_fulfilments` until acknowledged. No queries when
    the polled orders carry none. Fulfilments the connector cannot read (its ``rejected`` rows, or a
    BadDataError for the whole order) become one ``bad_payload:<connection>:fulfilments:<order key>`` record
    per order naming them (the order's readable fulfilments still go through); cleared when they next read
    cleanly."""
    try:
        finder = getattr(_connector(connection), "storefront_fulfilments", None)
    except errors.ConnectorError:
        return 0
    if finder is None:
        return 0
    from connectors.parsing import ParsedBatch, RejectedRow

    found, unreadable, clean = [], [], []
    for ch, so in pairs:
        try:
            fs = finder(so)
        except NotImplementedError:
            continue
        except errors.BadDataError as exc:
            fs = ParsedBatch([], [RejectedRow(0, so.external_id, "order", str(exc)[:500])])
        rejected = getattr(fs, "rejected", None)
        bad = _bad_key(connection.name, "fulfilments", order_key(ch, so.external_id))
        if rejected:
            unreadable.append(Problem(
                "bad_payload", bad, f"Storefront fulfilments of order {so.order_number or so.external_id} from {connection.name} "
                                    "cannot be read",
                message="; ".join(f"{r.ref} {r.field}: {r.message}" for r in rejected)[:2000]
                + ". The master is not told about these; fix the order in the storefront (any change brings it back into the poll).",
                context={"order_id": so.external_id, "rejected": [{"ref": r.ref, "field": r.field, "message": r.message,
                                                                   "raw": str(r.raw)[:500]} for r in rejected[:20]],
                         "action": "check_order"},
                connection_id=connection.pk, channel_id=ch.pk, order_ref=order_key(ch, so.external_id)))
        elif fs:
            clean.append(bad)
        if fs:
            found.append((ch, so, fs))
    if unreadable:
        raise_many(unreadable)
    if clean:
        clear(clean, reason="the order's storefront fulfilments read cleanly")
    if not found:
        return 0
    orders = _orders_for([(ch.pk, so.external_id) for ch, so, _ in found], Order.objects.select_related("channel").defer("raw"))
    known = set(StorefrontFulfilment.objects.filter(order__in=list(orders.values())).values_list("order_id", "fulfilment_ref"))
    rows, problems = [], []
    # SKUs resolved once per channel and bundles exploded once for the whole batch (not per order)
    by_channel: dict[int, tuple[Channel, set[str]]] = {}
    for ch, so, fs in found:
        by_channel.setdefault(ch.pk, (ch, set()))[1].update(sku for f in fs for sku, _ in f.lines)
    resolved = {cid: mapping.resolve_skus(ch, skus) for cid, (ch, skus) in by_channel.items()}
    comps = mapping.bundle_components({r.item.pk for res in resolved.values() for r in res.values() if r.item and r.item.is_bundle})
    for ch, so, fs in found:
        o = orders.get((ch.pk, so.external_id))
        warehouse_id = o and (o.warehouse_id or ch.warehouse_id)
        if o is None or not warehouse_id:
            continue
        res = resolved[ch.pk]
        for f in fs:
            if (o.pk, f.fulfilment_ref[:100]) in known:
                continue
            lines: dict[str, int] = defaultdict(int)
            for sku, qty in f.lines:
                r = res.get(sku)
                if r is None or r.item is None:
                    problems.append(Problem("unknown_sku", make_key("unknown_sku", ch.key, sku), f"Unknown SKU {sku} on channel {ch.key}",
                                            message=f"storefront fulfilment {f.fulfilment_ref} of order {o} cannot be reported to the master",
                                            context={"orders": [o.idempotency_key], "action": "map_sku"}, channel_id=ch.pk, sku=sku,
                                            order_ref=o.idempotency_key))
                    continue
                if r.item.is_bundle and comps.get(r.item.pk):
                    for comp, per in comps[r.item.pk]:
                        lines[comp.sku] += qty * per
                else:
                    lines[r.item.sku] += qty
            if lines and not any(p.order_ref == o.idempotency_key for p in problems):
                rows.append(StorefrontFulfilment(order=o, fulfilment_ref=f.fulfilment_ref[:100], warehouse_id=warehouse_id,
                                                 lines=[[k, v] for k, v in sorted(lines.items())], location=(f.location or "")[:100],
                                                 fulfilled_at=f.fulfilled_at or timezone.now()))
    StorefrontFulfilment.objects.bulk_create(rows, ignore_conflicts=True)
    if problems:
        raise_many(problems)
    return len(rows)


def _record_storefront_returns(connection: Connection, pairs) -> int:
    """Returns the polled orders carry (connector ``storefront_returns``) → ``planning.ReturnLine`` through
    :func:`integration_hub.planning.services.record_returns`, one row per storefront return item keyed
    ``<order key>/<return item ref>``: the same item read on every later poll is the same row, and an item
    that moved on (advised → received → back in stock / unusable) updates it. Return entries the connector
    cannot read become one ``bad_payload:<connection>:returns:<order key>`` record per order listing them
    (the order and its other returns still go through); it is cleared when the order's returns next read
    cleanly. No queries when the batch carries no returns."""
    try:
        finder = getattr(_connector(connection), "storefront_returns", None)
    except errors.ConnectorError:
        return 0
    if finder is None:
        return 0
    from connectors.parsing import ParsedBatch, RejectedRow

    rows, problems, clean = [], [], []
    for ch, so in pairs:
        try:
            batch = finder(so)
        except NotImplementedError:
            return 0
        except errors.BadDataError as exc:
            batch = ParsedBatch([], [RejectedRow(0, so.external_id, "order", str(exc)[:500])])
        key = order_key(ch, so.external_id)
        bad = _bad_key(connection.name, "returns", key)
        if batch.rejected:
            problems.append(Problem(
                "bad_payload", bad, f"Returns of order {so.order_number or so.external_id} from {connection.name} cannot be read",
                message="; ".join(f"{r.field}: {r.message}" for r in batch.rejected)[:2000]
                + ". The planner does not see these returns; fix them in the storefront (any change brings the order back "
                  "into the poll).",
                context={"order_id": so.external_id, "rejected": [{"ref": r.ref, "field": r.field, "message": r.message,
                                                                   "raw": str(r.raw)[:500]} for r in batch.rejected[:20]],
                         "action": "check_order"},
                connection_id=connection.pk, channel_id=ch.pk, order_ref=key))
        elif len(batch):
            clean.append(bad)
        rows += [{"external_ref": f"{key}/{r.return_ref}", "order_ref": key, "line_id": r.line_id, "quantity": r.quantity,
                  "condition": r.condition, "returned_at": r.returned_at} for r in batch]
    if not rows and not problems:
        return 0
    from integration_hub.planning.services import record_returns

    stored = record_returns(rows, source=connection.name) if rows else 0
    if problems:
        raise_many(problems)
    if clean:
        clear(clean, reason="the order's returns read cleanly")
    return stored


# --- mapping + reservations ---------------------------------------------------------------------------
def _map_lines(order_ids, lines: list[OrderLine] | None = None) -> None:
    """Resolve top-level lines without an item, explode bundles into component lines, reserve stock.
    Idempotent: resolved lines and existing components / reservations are left alone. ``lines``: the
    orders' top-level lines with ``order`` (and its channel) and ``item`` already in memory (capture)."""
    order_ids = list(order_ids)
    if not order_ids:
        return
    if lines is None:
        lines = []
        for chunk in _chunks(order_ids):
            lines += list(OrderLine.objects.filter(order_id__in=chunk, parent__isnull=True)
                          .select_related("item", "order__channel"))
    unresolved: dict[int, list[OrderLine]] = defaultdict(list)
    channels = {}
    for ln in lines:
        channels[ln.order.channel_id] = ln.order.channel
        if ln.item_id is None:
            unresolved[ln.order.channel_id].append(ln)
    changed = []
    for channel_id, group in unresolved.items():
        res = mapping.resolve_skus(channels[channel_id], [ln.storefront_sku for ln in group])
        for ln in group:
            r = res.get(ln.storefront_sku)
            if r and r.item is not None:
                ln.item = r.item
                changed.append(ln)
    if changed:
        OrderLine.objects.bulk_update(changed, ["item"], batch_size=500)
    # explode bundles that have no component lines yet
    bundle_lines = [ln for ln in lines if ln.item_id and ln.item.is_bundle]
    if bundle_lines:
        have = set()
        for chunk in _chunks([ln.pk for ln in bundle_lines]):
            have.update(OrderLine.objects.filter(parent_id__in=chunk).values_list("parent_id", flat=True).distinct())
        comps = mapping.bundle_components([ln.item_id for ln in bundle_lines])
        new = []
        for ln in bundle_lines:
            if ln.pk in have:
                continue
            for comp, per in comps.get(ln.item_id, []):
                new.append(OrderLine(order_id=ln.order_id, line_id=f"{ln.line_id}/{comp.sku}"[:100], storefront_sku=ln.storefront_sku,
                                     item=comp, parent_id=ln.pk, quantity=ln.quantity * per,
                                     custom_fields={"bundle_sku": ln.item.sku}))
        OrderLine.objects.bulk_create(new, batch_size=500)
    _reserve(order_ids)


def _reserve(order_ids) -> int:
    """Reservation rows for every picked line with an item (bundle components, not their parent), plus an
    ORDER-priority push for the channels selling from the same locations. Existing rows are kept."""
    want: dict[tuple[str, int, int], int] = defaultdict(int)
    for chunk in _chunks(order_ids):
        rows = (OrderLine.objects.filter(order_id__in=chunk, item__isnull=False, order__state__in=list(EDITABLE_BEFORE_SEND | {S.SENT}))
                .exclude(item__is_bundle=True)
                .values_list("order__idempotency_key", "item_id", "order__channel_id", "quantity"))
        for key, item_id, channel_id, qty in rows:
            want[(key, item_id, channel_id)] += qty
    if not want:
        return 0
    existing = set()
    keys = sorted({k for k, _, _ in want})
    for chunk in _chunks(keys):
        existing.update(Reservation.objects.filter(order_ref__in=chunk).values_list("order_ref", "item_id", "channel_id"))
    new = [Reservation(order_ref=k, item_id=i, channel_id=c, quantity=q) for (k, i, c), q in want.items() if (k, i, c) not in existing]
    if not new:
        return 0
    Reservation.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
    _enqueue_stock({(r.channel_id, r.item_id) for r in new}, "order reserved")
    return len(new)


def _release(order_keys, reason: str) -> int:
    keys = list(order_keys)
    pairs = set()
    now = timezone.now()
    n = 0
    for chunk in _chunks(keys):
        qs = Reservation.objects.filter(order_ref__in=chunk, released_at__isnull=True)
        pairs.update(qs.values_list("channel_id", "item_id"))
        n += qs.update(released_at=now, release_reason=reason[:50])
    if pairs:
        _enqueue_stock(pairs, f"order {reason}")
    return n


def _hold_until_master_shows(acks) -> int:
    """Acknowledged orders keep their reservations until the master's stock feed carries them: mark each
    active row with when the master took the order and where it allocated each line (``acks``: (order key,
    warehouse id, time[, {master sku: location id}])), and re-check figures the master reported before this
    mark (``inventory.services.mark_holds_acknowledged``); the inbound stock apply releases the rest, or
    dispatch / cancel / the hold bound do."""
    from integration_hub.inventory.services import mark_holds_acknowledged

    return mark_holds_acknowledged(acks)


def _enqueue_stock(pairs, reason: str) -> None:
    """Queue live-order pushes for the channels whose ATS the reservations touch."""
    from integration_hub.inventory import outbox

    by_channel: dict[int, set[int]] = defaultdict(set)
    for channel_id, item_id in pairs:
        by_channel[channel_id].add(item_id)
    for channel_id, items in by_channel.items():
        locations = outbox.locations_for_channel(channel_id)
        if locations:
            outbox.enqueue(items, location_ids=locations, priority=PendingPush.Priority.ORDER, reason=reason)
        else:
            outbox.enqueue(items, channel_ids=[channel_id], priority=PendingPush.Priority.ORDER, reason=reason)


# --- validation ---------------------------------------------------------------------------------------
@dataclass
class ValidationOutcome:
    validated: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)


def validate_many(order_ids, actor=None, cause: str = "validated") -> ValidationOutcome:
    """Validate captured / held / failed orders: validated ones are ready to send; the rest are held with
    exceptions naming the fields. A fixed number of queries per batch."""
    order_ids = list(order_ids)
    out = ValidationOutcome()
    if not order_ids:
        return out
    wanted_states = [S.CAPTURED, S.HELD, S.FAILED]
    with transaction.atomic():
        _map_lines(order_ids)
        orders = []
        for chunk in _chunks(order_ids):
            orders += list(Order.objects.filter(pk__in=chunk, state__in=wanted_states).select_related("channel__connection", "channel__warehouse", "warehouse").defer("raw"))
        if not orders:
            return out
        lines_by_order: dict[int, list[OrderLine]] = defaultdict(list)
        for chunk in _chunks([o.pk for o in orders]):
            for ln in OrderLine.objects.filter(order_id__in=chunk).select_related("item").order_by("pk"):
                lines_by_order[ln.order_id].append(ln)
        maps = mapping.shipping_maps({o.channel_id for o in orders})
        problems: list[Problem] = []
        ok, held, resolved_keys, ok_keys = [], [], set(), []
        unknown_by_key: dict[str, dict] = {}
        for o in orders:
            fields: dict[str, str] = {}
            unknown = []
            lines = lines_by_order.get(o.pk, [])
            top = [ln for ln in lines if ln.parent_id is None]
            with_components = {ln.parent_id for ln in lines if ln.parent_id}
            if not top:
                fields["lines"] = "the order has no lines"
            for ln in top:
                path = f"lines.{ln.line_id}"
                if not ln.storefront_sku:
                    fields[f"{path}.storefront_sku"] = "the line has no SKU"
                elif ln.item_id is None:
                    unknown.append(ln)
                elif ln.item.is_bundle and ln.pk not in with_components:
                    fields[f"{path}.storefront_sku"] = f"bundle {ln.item.sku} has no components defined"
                else:
                    resolved_keys.add(make_key("unknown_sku", o.channel.key, ln.storefront_sku))
                if ln.quantity <= 0:
                    fields[f"{path}.quantity"] = f"quantity {ln.quantity} must be positive"
            ship = mapping.map_shipping(maps, o.channel_id, o.shipping_method)
            if not o.shipping_method:
                fields["shipping_method"] = "the order has no shipping method"
            elif ship is None:
                fields["shipping_method"] = f"storefront shipping method {o.shipping_method!r} has no warehouse mapping"
            fields.update(mapping.address_problems("shipping_address", o.shipping_address))
            warehouse = o.warehouse or o.channel.warehouse
            if warehouse is None:
                fields["warehouse"] = f"channel {o.channel.key} has no warehouse"
            for ln in unknown:
                key = make_key("unknown_sku", o.channel.key, ln.storefront_sku)
                entry = unknown_by_key.setdefault(key, {"channel": o.channel, "sku": ln.storefront_sku, "orders": [], "fields": {}})
                entry["orders"].append(o.idempotency_key)
                entry["fields"][o.idempotency_key] = f"lines.{ln.line_id}.storefront_sku"
            if fields or unknown:
                reasons = [f"{k}: {v}" for k, v in fields.items()] + [f"lines.{ln.line_id}.storefront_sku: unknown SKU {ln.storefront_sku!r}" for ln in unknown]
                o.hold_reason = "; ".join(reasons)[:2000]
                held.append(o)
                if fields:
                    problems.append(Problem(
                        "bad_payload", order_problem_key(o), f"Order {o} held: {', '.join(fields)}",
                        message="; ".join(f"{k}: {v}" for k, v in fields.items()),
                        context={"fields": fields, "action": "retry_order", "order_id": o.pk, "state": S.HELD},
                        connection_id=o.channel.connection_id, channel_id=o.channel_id, order_ref=o.idempotency_key))
            else:
                o.warehouse_shipping_method, o.warehouse_carrier = ship.warehouse_method, ship.carrier
                o.warehouse_id = warehouse.pk
                o.hold_reason = ""
                ok.append(o)
                ok_keys.append(order_problem_key(o))
        for key, e in unknown_by_key.items():
            problems.append(Problem(
                "unknown_sku", key, f"Unknown SKU {e['sku']} on channel {e['channel'].key}",
                message=f"{len(e['orders'])} order(s) held until the SKU is mapped (or a transform matches it).",
                context={"orders": e["orders"][:50], "order_fields": dict(list(e["fields"].items())[:50]),
                         "field": next(iter(e["fields"].values())),
                         "action": "map_sku"}, channel_id=e["channel"].pk, connection_id=e["channel"].connection_id,
                sku=e["sku"], order_ref=e["orders"][0]))
        if ok:
            _save_fields(Order, ok, ["warehouse_shipping_method", "warehouse_carrier", "warehouse", "hold_reason"])
            out.validated = transition_many([o.pk for o in ok], S.VALIDATED, cause, actor=actor, from_states=wanted_states,
                                            next_attempt_at=None, claim_token="")
        if held:
            Order.objects.bulk_update(held, ["hold_reason"], batch_size=500)
            fresh = [o.pk for o in held if o.state != S.HELD]
            out.held = transition_many(fresh, S.HELD, f"held: {held[0].hold_reason[:200]}" if len(held) == 1 else "held: validation failed",
                                       actor=actor, from_states=[S.CAPTURED, S.FAILED], claim_token="")
            out.held += [o.pk for o in held if o.state == S.HELD]
            Order.objects.filter(pk__in=[o.pk for o in held if o.state == S.HELD]).update(claim_token="")
        if problems:
            raise_many(problems)
        if ok_keys:
            clear(ok_keys, reason="order validated")
        still_unknown = set(unknown_by_key)
        if resolved_keys - still_unknown:
            clear(sorted(resolved_keys - still_unknown), reason="SKU now maps to an item")
        if out.validated:
            kick()
    return out


def validate(order: Order, actor=None) -> Order:
    validate_many([order.pk], actor=actor)
    order.refresh_from_db()
    return order


def revalidate_held(sku: str | None = None, channel: Channel | None = None, actor=None) -> int:
    """Re-run validation for held orders (e.g. after a SKU mapping or shipping map was fixed), optionally
    only those with a line of ``sku`` / on ``channel``. Returns how many are now validated (and queued)."""
    qs = Order.objects.filter(state=S.HELD)
    if channel is not None:
        qs = qs.filter(channel=channel)
    if sku:
        qs = qs.filter(lines__storefront_sku=sku)
    ids = list(qs.values_list("pk", flat=True).distinct())
    total = 0
    for chunk in _chunks(ids, BATCH_SIZE):
        total += len(validate_many(chunk, actor=actor, cause=f"revalidated{f' after {sku} was mapped' if sku else ''}").validated)
    return total


# --- claiming work ------------------------------------------------------------------------------------
def _claim(base_q: Q, limit: int, lease_seconds: int) -> list[int]:
    """Lease up to ``limit`` due orders matching ``base_q`` to this worker (ids returned)."""
    now = timezone.now()
    due = base_q & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    token = uuid.uuid4().hex
    # rows another worker is claiming right now are skipped, not waited for (FOR UPDATE SKIP LOCKED on PostgreSQL;
    # SQLite serialises writers anyway): two loops never lock overlapping order rows in different orders, which
    # deadlocked a claim against the other loop's notify update
    with transaction.atomic():
        ids = list(Order.objects.filter(due).order_by("next_attempt_at", "pk")
                   .select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Order.objects.filter(due, pk__in=ids).update(claim_token=token, next_attempt_at=now + timedelta(seconds=lease_seconds))
    return list(Order.objects.filter(claim_token=token).values_list("pk", flat=True))


# a disabled connection is not talked to: its orders wait (and the orphan / stuck checks report them)
SEND_DUE = Q(state__in=[S.VALIDATED, S.SENT], warehouse__enabled=True, cancel_requested_at__isnull=True)
# orders the warehouse may have: sent / acknowledged, and failed ones that were ever sent (FAILED follows 30
# NotAcknowledged answers, which for WAIR mean it holds the order) — cancelling those asks the warehouse
AT_WAREHOUSE = Q(state__in=[S.SENT, S.ACKNOWLEDGED]) | (Q(state=S.FAILED) & (Q(send_attempts__gt=0) | Q(sent_at__isnull=False)))
CANCEL_DUE = AT_WAREHOUSE & Q(warehouse__enabled=True, cancel_requested_at__isnull=False)
NOTIFY_DUE = Q(state=S.DISPATCHED, channel__connection__enabled=True)
VALIDATE_DUE = Q(state=S.CAPTURED)


def _maybe_at_warehouse(o: Order) -> bool:
    """:data:`AT_WAREHOUSE` for one loaded order."""
    return o.state in (S.SENT, S.ACKNOWLEDGED) or (o.state == S.FAILED and (o.send_attempts > 0 or o.sent_at is not None))


def _lease_free(now) -> Q:
    """Orders no worker holds a live lease on: a send in flight keeps its lease, so a cancel never runs alongside it."""
    return Q(claim_token="") | Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def _renewing(ids: list[int], lease_seconds: int | None = None) -> LeaseKeeper:
    """Keep the claim on ``ids`` alive while their remote calls run (orders still leased, i.e. not
    released or moved on meanwhile); a killed worker stops renewing and its orders are due again soon."""
    def renew(new_until):
        Order.objects.filter(pk__in=ids, claim_token__gt="", next_attempt_at__gt=timezone.now()).update(next_attempt_at=new_until)
    return LeaseKeeper(renew, lease_seconds or LEASE_SECONDS, "order claim")


def _parallel(fn, jobs: list) -> list:
    """Run ``fn(job)`` for each job in a small thread pool (HTTP only, no database); results in order,
    an exception instance where a call failed."""
    def safe(job):
        try:
            return fn(job)
        except Exception as exc:  # noqa: BLE001 — returned, classified by the caller
            return exc

    if len(jobs) <= 1:
        return [safe(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(HTTP_THREADS, len(jobs))) as pool:
        return list(pool.map(safe, jobs))


def _connector(conn: Connection):
    from connectors.registry import get_connector

    return get_connector(conn)


# --- send ---------------------------------------------------------------------------------------------
@dataclass
class SendResult:
    acknowledged: int = 0
    pending: int = 0
    retrying: int = 0
    held: int = 0
    failed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __add__(self, other: "SendResult") -> "SendResult":
        return SendResult(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))


def send_due(limit: int = BATCH_SIZE, lease_seconds: int = LEASE_SECONDS, actor=None) -> SendResult:
    """Claim and send up to ``limit`` validated / unacknowledged orders that are due."""
    ids = _claim(SEND_DUE, limit, lease_seconds)
    return _send_claimed(ids, actor=actor) if ids else SendResult()


def _send_claimed(ids: list[int], actor=None) -> SendResult:
    result = SendResult()
    with transaction.atomic():
        first = transition_many(ids, S.SENT, "sending to warehouse", actor=actor, from_states=[S.VALIDATED],
                                send_attempts=F("send_attempts") + 1)
        again = [i for i in ids if i not in set(first)]
        transition_many(again, S.SENT, "resending: not acknowledged yet", actor=actor, from_states=[S.SENT],
                        send_attempts=F("send_attempts") + 1)
    orders = list(Order.objects.filter(pk__in=ids, state=S.SENT).select_related("channel", "warehouse").defer("raw"))
    if not orders:
        return result
    lines: dict[int, list[OrderLine]] = defaultdict(list)
    for ln in OrderLine.objects.filter(order_id__in=[o.pk for o in orders]).select_related("item").order_by("pk"):
        lines[ln.order_id].append(ln)
    jobs = []
    for o in orders:
        wo = mapping.build_warehouse_order(o, lines[o.pk])
        jobs.append((o, wo))
    from integration_hub.catalog.warehouse_products import attach_ids

    attach_ids(jobs)  # the warehouse's own product ids, where it needs them (Clarus)

    def call(job):
        o, wo = job
        return _connector(o.warehouse).send_order(wo)

    with _renewing([o.pk for o, _ in jobs]):
        outcomes = _parallel(call, jobs)
    now = timezone.now()
    acked, later, held, problems, cleared, failed = [], [], [], [], [], []
    ack_at: dict[int, datetime] = {}
    allocations: dict[int, dict[str, str]] = {}
    for (o, _), res in zip(jobs, outcomes):
        o.claim_token = ""
        if isinstance(res, Exception):
            o.last_error = f"{type(res).__name__}: {res}"[:2000]
            if isinstance(res, errors.BadDataError) and not isinstance(res, errors.RetryableError):
                fields = dict(getattr(res, "fields", None) or {}) or {"body": str(res)}
                o.hold_reason = "warehouse rejected: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
                held.append(o)
                problems.append(Problem(
                    "bad_payload", _bad_key(o.warehouse.name, "order", o.idempotency_key),
                    f"{o.warehouse.name} rejected order {o}: {', '.join(fields)}", message=o.hold_reason,
                    context={"fields": fields, "action": "retry_order", "order_id": o.pk},
                    connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key))
                continue
            pending = isinstance(res, errors.NotAcknowledgedError)
            if not pending:
                problems.append(_transport_problem(o.warehouse, "send_order", res, o))
            if isinstance(res, (errors.PermanentError, errors.NotFoundError)) or o.send_attempts >= MAX_SEND_ATTEMPTS:
                # a refusal resending cannot change (auth refused, order cancelled at the warehouse, bad route), or
                # retries used up: the order fails with a record naming the cause; a person retries or cancels it
                why = (f"the warehouse refuses the order ({type(res).__name__}): {res}"
                       if isinstance(res, (errors.PermanentError, errors.NotFoundError))
                       else f"{o.send_attempts} sends without an acknowledgement; last: {type(res).__name__}: {res}")
                o.next_attempt_at = None
                failed.append((o, why))
                problems.append(_failed_problem(o, why))
                continue
            o.next_attempt_at = now + backoff(o.send_attempts)
            later.append(o)
            if pending:
                result.pending += 1
            else:
                result.retrying += 1
            continue
        o.warehouse_ref = str(res.warehouse_ref)[:100]
        o.last_error, o.next_attempt_at, o.hold_reason = "", None, ""
        ack_at[o.pk] = getattr(res, "received_at", None) or now
        allocations[o.pk] = dict(getattr(res, "allocations", None) or {})
        acked.append(o)
        cleared += [make_key("stuck_order", o.idempotency_key), _bad_key(o.warehouse.name, "order", o.idempotency_key),
                    make_key("orphaned_order", o.channel.key, o.external_id)]
    with transaction.atomic():
        if later or held or failed:  # a dispatch confirmation may have moved some on meanwhile: leave those alone
            still_sent = set(Order.objects.filter(pk__in=[o.pk for o, _ in failed] + [o.pk for o in later + held],
                                                  state=S.SENT).values_list("pk", flat=True))
            later = [o for o in later if o.pk in still_sent]
            held = [o for o in held if o.pk in still_sent]
            failed = [(o, why) for o, why in failed if o.pk in still_sent]
        if acked:
            _save_split(Order, acked, ["warehouse_ref"], ["last_error", "next_attempt_at", "hold_reason", "claim_token"])
            moved = set(transition_many([o.pk for o in acked], S.ACKNOWLEDGED, "acknowledged by warehouse", actor=actor,
                                        from_states=[S.SENT]))
            result.acknowledged = len(moved)
            unmoved = [o.pk for o in acked if o.pk not in moved]
            gone = set(Order.objects.filter(pk__in=unmoved, state=S.CANCELLED).values_list("pk", flat=True)) if unmoved else set()
            for o in acked:
                if o.pk in gone:  # cancelled in the hub while this send was in flight, yet the warehouse took it
                    problems.append(Problem(
                        "bad_payload", _bad_key(o.warehouse.name, "order-cancel", o.idempotency_key),
                        f"{o.warehouse.name} accepted order {o} after it was cancelled in the hub",
                        message=f"The warehouse acknowledged the order ({o.warehouse_ref}) while it was being cancelled: "
                                "cancel it in the warehouse.",
                        context={"order_id": o.pk, "state": S.CANCELLED, "warehouse_ref": o.warehouse_ref,
                                 "action": "cancel_in_warehouse"},
                        connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key))
            _hold_until_master_shows([(o.idempotency_key, o.warehouse_id, ack_at[o.pk], allocations[o.pk])
                                      for o in acked if o.pk in moved])
            conns = {o.warehouse.name for o in acked}
            cleared += [k for c in conns for k in transport_keys(c, "send_order")]
        if later:
            _save_split(Order, later, ["last_error", "next_attempt_at"], ["claim_token"])
        if held:
            Order.objects.bulk_update(held, ["last_error", "hold_reason", "claim_token"], batch_size=500)
            result.held = len(transition_many([o.pk for o in held], S.HELD, "held: warehouse rejected the order", actor=actor,
                                              from_states=[S.SENT]))
        if failed:
            _save_varying(Order, [o for o, _ in failed], ["last_error", "next_attempt_at", "claim_token"])
            for why, group in _group_by_cause(failed).items():
                result.failed += len(transition_many([o.pk for o in group], S.FAILED, f"failed: {why}", actor=actor,
                                                     from_states=[S.SENT]))
        if problems:
            raise_many(problems)
    if cleared:
        clear(cleared, reason="warehouse acknowledged")
    exported = [(o, True) for o in acked if o.pk in moved] if acked else []
    mark_exported(exported + [(o, False) for o, _ in failed])
    return result


def mark_exported(outcomes: list[tuple[Order, bool]]) -> int:
    """The storefront export handshake (:meth:`Storefront.mark_exported`): acknowledged by the warehouse
    (True) or given up on (False). HTTP only after the database work; a failure is a warning record per
    storefront (cleared by a later success) and is repaired when the poll reads the order again still waiting
    (the hub's own shipped update bumps it). Returns the orders marked."""
    if not outcomes:
        return 0
    conns = Connection.objects.in_bulk({o.channel.connection_id for o, _ in outcomes})
    done, problems, cleared = 0, [], []
    by_conn: dict[int, list[tuple[Order, bool]]] = defaultdict(list)
    for o, ok in outcomes:
        by_conn[o.channel.connection_id].append((o, ok))
    for conn_id, group in by_conn.items():
        conn = conns.get(conn_id)
        if conn is None or not conn.enabled:
            continue
        connector = _connector(conn)
        if getattr(type(connector), "mark_exported", Storefront.mark_exported) is Storefront.mark_exported:
            continue  # no export handshake on this storefront
        answers = _parallel(lambda job, c=connector: c.mark_exported(job[0].external_id, job[1]), group)
        failures = [r for r in answers if isinstance(r, Exception)]
        done += len(answers) - len(failures)
        if failures:
            log.warning("%s: export status of %d order(s) not set: %s", conn.name, len(failures), failures[0])
            problems.append(_transport_problem(conn, "mark_exported", failures[0]))
        else:
            cleared += transport_keys(conn.name, "mark_exported")
    if problems:
        raise_many(problems)
    if cleared:
        clear(cleared, reason="export status set")
    return done


def _repair_exports(connection: Connection, storefront_orders) -> int:
    """Orders the storefront still shows waiting for the export handshake although the hub already has an
    answer (acknowledged or later: exported; failed: failed) — the earlier mark was lost. One query."""
    waiting = [so.external_id for so in storefront_orders if so.awaiting_export]
    if not waiting:
        return 0
    answered = {S.ACKNOWLEDGED: True, S.DISPATCHED: True, S.STOREFRONT_NOTIFIED: True, S.FAILED: False}
    orders = (Order.objects.filter(channel__connection=connection, external_id__in=waiting, state__in=list(answered))
              .select_related("channel").defer("raw"))
    return mark_exported([(o, answered[o.state]) for o in orders])


def _transport_problem(conn: Connection, operation: str, exc: Exception, order: Order | None = None) -> Problem:
    """The record for a failed call, under the kind of its error (exceptions_app.services.kind_for_error):
    refused credentials are one ``auth_failure`` on the connection, data the remote refused is a
    ``bad_payload`` on the order it was about, the rest rate-limit / sync-timeout per operation."""
    kind = kind_for_error(exc)
    ref = order.idempotency_key if order is not None else ""
    if kind == "auth_failure":
        return Problem(kind, make_key(kind, conn.name), f"{conn.name} refused the hub's credentials ({operation})",
                       message=str(exc)[:1000], severity="critical", connection_id=conn.pk,
                       context={"last_error": str(exc)[:1000], "operation": operation, "action": "check_connection"})
    if kind == "bad_payload" and order is not None:
        fields = dict(getattr(exc, "fields", None) or {})
        return Problem(kind, _bad_key(conn.name, operation, ref), f"{conn.name} refused {operation} for order {order}"
                       + (f": {', '.join(fields)}" if fields else ""), message=str(exc)[:1000], connection_id=conn.pk,
                       channel_id=order.channel_id, order_ref=ref,
                       context={"fields": fields, "order_id": order.pk, "operation": operation, "action": "check_order"})
    return Problem(kind, make_key(kind, conn.name, operation), f"{conn.name}: {operation} failing ({type(exc).__name__})",
                   message=str(exc)[:1000], severity="warning", context={"last_error": str(exc)[:1000], "action": "check_connection"},
                   connection_id=conn.pk, order_ref=ref if kind == "bad_payload" else "")


def _group_by_cause(failed: list[tuple[Order, str]]) -> dict[str, list[Order]]:
    """Failed orders grouped by the cause logged on their transition (the exception type, not the message, so a
    batch refused for one reason is one transition_many)."""
    out: dict[str, list[Order]] = defaultdict(list)
    for o, why in failed:
        out[why.split(":")[0][:200]].append(o)
    return out


def _failed_problem(o: Order, why: str) -> Problem:
    return Problem("stuck_order", make_key("stuck_order", o.idempotency_key), f"Order {o} failed: not accepted by {o.warehouse}",
                   message=why[:1000], context={"order_id": o.pk, "state": S.FAILED, "attempts": o.send_attempts,
                                                "last_error": o.last_error, "action": "retry_order"},
                   connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key)


def _stuck_problem(o: Order, why: str) -> Problem:
    return Problem("stuck_order", make_key("stuck_order", o.idempotency_key), f"Order {o} not acknowledged by the warehouse",
                   message=why, context={"order_id": o.pk, "sent_at": o.sent_at.isoformat() if o.sent_at else None,
                                         "attempts": o.send_attempts, "last_error": o.last_error, "action": "retry_order"},
                   connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key)


def send(order: Order, actor=None) -> Order:
    """Send one order now (validating it first if needed). Returns it refreshed."""
    order.refresh_from_db()
    if order.state in (S.CAPTURED, S.HELD, S.FAILED):
        validate(order, actor=actor)
    if order.state not in (S.VALIDATED, S.SENT):
        raise OrderActionError(f"order {order} is {order.get_state_display()}; nothing to send")
    Order.objects.filter(pk=order.pk).update(next_attempt_at=None)
    ids = _claim(Q(pk=order.pk) & SEND_DUE, 1, LEASE_SECONDS)
    if ids:
        _send_claimed(ids, actor=actor)
    order.refresh_from_db()
    return order


def retry_send(order: Order, actor=None) -> Order:
    """Console/admin "retry": revalidate a held/failed order and send it, or resend an unacknowledged one."""
    order.refresh_from_db()
    if order.state not in (S.CAPTURED, S.VALIDATED, S.SENT, S.HELD, S.FAILED):
        raise OrderActionError(f"order {order} is {order.get_state_display()}; it cannot be retried")
    if order.state == S.FAILED:  # a person retries: the attempt budget starts again
        Order.objects.filter(pk=order.pk, state=S.FAILED).update(send_attempts=0)
    return send(order, actor=actor)


def update_field_and_resend(order: Order, field: str, value, actor=None) -> Order:
    """Fix one field of an order the warehouse does not have yet, then revalidate and send it.

    ``field``: ``shipping_method``, ``gift_message``, ``delivery_notes``, ``lines.<line id>.storefront_sku``
    (the path the hold exception names), ``shipping_address.<part>`` / ``billing_address.<part>`` with part one
    of first_name, last_name, company, street, street2, postal_code, city, region, country, phone, email."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if locked.state not in EDITABLE_BEFORE_SEND:
            raise OrderActionError(f"order {locked} is {locked.get_state_display()}: the warehouse may already have it, "
                                   "so it can no longer be edited in the hub")
        value = "" if value is None else str(value).strip()
        if field in ("shipping_method", "gift_message", "delivery_notes"):
            before = getattr(locked, field)
            setattr(locked, field, value)
            locked.save(update_fields=[field, "updated_at"])
        elif field.startswith(("shipping_address.", "billing_address.")):
            which, _, part = field.partition(".")
            if part not in ADDRESS_PARTS:
                raise OrderActionError(f"unknown address part {part!r}")
            addr = dict(getattr(locked, which) or {})
            before = addr.get(part, "")
            addr[part] = value
            setattr(locked, which, addr)
            locked.save(update_fields=[which, "updated_at"])
        elif field.startswith("lines.") and field.endswith(".storefront_sku"):
            line_id = field[len("lines."):-len(".storefront_sku")]
            line = locked.lines.filter(line_id=line_id, parent__isnull=True).first()
            if line is None:
                raise OrderActionError(f"order {locked} has no line {line_id!r}")
            if not value:
                raise OrderActionError("a SKU is required")
            before = line.storefront_sku
            line.components.all().delete()
            line.storefront_sku, line.item = value[:100], None
            line.save(update_fields=["storefront_sku", "item"])
            Reservation.objects.filter(order_ref=locked.idempotency_key, released_at__isnull=True).delete()
        else:
            raise OrderActionError(f"field {field!r} cannot be edited")
        cause = f"edited {field}: {before!r} → {value!r}"
        if locked.state in (S.VALIDATED, S.HELD):  # log the edit; validation then starts from held
            transition(locked, S.HELD, cause, actor=actor)
            cause = f"revalidated after {field} was edited"
        else:
            cause = f"{cause}; revalidated"
    validate_many([order.pk], actor=actor, cause=cause)
    order.refresh_from_db()
    if order.state == S.VALIDATED:
        return send(order, actor=actor)
    return order


def _cancelled_keys(o: Order) -> list[str]:
    return [order_problem_key(o), make_key("stuck_order", o.idempotency_key), make_key("orphaned_order", o.channel.key, o.external_id),
            make_key("missing_dispatch", o.idempotency_key), _bad_key(o.warehouse.name if o.warehouse_id and o.warehouse else "",
                                                                      "order-cancel", o.idempotency_key)]


def cancel_many(orders, reason: str, actor=None, from_states=None) -> list[int]:
    """Cancel orders the warehouse does not have (or has confirmed cancelling): one transition_many, one
    release of their reservations, one clear of their exception keys. Returns the ids cancelled."""
    orders = list(orders)
    with transaction.atomic():
        moved = set(transition_many([o.pk for o in orders], S.CANCELLED, f"cancelled: {reason}", actor=actor,
                                    from_states=from_states or list(EDITABLE_BEFORE_SEND), claim_token="", next_attempt_at=None))
        done = [o for o in orders if o.pk in moved]
        _release([o.idempotency_key for o in done], "cancelled")
    if done:
        clear([k for o in done for k in _cancelled_keys(o)], reason=f"order cancelled: {reason}"[:200])
    return sorted(moved)


def request_warehouse_cancel(order_ids, reason: str) -> int:
    """Orders the warehouse already has: remember that they must be cancelled there (the send loop no longer
    resends them) and nudge a worker to ask the warehouse (:func:`cancel_due`)."""
    now, ids = timezone.now(), list(order_ids)
    n = Order.objects.filter(AT_WAREHOUSE, pk__in=ids, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now, cancel_reason=reason[:300])
    if n:  # due at once unless a send is in flight: then when it ends (or its lease runs out)
        Order.objects.filter(_lease_free(now), pk__in=ids, cancel_requested_at=now).update(next_attempt_at=None, claim_token="")
        kick()
    return n


def cancel(order: Order, reason: str, actor=None) -> Order:
    """Cancel an order: at once when the warehouse does not have it (reservations released, exceptions
    cleared); when it does (sent / acknowledged), the warehouse is asked to cancel it now and the order is
    cancelled on its confirmation — a refusal (already picked or dispatched) raises an exception record
    and leaves the order as it is."""
    if not reason or not reason.strip():
        raise OrderActionError("cancelling an order needs a reason")
    order.refresh_from_db()
    if _maybe_at_warehouse(order):
        if order.warehouse is None or not order.warehouse.enabled:
            raise OrderActionError(f"order {order} is {order.get_state_display()} and its warehouse ({order.warehouse}) is "
                                   "not reachable from the hub: cancel it in the warehouse")
        # a person asking (again) asks the warehouse now, with their reason — unless a send of it is in flight:
        # then the cancel waits for that send's lease (cancel_due asks once it has landed or lapsed)
        now = timezone.now()
        Order.objects.filter(pk=order.pk).update(cancel_requested_at=now, cancel_reason=reason.strip()[:300])
        Order.objects.filter(_lease_free(now), pk=order.pk).update(next_attempt_at=None, claim_token="")
        ids = _claim(Q(pk=order.pk) & CANCEL_DUE, 1, LEASE_SECONDS)
        if ids:
            _cancel_claimed(ids, actor=actor)
        order.refresh_from_db()
        return order
    if order.state not in EDITABLE_BEFORE_SEND:
        raise OrderActionError(f"order {order} is {order.get_state_display()}; it can no longer be cancelled")
    cancel_many([order], reason.strip(), actor=actor)
    order.refresh_from_db()
    return order


@dataclass
class CancelResult:
    cancelled: int = 0
    refused: int = 0
    retrying: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def cancel_due(limit: int = HTTP_BATCH_SIZE, lease_seconds: int = LEASE_SECONDS) -> CancelResult:
    ids = _claim(CANCEL_DUE, limit, lease_seconds)
    return _cancel_claimed(ids) if ids else CancelResult()


def _cancel_claimed(ids: list[int], actor=None) -> CancelResult:
    """Ask the warehouse to cancel claimed orders with a cancel request. Confirmed (or the warehouse never had
    the order) → cancelled, reservations released; refused (already picked / dispatched) → the request is
    dropped and a ``bad_payload`` record names the refusal; transport failures back off and retry."""
    result = CancelResult()
    orders = list(Order.objects.filter(AT_WAREHOUSE, pk__in=ids, cancel_requested_at__isnull=False)
                  .select_related("channel__connection", "warehouse").defer("raw"))

    def call(o):
        return _connector(o.warehouse).cancel_order(o.idempotency_key)

    with _renewing([o.pk for o in orders]):
        outcomes = _parallel(call, orders)
    now = timezone.now()
    ack_wait = timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"])
    done, refused, later, problems = [], [], [], []
    for o, res in zip(orders, outcomes):
        o.claim_token = ""
        if (isinstance(res, errors.NotFoundError) and o.state == S.SENT
                and now < max((t for t in (o.sent_at, o.cancel_requested_at) if t is not None), default=now - ack_wait) + ack_wait):
            # a send may still be landing: "not there" is "not there yet", not cancelled — asked again until the
            # acknowledgement timeout has passed since the last send could have started; then it is truly absent
            o.last_error = f"cancel: {type(res).__name__}: {res} (not at the warehouse yet)"[:2000]
            o.next_attempt_at = now + backoff(o.send_attempts or 1)
            later.append(o)
            continue
        if isinstance(res, errors.NotFoundError) or not isinstance(res, Exception):
            done.append(o)
            continue
        o.last_error = f"cancel: {type(res).__name__}: {res}"[:2000]
        if isinstance(res, (errors.PermanentError, errors.BadDataError)) or isinstance(res, NotImplementedError):
            o.cancel_requested_at, o.next_attempt_at = None, None
            refused.append(o)
            problems.append(Problem("bad_payload", _bad_key(o.warehouse.name, "order-cancel", o.idempotency_key),
                                    f"{o.warehouse.name} refused to cancel order {o}",
                                    message=f"{o.cancel_reason or 'cancel requested'}; the warehouse answered: {res}"[:1000],
                                    context={"fields": {"status": str(res)[:300]}, "order_id": o.pk, "state": o.state,
                                             "action": "cancel_in_warehouse"},
                                    connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key))
            continue
        o.next_attempt_at = now + backoff(o.send_attempts or 1)
        later.append(o)
        problems.append(_transport_problem(o.warehouse, "cancel_order", res, o))
    with transaction.atomic():
        if refused:
            _save_varying(Order, refused, ["last_error", "cancel_requested_at", "next_attempt_at", "claim_token"])
            result.refused = len(refused)
        if later:
            _save_varying(Order, later, ["last_error", "next_attempt_at", "claim_token"])
            result.retrying = len(later)
        if problems:
            raise_many(problems)
    for reason, group in _by(done, lambda o: o.cancel_reason or "cancel requested").items():
        result.cancelled += len(cancel_many(group, f"{reason} (confirmed by {group[0].warehouse})", actor=actor,
                                            from_states=[S.SENT, S.ACKNOWLEDGED, S.FAILED]))
    return result


def _by(items, key) -> dict:
    out: dict = defaultdict(list)
    for it in items:
        out[key(it)].append(it)
    return out


# --- dispatch -----------------------------------------------------------------------------------------
def _parcel_dict(p: Parcel) -> dict:
    return {"carrier": p.carrier, "tracking_number": p.tracking_number, "tracking_url": p.tracking_url,
            "lines": [[s, q] for s, q in p.lines]}


def _parcels(order: Order) -> list[Parcel]:
    """The order's parcels as the warehouse reported them (master SKUs)."""
    return [Parcel(carrier=t.get("carrier", ""), tracking_number=t.get("tracking_number", ""), tracking_url=t.get("tracking_url", ""),
                   lines=[(s, int(q)) for s, q in t.get("lines") or []]) for t in order.tracking or []]


def _storefront_parcels(order: Order, lines: list[OrderLine]) -> list[Parcel]:
    """The parcels with their lines in the storefront's terms: a warehouse (master) SKU goes back to the order
    line it was mapped from (SKU mappings and transforms differ on the two sides), and bundle components to
    their bundle line — as many whole bundles as the parcel carries every component for. Lines the order
    does not explain are dropped (the storefront could not place them either)."""
    picked = [ln for ln in lines if ln.item_id is not None and not any(c.parent_id == ln.pk for c in lines)]
    by_sku: dict[str, list[OrderLine]] = defaultdict(list)
    for ln in picked:
        by_sku[ln.item.sku].append(ln)
    parents = {ln.pk: ln for ln in lines}
    out = []
    for p in _parcels(order):
        plain: dict[str, int] = defaultdict(int)
        kit_units: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # parent pk → component pk → units
        for sku, qty in p.lines:
            candidates = by_sku.get(sku, [])
            for i, ln in enumerate(candidates):
                if qty <= 0:
                    break
                take = qty if i == len(candidates) - 1 else min(qty, ln.quantity)  # the last line takes what is left
                if ln.parent_id:
                    kit_units[ln.parent_id][ln.pk] += take
                else:
                    plain[ln.storefront_sku] += take
                qty -= take
        for parent_id, got in kit_units.items():
            parent = parents.get(parent_id)
            comps = [c for c in lines if c.parent_id == parent_id]
            if parent is None or not comps or not parent.quantity:
                continue
            whole = min(got.get(c.pk, 0) * parent.quantity // c.quantity for c in comps)
            if whole > 0:
                plain[parent.storefront_sku] += whole
        out.append(Parcel(carrier=p.carrier, tracking_number=p.tracking_number, tracking_url=p.tracking_url,
                          lines=[(s, q) for s, q in plain.items()]))
    return out


@dataclass
class DispatchResult:
    dispatched: int = 0
    partial: int = 0
    duplicate: int = 0
    unknown: int = 0
    rejected: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def record_dispatches(connection: Connection, dispatches, source: str = "dispatch") -> DispatchResult:
    """Warehouse dispatch confirmations → tracking on the order, state dispatched, storefront notify queued.
    Idempotent (parcels merge by tracking number). Rows the connector could not parse
    (``dispatches.rejected``) and dispatches for orders the hub does not know become ``bad_payload``."""
    rejected = list(getattr(dispatches, "rejected", None) or [])
    dispatches = list(dispatches)
    res = DispatchResult()
    problems = [Problem("bad_payload", _bad_key(connection.name, source, r.ref),
                        f"Unreadable dispatch {r.ref} from {connection.name}: {r.field or 'row'}", message=r.message,
                        context={"fields": {r.field or "row": r.message}, "raw": r.raw, "action": "check_sender"},
                        connection_id=connection.pk)
                for r in rejected]
    res.rejected = len(problems)
    received = timezone.now()
    horizon = received + timedelta(seconds=int(settings.HUB.get("FUTURE_TOLERANCE_SECONDS", 300)))
    with transaction.atomic():
        refs = sorted({d.order_ref for d in dispatches})
        orders = {}
        for chunk in _chunks(refs):
            # FOR UPDATE of the orders only: the joined channel row stays unlocked (locking it deadlocked with stock
            # webhooks, whose deferred foreign-key checks on the channel wait at commit — the flash-sale fault test)
            orders.update({o.idempotency_key: o for o in Order.objects.select_for_update(of=("self",))
                           .filter(idempotency_key__in=chunk).select_related("channel").defer("raw")})
        changed, to_ack, to_dispatch = {}, [], []
        for d in dispatches:
            o = orders.get(d.order_ref)
            if o is None or o.state in (S.CANCELLED, S.CAPTURED, S.VALIDATED, S.HELD) or (o.state == S.FAILED
                                                                                     and not _maybe_at_warehouse(o)):
                res.unknown += 1
                why = "unknown to the hub" if o is None else f"{o.get_state_display()} in the hub"
                problems.append(Problem("bad_payload", _bad_key(connection.name, source, d.ref or d.order_ref),
                                        f"{connection.name} dispatched order {d.order_ref}, which is {why}",
                                        message="Check the order in the warehouse and the hub.",
                                        context={"fields": {"orderRef": why}, "dispatch_ref": d.ref, "action": "check_order",
                                                 "parcels": [_parcel_dict(p) for p in d.parcels]},
                                        connection_id=connection.pk, order_ref=d.order_ref))
                continue
            known = {t.get("tracking_number") for t in o.tracking or []}
            new = [_parcel_dict(p) for p in d.parcels if not p.tracking_number or p.tracking_number not in known]
            if new:
                o.tracking = list(o.tracking or []) + new
                changed[o.pk] = o
            if d.warehouse_ref and not o.warehouse_ref:
                o.warehouse_ref = d.warehouse_ref[:100]
                changed[o.pk] = o
            if not d.complete:
                res.partial += 1
                if o.state in (S.SENT, S.FAILED):
                    to_ack.append(o)
                continue
            if o.state in (S.DISPATCHED, S.STOREFRONT_NOTIFIED):
                res.duplicate += 1
                continue
            if o.state in (S.SENT, S.FAILED):
                to_ack.append(o)
            to_dispatch.append(o)
            # the warehouse's time is kept; the agreed time to show it shipped runs from when the hub heard of it
            # (a time ahead of the hub's clock by more than HUB["FUTURE_TOLERANCE_SECONDS"] is clamped to now)
            o.dispatched_at = d.dispatched_at if d.dispatched_at and d.dispatched_at <= horizon else received
            if d.dispatched_at and d.dispatched_at > horizon:
                log.warning("%s dispatch %s for %s is dated %s, in the future: recorded as dispatched now", connection.name,
                            d.ref, d.order_ref, d.dispatched_at.isoformat())
            o.dispatch_received_at = received
            changed[o.pk] = o
        if changed:
            Order.objects.bulk_update(list(changed.values()), ["tracking", "warehouse_ref", "dispatched_at", "dispatch_received_at"],
                                      batch_size=500)
        if to_ack:
            moved = set(transition_many([o.pk for o in to_ack if o.state == S.SENT], S.ACKNOWLEDGED,
                                        "acknowledged: the warehouse confirmed a dispatch",
                                        from_states=[S.SENT], claim_token="", next_attempt_at=None))
            # a failed order (no acknowledgement in time) the warehouse did have: its dispatch is the acknowledgement
            moved |= set(transition_many([o.pk for o in to_ack if o.state == S.FAILED], S.ACKNOWLEDGED,
                                         "acknowledged: the warehouse confirmed a dispatch of an order the hub had marked failed",
                                         from_states=[S.FAILED], claim_token="", next_attempt_at=None))
            _hold_until_master_shows([(o.idempotency_key, o.warehouse_id or connection.pk, received) for o in to_ack if o.pk in moved])
        if to_dispatch:
            moved = transition_many([o.pk for o in to_dispatch], S.DISPATCHED, f"dispatch confirmed by {connection.name} ({source})",
                                    from_states=[S.ACKNOWLEDGED], claim_token="", next_attempt_at=None)
            res.dispatched = len(moved)
            if moved:
                by_pk = {o.pk: o for o in to_dispatch}
                _release([by_pk[pk].idempotency_key for pk in moved], "dispatched")
                kick()
        if changed or to_dispatch:
            update_shipped([*changed, *(o.pk for o in to_dispatch)])  # OrderLine.shipped_quantity from the parcels
        if problems:
            raise_many(problems)
    acked_keys = [make_key("stuck_order", o.idempotency_key) for o in to_ack + to_dispatch]
    if acked_keys:
        clear(acked_keys, reason="the warehouse dispatched the order")
    return res


def record_dispatch(connection: Connection, dispatch: Dispatch, source: str = "dispatch") -> DispatchResult:
    return record_dispatches(connection, [dispatch], source=source)


# --- storefront notification ------------------------------------------------------------------------
@dataclass
class NotifyResult:
    notified: int = 0
    retrying: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def notify_due(limit: int = BATCH_SIZE, lease_seconds: int = LEASE_SECONDS) -> NotifyResult:
    ids = _claim(NOTIFY_DUE, limit, lease_seconds)
    return _notify_claimed(ids) if ids else NotifyResult()


def _notify_claimed(ids: list[int], actor=None) -> NotifyResult:
    """Mark claimed *dispatched* orders shipped in their storefront. Never called for an order without
    a warehouse dispatch confirmation (the claim only takes state dispatched)."""
    result = NotifyResult()
    Order.objects.filter(pk__in=ids, state=S.DISPATCHED).update(notify_attempts=F("notify_attempts") + 1)
    # ``raw`` (the order as captured) lets a version-checked storefront write without reading the order first
    orders = list(Order.objects.filter(pk__in=ids, state=S.DISPATCHED).select_related("channel__connection"))
    lines: dict[int, list[OrderLine]] = defaultdict(list)
    for chunk in _chunks([o.pk for o in orders]):
        for ln in OrderLine.objects.filter(order_id__in=chunk).select_related("item").order_by("pk"):
            lines[ln.order_id].append(ln)
    parcels = {o.pk: _storefront_parcels(o, lines[o.pk]) for o in orders}

    def call(o):
        return _connector(o.channel.connection).mark_shipped(o.external_id, parcels[o.pk], known_version=o.storefront_version,
                                                             known_order=o.raw or None)

    with _renewing([o.pk for o in orders]):
        outcomes = _parallel(call, orders)
    now = timezone.now()
    done, later, problems = [], [], []
    for o, res in zip(orders, outcomes):
        o.claim_token = ""
        if isinstance(res, Exception):
            o.last_error = f"mark shipped: {type(res).__name__}: {res}"[:2000]
            o.next_attempt_at = now + backoff(o.notify_attempts)
            later.append(o)
            problems.append(_transport_problem(o.channel.connection, "mark_shipped", res, o))
            continue
        if res is not None:
            o.storefront_version = res
        o.last_error, o.next_attempt_at = "", None
        done.append(o)
    with transaction.atomic():
        if done:
            _save_split(Order, done, ["storefront_version"], ["last_error", "next_attempt_at", "claim_token"])
            result.notified = len(transition_many([o.pk for o in done], S.STOREFRONT_NOTIFIED, "storefront marked shipped",
                                                  actor=actor, from_states=[S.DISPATCHED]))
        if later:
            Order.objects.bulk_update(later, ["last_error", "next_attempt_at", "claim_token"], batch_size=500)
            result.retrying = len(later)
        if problems:
            raise_many(problems)
    if done:
        conns = {o.channel.connection.name for o in done}
        clear([make_key("missing_dispatch", o.idempotency_key) for o in done]
              + [k for c in conns for k in transport_keys(c, "mark_shipped")],
              reason="storefront marked shipped")
    return result


def notify_storefront(order: Order, actor=None) -> Order:
    """Mark one dispatched order shipped in the storefront now. Refuses an order the warehouse has not
    confirmed as dispatched."""
    order.refresh_from_db()
    if order.state == S.STOREFRONT_NOTIFIED:
        return order
    if order.state != S.DISPATCHED:
        raise OrderActionError(f"order {order} is {order.get_state_display()}: the storefront is told only after the "
                               "warehouse confirms the dispatch")
    Order.objects.filter(pk=order.pk, state=S.DISPATCHED).update(next_attempt_at=None)
    ids = _claim(Q(pk=order.pk) & NOTIFY_DUE, 1, LEASE_SECONDS)
    if ids:
        _notify_claimed(ids, actor=actor)
    order.refresh_from_db()
    return order


# --- processing loop (what the worker runs) ---------------------------------------------------------
def validate_due(limit: int = BATCH_SIZE, lease_seconds: int = LEASE_SECONDS) -> int:
    ids = _claim(VALIDATE_DUE, limit, lease_seconds)
    if not ids:
        return 0
    out = validate_many(ids)
    return len(out.validated) + len(out.held)


def process_due(batch_size: int = BATCH_SIZE, lease_seconds: int = LEASE_SECONDS) -> dict:
    """One pass: validate captured orders, send due ones, notify dispatched ones. Returns counts."""
    def phase(name, fn, empty):
        try:
            return fn()
        except Exception:  # noqa: BLE001 — one failing phase must not starve the others; its claims expire and retry
            log.exception("orders: %s failed; its orders are retried when their lease ends", name)
            return empty

    validated = phase("validate", lambda: validate_due(batch_size, lease_seconds), 0)
    sent = phase("send", lambda: send_due(min(batch_size, HTTP_BATCH_SIZE), lease_seconds), SendResult())
    notified = phase("notify", lambda: notify_due(min(batch_size, HTTP_BATCH_SIZE), lease_seconds), NotifyResult())
    cancelled = phase("cancel", lambda: cancel_due(min(batch_size, HTTP_BATCH_SIZE), lease_seconds), CancelResult())
    return {"validated": validated, **{f"send_{k}": v for k, v in sent.as_dict().items()},
            **{f"notify_{k}": v for k, v in notified.as_dict().items()}, **{f"cancel_{k}": v for k, v in cancelled.as_dict().items()}}


def release_expired_claims() -> int:
    """Orders a dead worker claimed: the lease (next_attempt_at) ran out, so they are due again anyway;
    clear the stale token so the console does not show them as in progress."""
    return Order.objects.filter(claim_token__gt="", next_attempt_at__lte=timezone.now()).update(claim_token="")


def pending_work() -> int:
    now = timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return Order.objects.filter((VALIDATE_DUE | SEND_DUE | NOTIFY_DUE | CANCEL_DUE) & due).count()


# --- polls ----------------------------------------------------------------------------------------------
def _cursor(conn: Connection, stream: str) -> SyncCursor:
    return SyncCursor.objects.get_or_create(connection=conn, stream=stream)[0]


def poll_orders(connection: Connection, max_pages: int = 20, page_size: int = 500) -> dict:
    """Catch-up: capture storefront orders modified since the stored cursor. The cursor advances in the
    same transaction as the capture, so a crash re-reads the page (captures are idempotent)."""
    connector = _connector(connection)
    cur = _cursor(connection, ORDERS_STREAM)
    totals = {"pages": 0, "created": 0, "existing": 0, "rejected": 0, "returns": 0}
    value = cur.value
    for _ in range(max_pages):
        page = connector.orders_since(value, limit=page_size)
        with transaction.atomic():
            r = capture_many(connection, page.items, source="poll")
            SyncCursor.objects.filter(pk=cur.pk).update(value=page.cursor or value, updated_at=timezone.now())
        _repair_exports(connection, page.items)
        totals["pages"] += 1
        totals["created"] += len(r.created)
        totals["existing"] += r.existing
        totals["rejected"] += r.rejected
        totals["returns"] += r.returns
        value = page.cursor or value
        if not page.has_more:
            break
    return totals


def poll_dispatches(connection: Connection, max_pages: int = 20) -> dict:
    connector = _connector(connection)
    cur = _cursor(connection, DISPATCH_STREAM)
    totals = defaultdict(int)
    value = cur.value
    for _ in range(max_pages):
        page = connector.dispatches_since(value)
        with transaction.atomic():
            r = record_dispatches(connection, page.items, source="dispatch-poll")
            SyncCursor.objects.filter(pk=cur.pk).update(value=page.cursor or value, updated_at=timezone.now())
        totals["pages"] += 1
        for k, v in r.as_dict().items():
            totals[k] += v
        value = page.cursor or value
        if not page.has_more:
            break
    return dict(totals)


def fetch_and_capture(connection: Connection, external_ids: list[str], refresh_ids: list[str] = ()) -> CaptureResult:
    """Orders a subscription only named (change notifications): fetch each the hub does not have yet and
    capture it. ``refresh_ids``: orders a message said changed in a way the hub mirrors (a return booked or
    moved on, a cancellation): each is re-read (one GET) even when the hub has it, and goes through
    :func:`capture_many` like a polled order — returns by :func:`_record_storefront_returns` (upserted per
    return item, so the same message twice, or the poll reading the same order later, counts nothing twice),
    storefront cancellations and fulfilments likewise. A fetch that fails is logged and left to the poll
    (the change bumped the order's lastModifiedAt, so the poll brings it back). An id the storefront answers
    404 for — it never issued that order (a forged or mistaken message) — captures nothing and becomes a
    ``bad_payload`` record naming the id. Only what the storefront's API returns is ever captured: this is
    the one path every inbound order notification takes (:mod:`.notifications`)."""
    connector = _connector(connection)
    refresh = list(dict.fromkeys(refresh_ids))
    named = [i for i in dict.fromkeys(external_ids) if i not in set(refresh)]
    known = set(Order.objects.filter(channel__connection=connection, external_id__in=named).values_list("external_id", flat=True))
    todo = [i for i in named if i not in known] + refresh
    fetched, unknown = [], []
    for external_id, r in zip(todo, _parallel(connector.get_order, todo)):
        if isinstance(r, errors.NotFoundError):
            unknown.append(Problem("bad_payload", make_key("bad_payload", connection.name, "order-notification", external_id),
                                   f"{connection.name} has no order {external_id!r}, which a notification named",
                                   message="A subscription/webhook message named an order the storefront does not know; nothing "
                                           "was captured. Check the sender (a forged or misrouted message) if this repeats.",
                                   severity="warning", context={"order_id": external_id, "action": "check_sender"},
                                   connection_id=connection.pk))
        elif isinstance(r, Exception):
            log.warning("order %s named by a %s subscription message could not be fetched (the poll catches up): %s",
                        external_id, connection.name, r)
        elif r.external_id != external_id:
            log.warning("order %s named by a %s message was read back as %s: not captured", external_id, connection.name,
                        r.external_id)
        else:
            fetched.append(r)
    if unknown:
        log.warning("%s: %d order(s) named by notifications are unknown to the storefront: %s", connection.name,
                    len(unknown), ", ".join(p.context["order_id"] for p in unknown)[:500])
        raise_many(unknown)
    return capture_many(connection, fetched, source="webhook-fetch")


# --- beat checks ---------------------------------------------------------------------------------------
def resend_unacknowledged(limit: int = 1000) -> dict:
    """Beat: orders sent but not acknowledged within HUB["ACK_TIMEOUT_MINUTES"] → ``stuck_order`` exception
    and made due for an immediate resend (safe: the warehouse deduplicates on the idempotency key)."""
    cutoff = timezone.now() - timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"])
    stuck = list(Order.objects.filter(state=S.SENT, sent_at__lt=cutoff).select_related("channel").defer("raw")[:limit])
    if stuck:
        raise_many([_stuck_problem(o, f"sent {o.sent_at:%Y-%m-%d %H:%M} UTC, {o.send_attempts} attempt(s), no acknowledgement"
                                      f"{': ' + o.last_error if o.last_error else ''}") for o in stuck])
        now = timezone.now()
        Order.objects.filter(pk__in=[o.pk for o in stuck]).filter(Q(claim_token="") | Q(next_attempt_at__lte=now)).update(next_attempt_at=None)
    result = send_due(limit=HTTP_BATCH_SIZE)
    if stuck:
        kick()  # the rest of the stuck orders are due now: workers pick them up batch by batch
    return {"stuck": len(stuck), **result.as_dict()}


def find_missing_dispatches(limit: int = 1000, warehouse_check_limit: int = 50) -> dict:
    """Beat, both sides of a dispatch:

    1. Hub side: dispatched by the warehouse, storefront still not told ``HUB["DISPATCH_NOTIFY_MINUTES"]``
       after the hub received the confirmation → ``missing_dispatch`` exception and an immediate notify retry.
    2. Warehouse side: orders acknowledged longer than ``HUB["DISPATCH_DUE_MINUTES"]`` (default 24 h) ago with
       no dispatch in the hub are looked up in the warehouse (``dispatches_for``; at most
       ``warehouse_check_limit`` per warehouse per run, walking a persisted cursor so every order gets its
       turn). A dispatch found there — its confirmation got lost — is processed as if it had arrived;
       otherwise ``missing_dispatch`` names the order (the warehouse does not have it, or has not shipped it)."""
    cutoff = timezone.now() - timedelta(minutes=settings.HUB["DISPATCH_NOTIFY_MINUTES"])
    # measured from when the hub received the confirmation: an old confirmation caught late by a poll is not
    # overdue the moment it arrives (rows from before the field existed fall back to the warehouse's time)
    overdue = Q(dispatch_received_at__lt=cutoff) | Q(dispatch_received_at__isnull=True, dispatched_at__lt=cutoff)
    late = list(Order.objects.filter(overdue, state=S.DISPATCHED).select_related("channel").defer("raw")[:limit])
    if late:
        raise_many([Problem("missing_dispatch", make_key("missing_dispatch", o.idempotency_key),
                            f"Order {o} dispatched but not shown shipped in the storefront",
                            message=f"dispatched {o.dispatched_at:%Y-%m-%d %H:%M} UTC (confirmation received "
                                    f"{(o.dispatch_received_at or o.dispatched_at):%Y-%m-%d %H:%M} UTC)"
                                    f"{': ' + o.last_error if o.last_error else ''}",
                            context={"order_id": o.pk, "tracking": o.tracking, "action": "resend_dispatch"},
                            channel_id=o.channel_id, connection_id=o.channel.connection_id, order_ref=o.idempotency_key)
                    for o in late])
        now = timezone.now()
        Order.objects.filter(pk__in=[o.pk for o in late]).filter(Q(claim_token="") | Q(next_attempt_at__lte=now)).update(next_attempt_at=None)
    audit = audit_undispatched(warehouse_check_limit)
    result = notify_due(limit=HTTP_BATCH_SIZE)
    if late or audit["recovered"]:
        kick()
    return {"late": len(late), **audit, **result.as_dict()}


def audit_undispatched(limit_per_warehouse: int = 50) -> dict:
    """Warehouse side of :func:`find_missing_dispatches` (see there)."""
    due = timezone.now() - timedelta(minutes=int(settings.HUB["DISPATCH_DUE_MINUTES"]))
    counts = {"audited": 0, "recovered": 0, "undispatched": 0}
    for wh in warehouse_connections():
        cur = _cursor(wh, DISPATCH_AUDIT_STREAM)
        after = int(cur.value) if (cur.value or "").isdigit() else 0
        base = Order.objects.filter(state=S.ACKNOWLEDGED, warehouse=wh, acknowledged_at__lt=due, cancel_requested_at__isnull=True)
        group = list(base.filter(pk__gt=after).select_related("channel").defer("raw").order_by("pk")[:limit_per_warehouse])
        # the walk wraps: the next run starts again from the oldest once this one reached the end
        SyncCursor.objects.filter(pk=cur.pk).update(value=str(group[-1].pk) if len(group) == limit_per_warehouse else "",
                                                    updated_at=timezone.now())
        if not group:
            continue
        connector = _connector(wh)
        found = _parallel(lambda o: connector.dispatches_for(o.idempotency_key), group)
        counts["audited"] += len(group)
        recovered, problems = [], []
        for o, res in zip(group, found):
            if isinstance(res, list) and res:
                recovered += res
                continue
            if isinstance(res, Exception) and not isinstance(res, errors.NotFoundError):
                log.warning("dispatch audit of %s at %s failed: %s", o, wh.name, res)
                continue
            why = f"{wh.name} does not have the order" if isinstance(res, errors.NotFoundError) else \
                f"{wh.name} has not dispatched it"
            counts["undispatched"] += 1
            problems.append(Problem("missing_dispatch", make_key("missing_dispatch", o.idempotency_key),
                                    f"Order {o} acknowledged {o.acknowledged_at:%Y-%m-%d %H:%M} UTC, no dispatch yet",
                                    message=f"{why}; past the agreed dispatch time.", severity="warning",
                                    context={"order_id": o.pk, "state": o.state, "warehouse": wh.name, "action": "check_order"},
                                    channel_id=o.channel_id, connection_id=wh.pk, order_ref=o.idempotency_key))
        if recovered:
            r = record_dispatches(wh, recovered, source="dispatch-audit")
            counts["recovered"] += r.dispatched + r.partial
            log.warning("%s: %d dispatch confirmation(s) were never received; recovered by the dispatch audit", wh.name, len(recovered))
        if problems:
            raise_many(problems)
    return counts


def _window_cursor(connection: Connection, since: datetime) -> str | None:
    """A cursor meaning "modified since ``since``" for connectors whose cursor format is documented:
    commercetools ``<lastModifiedAt>|<id>`` and SFCC ``<last_modified>|<order_no>`` (see the connectors)."""
    ts = since.astimezone(dt_timezone.utc)
    if connection.system_type == "commercetools":
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z|"
    if connection.system_type == "sfcc":
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "|"
    return None


def _cursor_time(cursor: str) -> str:
    """The timestamp part of a window cursor, comparable as text (both formats are ISO 8601 UTC)."""
    return (cursor or "").partition("|")[0].rstrip("Z")


def find_orphans(window_minutes: int = 24 * 60, grace_minutes: int | None = None, max_pages: int = 10,
                 check_limit: int = 200, page_size: int = 500) -> dict:
    """Beat: orders in the storefront that never reached the warehouse → ``orphaned_order``.

    1. Storefront side (commercetools and SFCC): orders modified in the last ``window_minutes`` that the hub
       never captured — recorded and captured now (the normal flow then sends them). The scan walks a
       cursor persisted per connection (stream ``orphan-scan``): each run reads up to ``max_pages`` pages
       from where the last one stopped (never before the window start), so on a busy day newer orders are
       reached on the next runs instead of re-reading the same first pages. A page holding orders younger
       than the grace period is checked up to them and re-read next time (the cursor does not pass them).
    2. Warehouse side: hub orders past the grace period that are still not acknowledged are looked up in
       the warehouse (``order_status``); those it does not have are recorded and made due for sending."""
    grace = timedelta(minutes=grace_minutes if grace_minutes is not None else settings.HUB["ACK_TIMEOUT_MINUTES"])
    now = timezone.now()
    problems, counts = [], {"storefront_missing": 0, "warehouse_missing": 0, "checked": 0, "scanned": 0}
    for conn in Connection.objects.filter(enabled=True, system_type__in=["commercetools", "sfcc"]).order_by("pk"):
        start = _window_cursor(conn, now - timedelta(minutes=window_minutes))
        if start is None or not conn.channels.exists():
            continue
        stored = _cursor(conn, ORPHAN_STREAM)
        cursor = stored.value if stored.value and _cursor_time(stored.value) > _cursor_time(start) else start
        connector = _connector(conn)
        channels = list(Channel.objects.filter(connection=conn, active=True))
        missing = []
        try:
            for _ in range(max_pages):
                page = connector.orders_since(cursor, limit=page_size)
                by_key, young = {}, False
                for so in page.items:
                    if so.placed_at is not None and so.placed_at >= now - grace:
                        young = True  # still within its grace period: look again next run
                        continue
                    ch = resolve_channel(conn, so.channel_ref, channels)
                    if ch is not None and so.capturable:
                        by_key[(ch.pk, so.external_id)] = (ch, so)
                counts["scanned"] += len(page.items)
                known = _known_pairs(by_key)
                missing += [v for k, v in by_key.items() if k not in known]
                if young:
                    break
                cursor = page.cursor or cursor
                SyncCursor.objects.filter(pk=stored.pk).update(value=cursor, updated_at=timezone.now())
                if not page.has_more:
                    break
        except errors.ConnectorError as exc:
            log.warning("orphan scan of %s failed: %s", conn.name, exc)
            continue
        for ch, so in missing:
            problems.append(Problem("orphaned_order", make_key("orphaned_order", ch.key, so.external_id),
                                    f"Order {so.order_number or so.external_id} is in {conn.name} but never reached the hub",
                                    message="Captured now by the orphan check; check the subscription / poll.",
                                    context={"order_id": so.external_id, "placed_at": so.placed_at.isoformat() if so.placed_at else None,
                                             "action": "retry_order"},
                                    channel_id=ch.pk, connection_id=conn.pk, order_ref=order_key(ch, so.external_id)))
        if missing:
            _capture(missing, "orphan check")
        counts["storefront_missing"] += len(missing)
    stale = list(Order.objects.filter(state__in=[S.VALIDATED, S.SENT], created_at__lt=now - grace)
                 .select_related("channel", "warehouse").defer("raw").order_by("created_at")[:check_limit])
    by_wh = defaultdict(list)
    for o in stale:
        if o.warehouse is not None:
            by_wh[o.warehouse].append(o)
    for wh, group in by_wh.items():
        if not wh.enabled:
            continue
        connector = _connector(wh)
        statuses = _parallel(lambda o: connector.order_status(o.idempotency_key), group)
        counts["checked"] += len(group)
        gone = [o for o, st in zip(group, statuses) if st is None]
        for o in gone:
            problems.append(Problem("orphaned_order", make_key("orphaned_order", o.channel.key, o.external_id),
                                    f"Order {o} is not in {wh.name}",
                                    message=f"{o.get_state_display()} in the hub since {o.created_at:%Y-%m-%d %H:%M} UTC; resending.",
                                    context={"order_id": o.pk, "state": o.state, "last_error": o.last_error, "action": "retry_order"},
                                    channel_id=o.channel_id, connection_id=wh.pk, order_ref=o.idempotency_key))
        if gone:
            Order.objects.filter(pk__in=[o.pk for o in gone]).filter(Q(claim_token="") | Q(next_attempt_at__lte=now)).update(next_attempt_at=None)
        counts["warehouse_missing"] += len(gone)
    if problems:
        raise_many(problems)
        kick()
    return counts


# --- storefront-side fulfilments ------------------------------------------------------------------------
def record_storefront_fulfilment(order: Order, fulfilment_ref: str, lines, location: str = "",
                                 fulfilled_at: datetime | None = None) -> tuple[StorefrontFulfilment, bool]:
    """Remember a fulfilment the storefront side made (ship-from-store, click & collect) so the master is
    told until it acknowledges. ``lines``: [(master sku, quantity)]. Idempotent per (order, ref)."""
    warehouse = order.warehouse or order.channel.warehouse
    if warehouse is None:
        raise OrderActionError(f"order {order} has no warehouse to report the fulfilment to")
    return StorefrontFulfilment.objects.get_or_create(
        order=order, fulfilment_ref=str(fulfilment_ref)[:100],
        defaults={"warehouse": warehouse, "lines": [[str(s), int(q)] for s, q in lines], "location": location or "",
                  "fulfilled_at": fulfilled_at or timezone.now()})


def send_fulfilments(limit: int = BATCH_SIZE) -> dict:
    """Report unacknowledged storefront-side fulfilments to the master; back off on failure, retry forever
    (a ``sync_timeout`` exception tells people once retries keep failing)."""
    now = timezone.now()
    rows = list(StorefrontFulfilment.objects.filter(acknowledged_at__isnull=True)
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .select_related("order", "warehouse").order_by("pk")[:limit])
    if not rows:
        return {"acknowledged": 0, "retrying": 0}
    StorefrontFulfilment.objects.filter(pk__in=[r.pk for r in rows]).update(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
                                                                          attempts=F("attempts") + 1)

    def call(r):
        return _connector(r.warehouse).send_fulfilment(Fulfilment(
            order_ref=r.order.idempotency_key, fulfilment_ref=r.fulfilment_ref, lines=[(s, int(q)) for s, q in r.lines],
            location=r.location, fulfilled_at=r.fulfilled_at))

    outcomes = _parallel(call, rows)
    ok, bad, problems = [], [], []
    for r, res in zip(rows, outcomes):
        r.attempts += 1
        if isinstance(res, Exception):
            r.last_error = f"{type(res).__name__}: {res}"[:2000]
            r.next_attempt_at = now + backoff(r.attempts)
            bad.append(r)
            if r.attempts >= 3:
                problems.append(_transport_problem(r.warehouse, "send_fulfilment", res, r.order))
        else:
            r.ack_id, r.acknowledged_at, r.last_error, r.next_attempt_at = str(res)[:100], timezone.now(), "", None
            ok.append(r)
    StorefrontFulfilment.objects.bulk_update(ok + bad, ["ack_id", "acknowledged_at", "last_error", "next_attempt_at"], batch_size=500)
    if problems:
        raise_many(problems)
    if ok:
        clear([k for c in {r.warehouse.name for r in ok} for k in transport_keys(c, "send_fulfilment")]
              + [_bad_key(r.warehouse.name, "send_fulfilment", r.order.idempotency_key) for r in ok])
    return {"acknowledged": len(ok), "retrying": len(bad)}


def storefront_connections():
    return Connection.objects.filter(enabled=True, system_type__in=["commercetools", "sfcc"], channels__isnull=False).distinct().order_by("pk")


def warehouse_connections():
    return Connection.objects.filter(enabled=True, fulfilled_channels__isnull=False).distinct().order_by("pk")


__all__ = ["capture", "capture_many", "validate", "validate_many", "send", "retry_send", "update_field_and_resend", "cancel",
           "revalidate_held", "record_dispatch", "record_dispatches", "notify_storefront", "poll_orders", "poll_dispatches",
           "resend_unacknowledged", "find_orphans", "find_missing_dispatches", "record_storefront_fulfilment", "send_fulfilments",
           "process_due", "IllegalTransition", "OrderActionError"]
