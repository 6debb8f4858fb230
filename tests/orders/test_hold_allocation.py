"""Issue 20, item 5: holds follow the master's own allocation.

* The acknowledgement says where the master allocated each line (WAIR allocated a uk-web order at EU1, a
  location uk-web does not sell from): the hold is released by a moved figure *there*, and not by a figure
  that moved at another of the master's locations.
* The master's allocation figure may reach the hub before the hold is marked acknowledged (the stock webhook
  raced the acknowledgement): figures already applied are re-checked when the hold is marked, and by the
  hold-bound beat before anything is expired.
* Every acknowledged hold is bounded: one the feed never carries is released after the feed lag with a record.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.base import StockChange
from integration_hub.catalog.models import Item
from integration_hub.inventory.models import Reservation, StockLevel
from integration_hub.inventory.reservations import expire_holds, recheck_holds
from integration_hub.inventory.services import apply_stock_changes
from integration_hub.orders import capture, processing
from integration_hub.orders.models import OrderState as S

from .conftest import make_so
from .test_lifecycle_edges import run_all


def _eu1(world):
    from integration_hub.core.models import Location

    return Location.objects.create(code="eu1", name="EU1", connection=world.wh, external_id="EU1")  # not on uk-web


def _held(o):
    return Reservation.objects.filter(order_ref=o.idempotency_key, released_at__isnull=True)


def test_the_allocation_location_is_recorded_and_only_a_figure_there_releases(world, fakes):
    wh, _ = fakes
    eu1 = _eu1(world)
    o, _ = capture.capture(world.channel, make_so("ct-a1", lines=[("SKU-1", 2), ("SKU-2", 1)]))
    wh.allocations[o.idempotency_key] = {"SKU-1": "EU1", "SKU-2": "DC1"}
    run_all()
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED
    rows = {r.item.sku: r for r in _held(o).select_related("item")}
    assert rows["SKU-1"].allocated_location_id == eu1.pk and rows["SKU-2"].allocated_location_id == world.location.pk
    after = rows["SKU-1"].acknowledged_at + timedelta(milliseconds=5)
    # SKU-1 moves at DC1 (the channel's own shelf, not where WAIR allocated the order): the hold stays
    res = apply_stock_changes(world.wh, [StockChange("SKU-1", "DC1", 30, changed_at=after)])
    assert res.released == 0 and _held(o).count() == 2
    # WAIR's reserved figure at EU1 goes up by the order: that is the change that carries it
    res = apply_stock_changes(world.wh, [StockChange("SKU-1", "EU1", 2, state="reserved", changed_at=after)])
    assert res.released == 1
    assert list(_held(o).values_list("item__sku", flat=True)) == ["SKU-2"]
    assert Reservation.objects.get(order_ref=o.idempotency_key, item__sku="SKU-1").release_reason == "master stock feed"


def test_without_allocations_any_moved_figure_of_the_master_releases(world, fakes):
    _eu1(world)
    o, _ = capture.capture(world.channel, make_so("ct-a2", lines=[("SKU-1", 1)]))
    run_all()
    (hold,) = _held(o)
    assert hold.allocated_location_id is None
    res = apply_stock_changes(
        world.wh, [StockChange("SKU-1", "EU1", 7, changed_at=hold.acknowledged_at + timedelta(milliseconds=1))]
    )
    assert res.released == 1 and not _held(o).exists()


def test_an_allocation_figure_applied_before_the_acknowledgement_is_rechecked(world, fakes):
    """The race of issue 20: WAIR allocated (reserved at EU1 +2, changed after it received the order) and the
    stock webhook was applied while the hub had not yet marked the hold acknowledged — nothing released it then."""
    wh, _ = fakes
    _eu1(world)
    received = timezone.now() - timedelta(seconds=2)
    wh.received_at = received
    o, _ = capture.capture(world.channel, make_so("ct-race", lines=[("SKU-1", 2), ("SKU-2", 1)]))
    wh.allocations[o.idempotency_key] = {"SKU-1": "EU1", "SKU-2": "EU1"}
    processing.validate_due()
    # the allocation figure arrives first: no acknowledged hold yet, so nothing is released
    res = apply_stock_changes(
        world.wh, [StockChange("SKU-1", "EU1", 2, state="reserved", changed_at=received + timedelta(seconds=1))]
    )
    assert res.released == 0 and _held(o).count() == 2
    # an old SKU-2 figure (before WAIR received the order) cannot be the allocation
    apply_stock_changes(world.wh, [StockChange("SKU-2", "EU1", 5, changed_at=received - timedelta(seconds=5))])
    run_all()  # sent and acknowledged: the hold is marked and re-checked at once
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED
    assert list(_held(o).values_list("item__sku", flat=True)) == ["SKU-2"]
    gone = Reservation.objects.get(order_ref=o.idempotency_key, item__sku="SKU-1")
    assert gone.release_reason == "master stock feed (re-checked)" and gone.acknowledged_at == received


def test_a_repeated_figure_does_not_count_as_moved(world, fakes):
    """``StockLevel.moved_at`` moves only with the quantity: a master re-reporting the same figure (Clarus's polls
    re-read everything) never releases a hold on re-check."""
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-rep", lines=[("SKU-1", 1)]))
    t0 = timezone.now() - timedelta(seconds=30)
    apply_stock_changes(world.wh, [StockChange("SKU-1", "DC1", 9, changed_at=t0)])
    wh.received_at = timezone.now() - timedelta(seconds=10)
    run_all()
    apply_stock_changes(
        world.wh, [StockChange("SKU-1", "DC1", 9, changed_at=timezone.now())]
    )  # same figure, later read
    level = StockLevel.objects.get(item__sku="SKU-1", location=world.location, state="available")
    assert level.moved_at == t0 and level.source_updated_at > t0
    assert recheck_holds() == 0 and _held(o).count() == 1
    apply_stock_changes(world.wh, [StockChange("SKU-1", "DC1", 8, changed_at=timezone.now())])  # the order shows
    assert not _held(o).exists()


def test_the_hold_bound_rechecks_before_it_expires(world, fakes, settings):
    """The bound beat first releases what the figures carry (no record), then expires the rest with a record."""
    from exceptions_app.models import ExceptionRecord

    settings.HUB = {**settings.HUB, "HOLD_MAX_SECONDS": 600}
    wh, _ = fakes
    a, _ = capture.capture(world.channel, make_so("ct-b1", lines=[("SKU-1", 1)]))
    b, _ = capture.capture(world.channel, make_so("ct-b2", lines=[("SKU-2", 1)]))
    run_all()
    old = timezone.now() - timedelta(seconds=700)
    Reservation.objects.filter(order_ref__in=[a.idempotency_key, b.idempotency_key]).update(acknowledged_at=old)
    # a's figure moved after its acknowledgement, in a transaction that raced the mark (simulated: written directly)
    StockLevel.objects.create(
        item=world.items["SKU-1"], location=world.location, quantity=4, moved_at=old + timedelta(seconds=1)
    )
    assert expire_holds() == 1
    assert Reservation.objects.get(order_ref=a.idempotency_key).release_reason == "master stock feed (re-checked)"
    assert Reservation.objects.get(order_ref=b.idempotency_key).release_reason == "hold expired"
    rec = ExceptionRecord.objects.get(dedupe_key=f"stock_drift:{world.wh.name}:holds-expired")
    assert rec.context["orders"] == [b.idempotency_key]


# --- over the WAIR sandbox ----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_wair_allocates_elsewhere_and_its_figure_arrives_before_the_acknowledgement(sandbox):
    """Over HTTP: WAIR allocates uk-web's order at EU1 (uk-web sells from DC1 only). The order first gets 202
    pending; WAIR then accepts it (reserving at EU1) and the hub polls that reserved figure *before* it hears
    the acknowledgement (its resend is answered with the order id and WAIR's allocations). The hold must be
    released on acknowledgement — re-checked — and uk-web's ATS is DC1's figure again, the order counted once."""
    from integration_hub.core.models import Location
    from integration_hub.inventory import ats
    from integration_hub.inventory.models import ChannelStockRule
    from integration_hub.inventory.services import poll_master
    from integration_hub.orders.models import Order

    from tests.support.factories import sandbox_order_world
    from tests.support.sandbox import control

    ct, wh, channel = sandbox_order_world(sandbox)
    dc1 = Location.objects.create(code="dc1", name="DC1", connection=wh, external_id="DC1")
    eu1 = Location.objects.create(code="eu1", name="EU1", connection=wh, external_id="EU1")
    ChannelStockRule.objects.create(channel=channel, mode="segregated").locations.add(dc1)
    control(sandbox, "wair", "seed_locations", {"locations": [{"id": "DC1"}, {"id": "EU1"}]})
    control(
        sandbox,
        "wair",
        "set_stock",
        {
            "rows": [
                {"sku": "SKU-1", "location": "DC1", "quantity": 16},
                {"sku": "SKU-1", "location": "EU1", "quantity": 40},
            ]
        },
    )
    poll_master(wh)
    control(sandbox, "wair", "set_allocation", {"enabled": True, "location": "EU1"})
    control(sandbox, "wair", "set_auto_ack", {"enabled": False})
    item = Item.objects.get(sku="SKU-1")

    def uk_web_ats():
        return ats.for_pairs([(channel.pk, item.pk)])[(channel.pk, item.pk)].quantity

    o, _ = capture.capture(channel, make_so("ct-eu1", lines=[("SKU-1", 5)]))
    assert uk_web_ats() == 11  # held from capture
    run_all()
    o.refresh_from_db()
    assert o.state == S.SENT  # 202 pending: not acknowledged
    control(sandbox, "wair", "acknowledge", {"order_refs": [o.idempotency_key]})  # WAIR allocates at EU1
    assert poll_master(wh).applied.released == 0  # its reserved figure arrives first: no acknowledged hold yet
    assert StockLevel.objects.get(item=item, location=eu1, state="reserved").quantity == 5
    assert uk_web_ats() == 11
    Order.objects.filter(pk=o.pk).update(next_attempt_at=None)
    run_all()  # the resend is answered with WAIR's order id and allocations
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED
    hold = Reservation.objects.get(order_ref=o.idempotency_key)
    assert hold.allocated_location_id == eu1.pk  # where WAIR allocated, recorded
    assert hold.released_at is not None and hold.release_reason == "master stock feed (re-checked)"
    assert uk_web_ats() == 16  # DC1's own figure: WAIR's EU1 reservation is not counted against uk-web twice
