"""Order lines after capture: SKUs resolved to items (:mod:`.mapping`), bundles exploded into component lines, and
stock held for the picked lines (:mod:`integration_hub.inventory.reservations` owns the holds).
"""

from __future__ import annotations

from collections import defaultdict

from integration_hub.inventory import reservations

from . import claims, mapping
from .bulkops import chunks, save_varying
from .models import OrderLine, OrderState as S


LINE_FIELDS = (
    "id",
    "order_id",
    "line_id",
    "storefront_sku",
    "item",
    "quantity",
    "parent_id",
    "item__sku",
    "item__is_bundle",
    "order__id",
    "order__channel",
)


def map_lines(order_ids, lines: list[OrderLine] | None = None) -> None:
    """Resolve top-level lines without an item, explode bundles into component lines, reserve stock.
    Idempotent: resolved lines and existing components / reservations are left alone. ``lines``: the
    orders' top-level lines with ``order`` (and its channel) and ``item`` already in memory (capture)."""
    order_ids = list(order_ids)
    if not order_ids:
        return
    if lines is None:
        lines = []
        for chunk in chunks(order_ids):
            lines += list(
                OrderLine.objects.filter(order_id__in=chunk, parent__isnull=True)
                .select_related("item", "order__channel")
                # what mapping, bundle explosion and the holds read: not the order's JSON fields (the order as
                # captured is kilobytes a line), which made this read most of validation's CPU
                .only(*LINE_FIELDS)
            )
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
        save_varying(OrderLine, changed, ["item"])
    # explode bundles that have no component lines yet
    bundle_lines = [ln for ln in lines if ln.item_id and ln.item.is_bundle]
    if bundle_lines:
        have = set()
        for chunk in chunks([ln.pk for ln in bundle_lines]):
            have.update(OrderLine.objects.filter(parent_id__in=chunk).values_list("parent_id", flat=True).distinct())
        comps = mapping.bundle_components([ln.item_id for ln in bundle_lines])
        new = []
        for ln in bundle_lines:
            if ln.pk in have:
                continue
            for comp, per in comps.get(ln.item_id, []):
                new.append(
                    OrderLine(
                        order_id=ln.order_id,
                        line_id=f"{ln.line_id}/{comp.sku}"[:100],
                        storefront_sku=ln.storefront_sku,
                        item=comp,
                        parent_id=ln.pk,
                        quantity=ln.quantity * per,
                        custom_fields={"bundle_sku": ln.item.sku},
                    )
                )
        OrderLine.objects.bulk_create(new, batch_size=500)
    reserve_lines(order_ids)


def reserve_lines(order_ids) -> int:
    """Hold stock for every picked line with an item (bundle components, not their parent) of orders not yet at
    the warehouse or sent (:func:`integration_hub.inventory.reservations.reserve`: existing rows are kept, plus an
    ORDER-priority push for the channels selling from the same locations). Returns holds created."""
    want: dict[tuple[str, int, int], int] = defaultdict(int)
    for chunk in chunks(order_ids):
        rows = (
            OrderLine.objects.filter(
                order_id__in=chunk, item__isnull=False, order__state__in=list(claims.EDITABLE_BEFORE_SEND | {S.SENT})
            )
            .exclude(item__is_bundle=True)
            .values_list("order__idempotency_key", "item_id", "order__channel_id", "quantity")
        )
        for key, item_id, channel_id, qty in rows:
            want[(key, item_id, channel_id)] += qty
    return reservations.reserve(want, "order reserved")
