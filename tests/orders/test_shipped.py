"""Dispatch confirmations set each order line's shipped quantity (issue 14: every line showed Shipped 0)."""

from __future__ import annotations

from django.utils import timezone

from connectors.base import Dispatch, Parcel
from integration_hub.orders import capture, dispatch, processing
from integration_hub.orders.models import OrderLine

from .conftest import make_so


def run_all():
    for _ in range(5):
        if not any(processing.process_due().values()):
            break


def _shipped(order):
    return {ln.storefront_sku: ln.shipped_quantity for ln in OrderLine.objects.filter(order=order, parent__isnull=True)}


def test_partial_then_complete_dispatch_sets_shipped_quantities(world, fakes):
    o, _ = capture.capture(world.channel, make_so("ct-sq", lines=[("SKU-1", 3), ("SKU-2", 1)]))
    run_all()
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key,
            warehouse_ref="",
            dispatched_at=None,
            parcels=[Parcel("dhl", "P1", lines=[("SKU-1", 2)])],
            complete=False,
        ),
    )
    assert _shipped(o) == {"SKU-1": 2, "SKU-2": 0}
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key,
            warehouse_ref="",
            dispatched_at=timezone.now(),
            parcels=[Parcel("dhl", "P2", lines=[("SKU-1", 1), ("SKU-2", 1)])],
        ),
    )
    assert _shipped(o) == {"SKU-1": 3, "SKU-2": 1}


def test_complete_dispatch_without_line_detail_ships_every_line(world, fakes):
    o, _ = capture.capture(world.channel, make_so("ct-sq2", lines=[("SKU-1", 2), ("SKU-2", 4)]))
    run_all()
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key, warehouse_ref="", dispatched_at=timezone.now(), parcels=[Parcel("ups", "1Z")]
        ),
    )
    assert _shipped(o) == {"SKU-1": 2, "SKU-2": 4}


def test_bundle_line_counts_whole_bundles_shipped(world, fakes):
    o, _ = capture.capture(world.channel, make_so("ct-sq3", lines=[("BUNDLE-1", 2)]))
    run_all()
    comps = list(OrderLine.objects.filter(order=o, parent__isnull=False).select_related("item"))
    assert comps, "the bundle explodes into component lines"
    parcel = [(c.item.sku, c.quantity // 2) for c in comps]  # one whole bundle's worth
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key,
            warehouse_ref="",
            dispatched_at=None,
            parcels=[Parcel("dhl", "B1", lines=parcel)],
            complete=False,
        ),
    )
    assert _shipped(o) == {"BUNDLE-1": 1}
    assert {c.pk: c.quantity // 2 for c in comps} == dict(
        OrderLine.objects.filter(order=o, parent__isnull=False).values_list("pk", "shipped_quantity")
    )
