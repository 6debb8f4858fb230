"""Demand feed to the planner and recommendations back, as plain functions (tasks are thin wrappers).

Demand lines (:func:`build_demand`) are built set-based from ``orders.Order`` / ``OrderLine`` in a fixed
number of queries:

- an order's lines count as demand once the order is validated (validated, sent, acknowledged,
  dispatched, storefront notified, held); a cancelled or failed order's lines count 0 — if they were
  sent before, they are re-sent with 0 (the planner upserts by line key), never sent otherwise; a
  captured order is not judged yet;
- bundle lines are exploded to their components: component lines the order flow already exploded
  (``OrderLine.parent``) are used as they are, a bundle line without component lines is exploded from
  ``catalog.BundleComponent``; either way the component line keeps ``bundle_sku``;
- channel = ``Channel.key``; location = the warehouse connection's name, or the planner's warehouse id for
  it from the planner connection's ``options["warehouses"]`` (``{"<connection name>": "<warehouse id>"}``);
  promotion codes = ``Order.promotion_codes``;
- returns (:class:`ReturnLine`) are sent as return lines (negative quantity) — only units returned
  into the saleable state (``available``) offset demand; units only announced (``advised``), booked into
  inspection/quarantine or damaged did not come back to sellable stock, so they still need replenishing
  and are not sent. Returns come in with the storefront order poll (``orders.capture.capture_many`` →
  connector ``storefront_returns`` → :func:`record_returns`), keyed by the storefront's return item id.

The key of a line is ``<order ref>|<sku>|<bundle sku>|sale|return`` (the same id the Inventory Planner
connector sends). :class:`DemandFeedEntry` keeps what was last sent per key: each line goes once and is
re-sent only if its quantity changes. Only orders / returns touched since the last successful run
(minus an overlap) are re-read; the cursor is ``SyncCursor(connection, "demand")``.

Failures: a connector error stops the run (entries already sent stay recorded, the cursor does not move,
the next run resumes) and raises ``rate_limited`` / ``sync_timeout`` / ``bad_payload`` keyed
``<kind>:<connection name>:push_demand`` (refused credentials: ``auth_failure:<connection name>``), cleared by the
next success — the one policy of :func:`integration_hub.core.outcomes.connection_call`, as for the recommendations
(``recommendations``) and stock orders (``stock_orders``) reads.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from connectors.base import DemandLine
from exceptions_app import kinds
from exceptions_app.services import Problem, raise_many
from integration_hub.catalog.models import BundleComponent, Item
from integration_hub.core.models import Connection, SyncCursor
from integration_hub.core.outcomes import connection_call
from integration_hub.inventory.sql import upsert
from integration_hub.orders.models import OrderLine, OrderState as S

from . import feeds
from .models import DemandFeedEntry, Recommendation, ReturnCondition, ReturnLine

log = logging.getLogger(__name__)

DEMAND_STATES = (S.VALIDATED, S.SENT, S.ACKNOWLEDGED, S.DISPATCHED, S.STOREFRONT_NOTIFIED, S.HELD)
VOID_STATES = (S.CANCELLED, S.FAILED)
STREAM = "demand"
OVERLAP = timedelta(minutes=10)
SEND_CHUNK = 2000
LOOKUP_CHUNK = 5000
OPERATION = "push_demand"


def line_key(order_ref: str, sku: str, bundle_sku: str, is_return: bool) -> str:
    return f"{order_ref}|{sku}|{bundle_sku}|{'return' if is_return else 'sale'}"


@dataclass
class _Acc:
    """One demand line being accumulated (several order lines of the same SKU in one order add up)."""

    order_id: int
    order_ref: str
    sku: str
    bundle_sku: str
    channel: str
    location: str
    ordered_at: datetime | None
    promotion_codes: list
    unit_price_cents: int | None
    is_return: bool
    quantity: int = 0
    currency: str = ""

    def line(self) -> DemandLine:
        return DemandLine(
            order_ref=self.order_ref,
            sku=self.sku,
            quantity=self.quantity,
            channel=self.channel,
            location=self.location,
            ordered_at=self.ordered_at,
            promotion_codes=list(self.promotion_codes or []),
            bundle_sku=self.bundle_sku,
            unit_price_cents=self.unit_price_cents,
            is_return=self.is_return,
            currency=self.currency,
            key=line_key(self.order_ref, self.sku, self.bundle_sku, self.is_return),
        )


LINE_FIELDS = (
    "id",
    "order_id",
    "order__idempotency_key",
    "order__state",
    "order__channel__key",
    "order__warehouse__name",
    "order__placed_at",
    "order__created_at",
    "order__promotion_codes",
    "item_id",
    "item__sku",
    "item__is_bundle",
    "quantity",
    "unit_price_cents",
    "parent_id",
    "parent__item__sku",
    "parent__storefront_sku",
    "order__currency",
)


def _components(bundle_item_ids) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = defaultdict(list)
    if bundle_item_ids:
        for bundle_id, sku, qty in (
            BundleComponent.objects.filter(bundle_id__in=list(bundle_item_ids))
            .values_list("bundle_id", "component__sku", "quantity")
            .order_by("bundle_id", "component__sku")
        ):
            out[bundle_id].append((sku, qty))
    return out


def build_demand(since: datetime | None) -> dict[str, _Acc]:
    """Desired state of every demand line of orders updated since ``since`` (None = all). 3 queries."""
    lines = OrderLine.objects.filter(item__isnull=False, order__state__in=DEMAND_STATES + VOID_STATES)
    if since is not None:
        lines = lines.filter(order__updated_at__gte=since)
    rows = [dict(zip(LINE_FIELDS, r)) for r in lines.values_list(*LINE_FIELDS).order_by("order_id", "id")]
    has_components = {r["parent_id"] for r in rows if r["parent_id"]}
    bundles = _components({r["item_id"] for r in rows if r["item__is_bundle"] and r["id"] not in has_components})
    out: dict[str, _Acc] = {}

    def add(r, sku: str, bundle_sku: str, qty: int):
        void = r["order__state"] in VOID_STATES
        key = line_key(r["order__idempotency_key"], sku, bundle_sku, False)
        acc = out.get(key)
        if acc is None:
            acc = out[key] = _Acc(
                r["order_id"],
                r["order__idempotency_key"],
                sku,
                bundle_sku,
                r["order__channel__key"],
                r["order__warehouse__name"] or "",
                r["order__placed_at"] or r["order__created_at"],
                r["order__promotion_codes"] or [],
                None if bundle_sku and not r["parent_id"] else r["unit_price_cents"],
                False,
                currency=r["order__currency"] or "",
            )
        acc.quantity += 0 if void else qty

    for r in rows:
        if r["item__is_bundle"]:
            if r["id"] in has_components:
                continue  # its exploded component lines carry the demand
            for sku, per in bundles.get(r["item_id"], []):
                add(r, sku, r["item__sku"], r["quantity"] * per)
            continue
        bundle_sku = (r["parent__item__sku"] or r["parent__storefront_sku"] or "") if r["parent_id"] else ""
        add(r, r["item__sku"], bundle_sku, r["quantity"])
    return out


RETURN_FIELDS = (
    "order_line__order_id",
    "order_line__order__idempotency_key",
    "order_line__order__channel__key",
    "order_line__order__warehouse__name",
    "order_line__item_id",
    "order_line__item__sku",
    "order_line__item__is_bundle",
    "order_line__parent_id",
    "order_line__parent__item__sku",
    "order_line__parent__storefront_sku",
    "quantity",
    "condition",
    "returned_at",
    "created_at",
    "order_line__order__currency",
)


def build_returns(since: datetime | None) -> dict[str, _Acc]:
    """Return lines (saleable units only) of every order with a return touched since ``since``. 3 queries."""
    touched = ReturnLine.objects.all()
    if since is not None:
        touched = touched.filter(updated_at__gte=since)
    qs = ReturnLine.objects.filter(
        order_line__order_id__in=touched.values("order_line__order_id"), order_line__item__isnull=False
    )
    rows = [dict(zip(RETURN_FIELDS, r)) for r in qs.values_list(*RETURN_FIELDS).order_by("order_line__order_id", "id")]
    bundles = _components({r["order_line__item_id"] for r in rows if r["order_line__item__is_bundle"]})
    out: dict[str, _Acc] = {}

    def add(r, sku, bundle_sku, qty):
        key = line_key(r["order_line__order__idempotency_key"], sku, bundle_sku, True)
        acc = out.get(key)
        if acc is None:
            acc = out[key] = _Acc(
                r["order_line__order_id"],
                r["order_line__order__idempotency_key"],
                sku,
                bundle_sku,
                r["order_line__order__channel__key"],
                r["order_line__order__warehouse__name"] or "",
                r["returned_at"] or r["created_at"],
                [],
                None,
                True,
                currency=r["order_line__order__currency"] or "",
            )
        if r["condition"] == ReturnCondition.AVAILABLE:
            acc.quantity += qty

    for r in rows:
        if r["order_line__item__is_bundle"]:
            for sku, per in bundles.get(r["order_line__item_id"], []):
                add(r, sku, r["order_line__item__sku"], r["quantity"] * per)
        else:
            parent = (
                (r["order_line__parent__item__sku"] or r["order_line__parent__storefront_sku"] or "")
                if r["order_line__parent_id"]
                else ""
            )
            add(r, r["order_line__item__sku"], parent, r["quantity"])
    return out


@dataclass
class FeedResult:
    considered: int = 0
    sent: int = 0
    unchanged: int = 0
    returns_sent: int = 0
    zeroed: int = 0  # lines of cancelled/failed orders re-sent with 0
    batches: int = 0
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _signed(acc: _Acc) -> int:
    return -acc.quantity if acc.is_return else acc.quantity


def push_demand_feed(connection: Connection, *, full: bool = False) -> FeedResult:
    """Send new and changed demand lines to planner ``connection``. Never raises a connector error: it
    becomes an exception record and ``result.error``."""
    from connectors.registry import get_connector

    started = timezone.now()
    cursor, _ = SyncCursor.objects.get_or_create(connection=connection, stream=STREAM)
    since = None if full or not cursor.value else (parse_datetime(cursor.value) or started) - OVERLAP
    desired = build_demand(since)
    desired.update(build_returns(since))
    out = FeedResult(considered=len(desired))

    keys = list(desired)
    sent_before: dict[str, int] = {}
    for start in range(0, len(keys), LOOKUP_CHUNK):
        sent_before.update(
            DemandFeedEntry.objects.filter(
                connection=connection, key__in=keys[start : start + LOOKUP_CHUNK]
            ).values_list("key", "quantity")
        )
    todo = []
    for key, acc in desired.items():
        qty = _signed(acc)
        previous = sent_before.get(key)
        if (previous is None and qty == 0) or previous == qty:
            out.unchanged += 1
            continue
        todo.append((key, acc))

    warehouses = (connection.options or {}).get("warehouses") or {}
    for _, acc in todo:  # hub warehouse (connection name) → the planner's warehouse id, when configured
        acc.location = str(warehouses.get(acc.location, acc.location))
    connector = get_connector(connection)
    full = getattr(connector, "full_reference_data", False)  # a cycle on every run, with every variant's stock
    chunks = [todo[start : start + SEND_CHUNK] for start in range(0, len(todo), SEND_CHUNK)] or ([[]] if full else [])
    with connection_call(
        connection,
        OPERATION,
        title=f"Demand feed to {connection.name} failed",
        action="retry_demand_feed",
        cleared="demand feed succeeded",
    ) as call:
        for start, chunk in zip(range(0, max(1, len(todo)), SEND_CHUNK), chunks):
            call.context["lines_waiting"] = len(todo) - start
            variants = warehouses = allocations = ()
            if getattr(connector, "demand_delivery", "push") == "push":  # reference data goes before the lines
                wh_ids = sorted(
                    {acc.location for _, acc in chunk}
                    | (set(feeds.all_planner_warehouse_ids(connection)) if full else set())
                )
                variants = (
                    list(feeds.all_variants(connection, wh_ids))
                    if full
                    else feeds.planner_variants(connection, {acc.sku for _, acc in chunk}, wh_ids)
                )
                warehouses = feeds.planner_warehouses(connection, wh_ids)
                if getattr(connector, "uses_allocations", False):
                    allocations = feeds.open_allocations(connection)
            connector.push_demand([acc.line() for _, acc in chunk], variants, warehouses, allocations)
            now = timezone.now()
            with transaction.atomic():
                upsert(
                    DemandFeedEntry,
                    [
                        "connection_id",
                        "key",
                        "order_id",
                        "sku",
                        "bundle_sku",
                        "channel",
                        "location",
                        "quantity",
                        "is_return",
                        "sent_at",
                        "order_ref",
                        "currency",
                        "unit_price_cents",
                        "ordered_at",
                    ],
                    ["connection_id", "key"],
                    [
                        "quantity",
                        "sent_at",
                        "channel",
                        "location",
                        "order_ref",
                        "currency",
                        "unit_price_cents",
                        "ordered_at",
                    ],
                    [
                        (
                            connection.pk,
                            key[:400],
                            acc.order_id,
                            acc.sku[:100],
                            acc.bundle_sku[:100],
                            (acc.channel or "")[:64],
                            (acc.location or "")[:100],
                            _signed(acc),
                            acc.is_return,
                            now,
                            acc.order_ref[:200],
                            (acc.currency or "")[:3],
                            acc.unit_price_cents,
                            acc.ordered_at,
                        )
                        for key, acc in chunk
                    ],
                )
            out.batches += 1
            out.sent += len(chunk)
            out.returns_sent += sum(1 for _, acc in chunk if acc.is_return)
            out.zeroed += sum(1 for _, acc in chunk if not acc.is_return and acc.quantity == 0)
        SyncCursor.objects.filter(pk=cursor.pk).update(value=started.isoformat(), updated_at=timezone.now())
    out.error = call.error_text(500)
    return out


# --- returns -----------------------------------------------------------------------------------------
def record_returns(rows: list[dict], *, source: str = "returns") -> int:
    """Record returned units. Each row: ``external_ref``, ``order_ref`` (the hub order key) and ``line_id``
    (storefront line id), ``quantity`` > 0, ``condition`` (advised | available | inspection | damaged;
    default available), optional ``returned_at``. Upserts by ``external_ref``: the same return read again is
    one row, and a return that moved on (advised → received → back in stock) updates it; rows that change
    nothing are not written (``updated_at`` is when the return last changed, which is what the demand feed
    re-reads). The same ``external_ref`` twice in one call: the last row wins. Rows naming an unknown order
    line or bad values become ``bad_payload`` exception records keyed ``bad_payload:<source>:return:<ref>``;
    the others are stored. Returns rows written. 3 queries + writes."""
    wanted = {(str(r.get("order_ref", "")), str(r.get("line_id", ""))) for r in rows}
    refs = sorted({o for o, _ in wanted})
    lines = {}
    for start in range(0, len(refs), LOOKUP_CHUNK):
        for pk, ref, line_id in OrderLine.objects.filter(
            order__idempotency_key__in=refs[start : start + LOOKUP_CHUNK]
        ).values_list("id", "order__idempotency_key", "line_id"):
            lines[(ref, line_id)] = pk
    good: dict[str, tuple] = {}
    problems = []
    for r in rows:
        ext = str(r.get("external_ref") or "")
        qty, cond = r.get("quantity"), r.get("condition") or ReturnCondition.AVAILABLE
        line_pk = lines.get((str(r.get("order_ref", "")), str(r.get("line_id", ""))))
        returned = r.get("returned_at")
        if isinstance(returned, str):
            try:
                returned = parse_datetime(returned)
            except ValueError:
                returned = None
        reason = (
            "external_ref is missing"
            if not ext
            else f"order line {r.get('order_ref')}/{r.get('line_id')} is unknown"
            if line_pk is None
            else f"quantity {qty!r} is not a positive whole number"
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0
            else f"condition {cond!r} is not one of {', '.join(ReturnCondition.values)}"
            if cond not in ReturnCondition.values
            else f"returned_at {r.get('returned_at')!r} is not a date and time"
            if r.get("returned_at") and not isinstance(returned, datetime)
            else ""
        )
        if reason:
            problems.append(
                Problem(
                    kind="bad_payload",
                    key=kinds.key("bad_payload", source, "return", ext or r.get("order_ref") or "?"),
                    title=f"Return not recorded: {reason}",
                    message=reason,
                    order_ref=str(r.get("order_ref", ""))[:100],
                    context={"row": {k: str(v)[:200] for k, v in r.items()}, "action": "fix_return"},
                )
            )
            continue
        if returned is not None and timezone.is_naive(returned):
            returned = timezone.make_aware(returned, dt_timezone.utc)
        good[ext[:150]] = (line_pk, ext[:150], qty, str(cond), returned)
    before = {}
    exts = list(good)
    for start in range(0, len(exts), LOOKUP_CHUNK):
        for ext, *rest in ReturnLine.objects.filter(external_ref__in=exts[start : start + LOOKUP_CHUNK]).values_list(
            "external_ref", "order_line_id", "quantity", "condition", "returned_at"
        ):
            before[ext] = tuple(rest)
    changed = [row for ext, row in good.items() if before.get(ext) != (row[0], row[2], row[3], row[4])]
    now = timezone.now()
    with transaction.atomic():
        upsert(
            ReturnLine,
            ["order_line_id", "external_ref", "quantity", "condition", "returned_at", "created_at", "updated_at"],
            ["external_ref"],
            ["order_line_id", "quantity", "condition", "returned_at", "updated_at"],
            [(pk, ext, qty, cond, ret, now, now) for pk, ext, qty, cond, ret in changed],
        )
    if problems:
        raise_many(problems)
    return len(changed)


def returns_summary(recent: int = 10) -> dict:
    """For the ops page: returned lines and units per condition (only ``available`` offsets demand), when a
    return last changed, and the ``recent`` latest changes with their order and SKU. 2 queries."""
    from django.db.models import Count, Max, Sum

    by = {
        c: {"condition": c, "label": label, "lines": 0, "units": 0, "offsets": c == ReturnCondition.AVAILABLE}
        for c, label in ReturnCondition.choices
    }
    last = None
    for cond, n, units, at in (
        ReturnLine.objects.order_by().values_list("condition").annotate(Count("id"), Sum("quantity"), Max("updated_at"))
    ):
        if cond in by:
            by[cond].update(lines=n, units=units or 0)
        last = at if last is None or (at and at > last) else last
    latest = list(
        ReturnLine.objects.select_related("order_line__order", "order_line__item").order_by("-updated_at", "-id")[
            :recent
        ]
    )
    return {
        "conditions": list(by.values()),
        "lines": sum(c["lines"] for c in by.values()),
        "last_changed": last,
        "recent": latest,
    }


# --- recommendations ----------------------------------------------------------------------------------
@dataclass
class RefreshResult:
    fetched: int = 0
    stored: int = 0
    removed: int = 0
    unknown_skus: int = 0
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def refresh_recommendations(connection: Connection) -> RefreshResult:
    """Replace ``connection``'s recommendations with what the planner says now (upsert + delete the rest)."""
    from connectors.registry import get_connector

    out = RefreshResult()
    with connection_call(
        connection,
        "recommendations",
        title=f"Reading recommendations from {connection.name} failed",
        action="retry_recommendations",
        cleared="recommendations read",
    ) as call:
        recs = get_connector(connection).recommendations()
    if call.failed:
        out.error = call.error_text(500)
        return out
    out.fetched = len(recs)
    latest = {}
    for r in recs:
        latest[
            (r.sku[:100], (r.location or "")[:100], r.kind if r.kind in Recommendation.Kind.values else "purchase")
        ] = r
    skus = sorted({k[0] for k in latest})
    items: dict[str, int] = {}
    for start in range(0, len(skus), LOOKUP_CHUNK):
        items.update(Item.objects.filter(sku__in=skus[start : start + LOOKUP_CHUNK]).values_list("sku", "id"))
    now = timezone.now()
    rows = [
        (
            connection.pk,
            sku,
            items.get(sku),
            loc,
            kind,
            int(r.recommended_quantity),
            (r.supplier or "")[:200],
            r.reason or "",
            r.raw or {},
            now,
        )
        for (sku, loc, kind), r in latest.items()
    ]
    rows = [row[:8] + (json.dumps(row[8], default=str),) + row[9:] for row in rows]
    with transaction.atomic():
        out.stored = upsert(
            Recommendation,
            [
                "connection_id",
                "sku",
                "item_id",
                "location",
                "kind",
                "recommended_quantity",
                "supplier",
                "reason",
                "raw",
                "fetched_at",
            ],
            ["connection_id", "sku", "location", "kind"],
            ["item_id", "recommended_quantity", "supplier", "reason", "raw", "fetched_at"],
            rows,
        )
        out.removed, _ = Recommendation.objects.filter(connection=connection, fetched_at__lt=now).delete()
    out.unknown_skus = sum(1 for sku in skus if sku not in items)
    return out


