"""**Storefront notification**: only a *dispatched* order is marked shipped in its storefront (version/409 safe in
the connector), with its parcels in the storefront's terms; it then moves to *storefront_notified*.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from connectors.base import Parcel
from exceptions_app import kinds
from exceptions_app.services import clear, raise_many, transport_keys

from . import claims, remote
from .bulkops import chunks, save_split, save_varying
from .models import Order, OrderLine, OrderState as S
from .problems import transport_failure
from .state import transition_many


@dataclass
class NotifyResult:
    notified: int = 0
    retrying: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def notify_due(limit: int = claims.BATCH_SIZE, lease_seconds: int = claims.LEASE_SECONDS) -> NotifyResult:
    ids = claims.claim(claims.NOTIFY_DUE, limit, lease_seconds)
    return notify_claimed(ids) if ids else NotifyResult()


def notify_claimed(ids: list[int], actor=None) -> NotifyResult:
    """Mark claimed *dispatched* orders shipped in their storefront. Never called for an order without
    a warehouse dispatch confirmation (the claim only takes state dispatched)."""
    result = NotifyResult()
    Order.objects.filter(pk__in=ids, state=S.DISPATCHED).update(notify_attempts=F("notify_attempts") + 1)
    # ``raw`` (the order as captured) lets a version-checked storefront write without reading the order first
    orders = list(Order.objects.filter(pk__in=ids, state=S.DISPATCHED).select_related("channel__connection"))
    lines: dict[int, list[OrderLine]] = defaultdict(list)
    for chunk in chunks([o.pk for o in orders]):
        for ln in OrderLine.objects.filter(order_id__in=chunk).select_related("item").order_by("pk"):
            lines[ln.order_id].append(ln)
    parcels = {o.pk: _storefront_parcels(o, lines[o.pk]) for o in orders}

    def call(o):
        return remote.connector(o.channel.connection).mark_shipped(
            o.external_id, parcels[o.pk], known_version=o.storefront_version, known_order=o.raw or None
        )

    with claims.renewing([o.pk for o in orders]):
        outcomes = remote.parallel(call, orders)
    now = timezone.now()
    done, later, problems = [], [], []
    for o, res in zip(orders, outcomes):
        o.claim_token = ""
        if isinstance(res, Exception):
            o.last_error = f"mark shipped: {type(res).__name__}: {res}"[:2000]
            o.next_attempt_at = now + claims.backoff(o.notify_attempts)
            later.append(o)
            problems.append(transport_failure(o.channel.connection, "mark_shipped", res, o))
            continue
        if res is not None:
            o.storefront_version = res
        o.last_error, o.next_attempt_at = "", None
        done.append(o)
    with transaction.atomic():
        if done:
            save_split(Order, done, ["storefront_version"], ["last_error", "next_attempt_at", "claim_token"])
            result.notified = len(
                transition_many(
                    [o.pk for o in done],
                    S.STOREFRONT_NOTIFIED,
                    "storefront marked shipped",
                    actor=actor,
                    from_states=[S.DISPATCHED],
                )
            )
        if later:
            save_varying(Order, later, ["last_error", "next_attempt_at", "claim_token"])
            result.retrying = len(later)
        if problems:
            raise_many(problems)
    if done:
        conns = {o.channel.connection.name for o in done}
        clear(
            [kinds.key("missing_dispatch", o.idempotency_key) for o in done]
            + [k for c in conns for k in transport_keys(c, "mark_shipped")],
            reason="storefront marked shipped",
        )
    return result


def _parcels(order: Order) -> list[Parcel]:
    """The order's parcels as the warehouse reported them (master SKUs)."""
    return [
        Parcel(
            carrier=t.get("carrier", ""),
            tracking_number=t.get("tracking_number", ""),
            tracking_url=t.get("tracking_url", ""),
            lines=[(s, int(q)) for s, q in t.get("lines") or []],
        )
        for t in order.tracking or []
    ]


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
        out.append(
            Parcel(
                carrier=p.carrier,
                tracking_number=p.tracking_number,
                tracking_url=p.tracking_url,
                lines=[(s, q) for s, q in plain.items()],
            )
        )
    return out
