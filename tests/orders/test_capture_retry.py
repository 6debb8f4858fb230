"""A catch-up poll overlapping a burst of webhook captures collides with them again and again (issue 20's fault test
saw three collisions in a row and the poll task failed): capture retries, re-reading what the others took."""

from __future__ import annotations

from django.db import IntegrityError

from integration_hub.orders import capture, keys
from integration_hub.orders.models import Order

from .conftest import make_so


def test_capture_survives_repeated_collisions_with_concurrent_captures(world, monkeypatch):
    real = Order.objects.bulk_create
    collisions = {"left": capture.CAPTURE_ATTEMPTS - 1}

    def colliding(objs, *a, **kw):
        if collisions["left"]:
            collisions["left"] -= 1
            raise IntegrityError('duplicate key value violates unique constraint "orders_order_idempotency_key_key"')
        return real(objs, *a, **kw)

    monkeypatch.setattr(Order.objects, "bulk_create", colliding)
    monkeypatch.setattr(capture.time, "sleep", lambda s: None)
    res = capture.capture_many(world.ct, [make_so("ct-c1"), make_so("ct-c2")])
    assert len(res.created) == 2 and Order.objects.count() == 2
    assert collisions["left"] == 0 and capture.CAPTURE_ATTEMPTS >= 5


def test_an_order_a_concurrent_capture_inserted_first_is_left_to_it(world, monkeypatch):
    """The other capture committed ct-d1 after this one looked (simulated: the look-up misses it): the insert skips it
    (no IntegrityError, no second set of lines), captures the rest and counts ct-d1 as existing."""
    from integration_hub.orders.models import OrderLine

    first = capture.capture_many(world.ct, [make_so("ct-d1", lines=[("SKU-1", 2)])])
    assert len(first.created) == 1
    monkeypatch.setattr(keys, "known_pairs", lambda pairs: set())
    res = capture.capture_many(world.ct, [make_so("ct-d1", lines=[("SKU-1", 2)]), make_so("ct-d2")])
    assert [o.external_id for o in res.created] == ["ct-d2"] and res.existing == 1
    assert Order.objects.count() == 2 and OrderLine.objects.filter(order__external_id="ct-d1").count() == 1
    assert not Order.objects.exclude(claim_token="").exists()  # the insert's token never outlives it