def planner_connections():
    from integration_hub.core.models import PLANNER_SYSTEMS

    return Connection.objects.filter(enabled=True, system_type__in=list(PLANNER_SYSTEMS)).order_by("pk")


# --- stock orders (purchase orders / transfers the planner holds) ----------------------------------------------
def refresh_stock_orders(connection: Connection) -> RefreshResult:
    """Replace ``connection``'s stock orders with what the planner holds now. A planner without stock orders
    (``NotImplementedError``) leaves nothing; a connector error becomes an exception record and ``.error``."""
    from connectors.registry import get_connector

    from .models import StockOrder

    out = RefreshResult()
    try:
        with connection_call(
            connection,
            "stock_orders",
            title=f"Reading stock orders from {connection.name} failed",
            action="retry_recommendations",
            cleared="stock orders read",
        ) as call:
            orders = get_connector(connection).stock_orders()
    except NotImplementedError:  # this planner holds no stock orders: nothing to read, nothing to record
        return out
    if call.failed:
        out.error = call.error_text(500)
        return out
    out.fetched = len(orders)
    now = timezone.now()
    rows = {}
    for o in orders:
        if not o.ref:
            continue
        rows[o.ref[:100]] = (
            connection.pk,
            o.ref[:100],
            o.reference[:200],
            o.kind,
            o.status[:64],
            o.vendor[:200],
            o.warehouse[:100],
            o.source_warehouse[:100],
            o.expected_at,
            o.created_at,
            json.dumps([list(x) for x in o.lines]),
            sum(max(0, ordered - received) for _, ordered, received in o.lines),
            json.dumps(o.raw or {}, default=str),
            now,
        )
    with transaction.atomic():
        out.stored = upsert(
            StockOrder,
            [
                "connection_id",
                "external_id",
                "reference",
                "kind",
                "status",
                "vendor",
                "warehouse",
                "source_warehouse",
                "expected_at",
                "created_at",
                "lines",
                "units_open",
                "raw",
                "fetched_at",
            ],
            ["connection_id", "external_id"],
            [
                "reference",
                "kind",
                "status",
                "vendor",
                "warehouse",
                "source_warehouse",
                "expected_at",
                "created_at",
                "lines",
                "units_open",
                "raw",
                "fetched_at",
            ],
            list(rows.values()),
        )
        out.removed, _ = StockOrder.objects.filter(connection=connection, fetched_at__lt=now).delete()
    return out
