"""Shipped quantity per order line, from the parcels the warehouse reported (``Order.tracking``).

A parcel lists master SKUs and quantities; each goes to the order's lines mapped to that SKU (bundle components
included), capped at what the line ordered. A bundle line counts as many whole bundles as its components
shipped. A complete dispatch whose parcels list no lines ships every line in full. Set-based: a fixed number
of queries per call, whatever the number of orders."""

from __future__ import annotations

from collections import defaultdict

from .bulkops import save_fields
from .models import Order, OrderLine
from .models import OrderState as S

SHIPPED_STATES = (S.DISPATCHED, S.STOREFRONT_NOTIFIED)


def shipped_by_line(order: Order, lines: list[OrderLine], skus: dict[int, str]) -> dict[int, int]:
    """line pk → shipped quantity (``skus``: line pk → master SKU of lines that have an item)."""
    parents = {ln.parent_id for ln in lines if ln.parent_id}
    picked = [ln for ln in lines if ln.pk not in parents]
    parcels = list(order.tracking or [])
    reported: dict[str, int] = defaultdict(int)
    for p in parcels:
        for entry in p.get("lines") or []:
            try:
                sku, qty = entry[0], int(entry[1])
            except (TypeError, ValueError, IndexError):
                continue
            reported[str(sku)] += max(qty, 0)
    out: dict[int, int] = {}
    if not reported:
        full = order.state in SHIPPED_STATES
        for ln in picked:
            out[ln.pk] = ln.quantity if full else 0
    else:
        for ln in picked:
            sku = skus.get(ln.pk)
            take = min(ln.quantity, reported.get(sku, 0)) if sku else 0
            if sku:
                reported[sku] -= take
            out[ln.pk] = take
    for ln in lines:
        if ln.pk in parents:
            parts = [c for c in lines if c.parent_id == ln.pk]
            per = [(out.get(c.pk, 0) * ln.quantity) // c.quantity for c in parts if c.quantity]
            out[ln.pk] = min(min(per) if per else 0, ln.quantity)
    return out


def update_shipped(order_ids) -> int:
    """Recompute ``OrderLine.shipped_quantity`` for these orders; returns how many lines changed."""
    ids = sorted({int(i) for i in order_ids})
    if not ids:
        return 0
    orders = {o.pk: o for o in Order.objects.filter(pk__in=ids).only("pk", "state", "tracking")}
    by_order: dict[int, list[OrderLine]] = defaultdict(list)
    skus: dict[int, str] = {}
    for ln in (
        OrderLine.objects.filter(order_id__in=ids)
        .select_related("item")
        .only("pk", "order_id", "parent_id", "quantity", "shipped_quantity", "item__sku")
        .order_by("pk")
    ):
        by_order[ln.order_id].append(ln)
        if ln.item_id:
            skus[ln.pk] = ln.item.sku
    changed = []
    for pk, lines in by_order.items():
        shipped = shipped_by_line(orders[pk], lines, skus)
        for ln in lines:
            new = shipped.get(ln.pk, 0)
            if new != ln.shipped_quantity:
                ln.shipped_quantity = new
                changed.append(ln)
    save_fields(OrderLine, changed, ["shipped_quantity"])  # few distinct quantities: one UPDATE each
    return len(changed)
