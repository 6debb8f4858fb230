"""The outbox: which pairs get queued, coalescing, same-transaction semantics, bulk upsert."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from integration_hub.inventory import outbox
from integration_hub.inventory.models import PendingPush

ORDER, ROUTINE, SWEEP = PendingPush.Priority.ORDER, PendingPush.Priority.ROUTINE, PendingPush.Priority.SWEEP


@pytest.fixture
def topo(world):
    world.pool("eu", ["dc1", "dc2"])
    world.channel("de", pool="eu")
    world.channel("fr", pool="eu")
    world.channel("outlet", locations=["shop"])
    world.item("A")
    world.item("B")
    world.item("C", channel="outlet")  # only mapped on outlet
    world.item("D", mapped=False)
    world.item("kit", bundle_of={"A": 1, "D": 2})
    return world


def pairs():
    return {(p.channel.key, p.item.sku) for p in PendingPush.objects.select_related("channel", "item")}


def test_enqueue_every_channel_with_a_mapping_plus_bundles(topo):
    n = outbox.enqueue([topo.items["A"].pk, topo.items["C"].pk, topo.items["D"].pk])
    assert pairs() == {
        ("de", "A"),
        ("fr", "A"),
        ("outlet", "A"),
        ("outlet", "C"),
        ("de", "kit"),
        ("fr", "kit"),
        ("outlet", "kit"),
    }
    assert n == 7


def test_enqueue_restricted_by_location_and_channel(topo):
    outbox.enqueue([topo.items["A"].pk], location_ids=[topo.locations["dc2"].pk])
    assert pairs() == {("de", "A"), ("fr", "A"), ("de", "kit"), ("fr", "kit")}
    PendingPush.objects.all().delete()
    outbox.enqueue([topo.items["A"].pk], channel_ids=[topo.channels["fr"].pk])
    assert pairs() == {("fr", "A"), ("fr", "kit")}
    PendingPush.objects.all().delete()
    assert outbox.enqueue([topo.items["A"].pk], location_ids=[]) == 0
    assert outbox.enqueue([]) == 0


def test_location_helpers(topo):
    assert outbox.channels_for_locations([topo.locations["dc1"].pk]) == {topo.channels["de"].pk, topo.channels["fr"].pk}
    assert outbox.locations_for_channel(topo.channels["outlet"].pk) == {topo.locations["shop"].pk}
    assert outbox.locations_for_channel(topo.channels["de"].pk) == {topo.locations["dc1"].pk, topo.locations["dc2"].pk}


def test_thousand_changes_to_one_sku_coalesce_into_one_row(topo, django_assert_max_num_queries):
    a = topo.items["A"].pk
    with django_assert_max_num_queries(1):
        outbox.enqueue([a] * 600, channel_ids=[topo.channels["de"].pk])
    for _ in range(400):
        outbox.enqueue([a], channel_ids=[topo.channels["de"].pk])
    row = PendingPush.objects.get(item_id=a, channel=topo.channels["de"])
    assert row.changes == 1000
    assert PendingPush.objects.filter(item_id=a).count() == 1


def test_coalescing_keeps_most_urgent_priority_and_order_clears_backoff(topo):
    a, de = topo.items["A"].pk, topo.channels["de"].pk
    outbox.enqueue([a], channel_ids=[de], priority=SWEEP, reason="drift")
    row = PendingPush.objects.get(item_id=a, channel_id=de)
    assert row.priority == SWEEP
    later = timezone.now() + timezone.timedelta(minutes=10)
    PendingPush.objects.filter(pk=row.pk).update(not_before=later, claim_token="abc")
    outbox.enqueue([a], channel_ids=[de], priority=ROUTINE, reason="stock")
    row.refresh_from_db()
    assert (row.priority, row.changes, row.reason, row.claim_token) == (ROUTINE, 2, "stock", "")
    assert row.not_before == later  # routine change waits out the back-off
    outbox.enqueue([a], channel_ids=[de], priority=ORDER, reason="order o-1")
    row.refresh_from_db()
    assert row.priority == ORDER and row.not_before is None
    outbox.enqueue([a], channel_ids=[de], priority=SWEEP)
    row.refresh_from_db()
    assert row.priority == ORDER and row.changes == 4  # never demoted


def test_rollback_leaves_no_row(topo):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            outbox.enqueue([topo.items["A"].pk])
            assert PendingPush.objects.exists()
            raise RuntimeError("caller's transaction fails")
    assert not PendingPush.objects.exists()


def test_large_enqueue_is_chunked_but_bulk(world, django_assert_max_num_queries):
    from integration_hub.catalog.models import Item, SkuMapping

    world.channel("web", locations=["dc1"])
    Item.objects.bulk_create([Item(sku=f"X{n:05d}") for n in range(6000)])
    items = list(Item.objects.values_list("pk", flat=True))
    SkuMapping.objects.bulk_create([SkuMapping(item_id=i, storefront_sku=f"SF{i}") for i in items])
    with django_assert_max_num_queries(2):  # 5,000 items per statement
        assert outbox.enqueue(items) == 6000
    assert PendingPush.objects.count() == 6000


def test_kick_after_commit_once_per_transaction(topo, settings, monkeypatch, django_capture_on_commit_callbacks):
    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": True}
    sent = []
    monkeypatch.setattr(outbox, "kick", lambda priority=None: sent.append(priority))
    with django_capture_on_commit_callbacks(execute=True):
        outbox.enqueue([topo.items["A"].pk])
        outbox.enqueue([topo.items["B"].pk])
        outbox.enqueue([topo.items["B"].pk], priority=ORDER)
    assert sorted(sent, key=str) == [0, None]


def test_enqueue_pairs(topo):
    de, a = topo.channels["de"].pk, topo.items["A"].pk
    assert outbox.enqueue_pairs([(de, a), (de, a)], priority=SWEEP, reason="drift") == 1
    assert pairs() == {("de", "A")}


def test_broker_outage_loses_nothing(topo, settings, task_trap, django_capture_on_commit_callbacks):
    from integration_hub.inventory import tasks

    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": True}

    task_trap.fail(tasks.push_pending, ConnectionRefusedError("broker unreachable"))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outbox.enqueue([topo.items["A"].pk], priority=ORDER)
    assert len(callbacks) == 1  # the nudge ran, failed quietly (logged) ...
    assert PendingPush.objects.filter(item=topo.items["A"]).count() == 3  # ... and the work is safe in the outbox
    task_trap.fail(tasks.push_pending, None)
    sent = task_trap.calls(tasks.push_pending)
    assert tasks.sweep_pending()["order"] == 6 and sent  # A and the kit on 3 channels: the sweep dispatches them


def test_enqueue_of_a_bundle_reaches_its_components_and_sibling_bundles(topo):
    topo.item("kit2", bundle_of={"A": 2})
    topo.item("kit3", bundle_of={"B": 1})
    outbox.enqueue([topo.items["kit"].pk], channel_ids=[topo.channels["de"].pk], priority=ORDER)  # e.g. a kit reserved
    assert pairs() == {("de", "kit"), ("de", "A"), ("de", "kit2")}  # D is unmapped; kit3 shares nothing
    assert PendingPush.objects.get(item=topo.items["kit"]).changes == 1


def test_kick_routes_order_work_to_the_stock_queue_and_is_throttled(task_trap):
    """Order decrements go to "stock", the rest to "default" (core.queues routes, not the call site); a burst
    of kicks publishes one drain at once plus one trailing drain a window later, not one each (issue 20)."""
    from django.core.cache import cache

    from integration_hub.celery import app
    from integration_hub.inventory import tasks

    cache.clear()
    sent = task_trap.calls(tasks.push_pending)
    assert (
        all(outbox.kick(ORDER) for _ in range(50))
        and all(outbox.kick(ROUTINE) for _ in range(50))
        and outbox.kick(None)
    )
    assert sent == [
        {"kwargs": {"max_priority": 0}, "countdown": None, "retry": False},
        {"kwargs": {"max_priority": 0}, "countdown": outbox.KICK_WINDOW_SECONDS, "retry": False},
        {"kwargs": {}, "countdown": None, "retry": False},
        {"kwargs": {}, "countdown": outbox.KICK_WINDOW_SECONDS, "retry": False},
    ]
    route = app.amqp.router.route
    assert route({}, "inventory.push_pending", kwargs={"max_priority": 0})["queue"].name == "stock"
    assert route({}, "inventory.push_pending", kwargs={})["queue"].name == "default"
    assert route({}, "orders.process", kwargs={})["queue"].name == "priority"
    assert route({}, "inventory.poll_stock", args=[1], kwargs={})["queue"].name == "default"
