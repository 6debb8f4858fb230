"""SKU mapping and bundle edits re-queue stock in the same transaction, whoever makes them (Django
admin, console, API, shell) — set-based for queryset deletes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integration_hub.catalog.models import BundleComponent, SkuMapping
from integration_hub.inventory.models import PendingPush


def pending():
    return {(p.channel.key, p.item.sku) for p in PendingPush.objects.select_related("channel", "item")}


@pytest.fixture
def cat(world):
    world.channel("web", locations=["dc1"])
    world.channel("app", locations=["dc1"])
    world.item("A"), world.item("B"), world.item("C", channel="web")
    world.item("K", bundle_of={"A": 2})
    PendingPush.objects.all().delete()
    return world


def test_mapping_buffer_edit_requeues(cat):
    m = SkuMapping.objects.get(storefront_sku="SF-A")
    m.safety_buffer = 3
    m.save()
    assert pending() == {("web", "A"), ("app", "A"), ("web", "K"), ("app", "K")}  # the kit holds A


def test_mapping_edit_that_moves_nothing_queues_nothing(cat):
    m = SkuMapping.objects.get(storefront_sku="SF-A")
    m.storefront_product = "style-1"
    m.save()
    assert pending() == set()


def test_mapping_moved_to_another_channel_requeues_both(cat):
    m = SkuMapping.objects.get(storefront_sku="SF-C")
    m.channel = cat.channels["app"]
    m.save()
    # web lost C: queued there only if web was ever told a positive quantity (then the push withdraws it)
    assert pending() == {("app", "C")}
    from integration_hub.inventory.models import ChannelStock

    ChannelStock.objects.create(
        channel=cat.channels["app"], item=cat.items["C"], storefront_sku="SF-C", confirmed_quantity=4
    )
    PendingPush.objects.all().delete()
    m.channel = cat.channels["web"]
    m.save()
    assert pending() == {("web", "C"), ("app", "C")}


def test_bundle_component_edits_requeue_the_bundle(cat):
    bc = BundleComponent.objects.get(bundle=cat.items["K"])
    bc.quantity = 3
    bc.save()
    assert {("web", "K"), ("app", "K")} <= pending()
    PendingPush.objects.all().delete()
    BundleComponent.objects.create(bundle=cat.items["K"], component=cat.items["B"], quantity=1)
    assert {("web", "K"), ("app", "K")} <= pending()
    PendingPush.objects.all().delete()
    BundleComponent.objects.filter(bundle=cat.items["K"]).delete()
    assert {("web", "K"), ("app", "K")} <= pending()


def test_queryset_delete_requeues_once_for_the_whole_set(cat):
    for n in range(20):
        cat.item(f"X{n:02d}")
    PendingPush.objects.all().delete()
    with CaptureQueriesContext(connection) as few:
        SkuMapping.objects.filter(storefront_sku__startswith="SF-X0").delete()
    with CaptureQueriesContext(connection) as many:
        SkuMapping.objects.filter(storefront_sku__startswith="SF-X").delete()
    assert len(few.captured_queries) == len(many.captured_queries)  # 10 vs 20 rows: same queries
    assert {sku for _, sku in pending()} == {f"X{n:02d}" for n in range(20)}


def test_django_admin_edit_requeues(cat, admin_client, settings):
    m = SkuMapping.objects.get(storefront_sku="SF-B")
    resp = admin_client.post(
        f"/admin/catalog/skumapping/{m.pk}/change/",
        {
            "item": m.item_id,
            "channel": "",
            "storefront_sku": "SF-B",
            "storefront_product": "",
            "transform": "",
            "safety_buffer": "4",
            "active": "on",
        },
    )
    assert resp.status_code == 302, resp.content[:500]
    assert pending() == {("web", "B"), ("app", "B")}
    PendingPush.objects.all().delete()
    resp = admin_client.post(f"/admin/catalog/skumapping/{m.pk}/delete/", {"post": "yes"})
    assert resp.status_code == 302
    assert pending() == {("web", "B"), ("app", "B")}
    bc = BundleComponent.objects.get(bundle=cat.items["K"])
    PendingPush.objects.all().delete()
    resp = admin_client.post(
        f"/admin/catalog/bundlecomponent/{bc.pk}/change/",
        {"bundle": bc.bundle_id, "component": bc.component_id, "quantity": "5"},
    )
    assert resp.status_code == 302, resp.content[:500]
    assert {("web", "K"), ("app", "K")} <= pending()


def test_edit_and_queue_commit_or_roll_back_together(cat):
    from django.db import transaction

    m = SkuMapping.objects.get(storefront_sku="SF-A")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            m.safety_buffer = 9
            m.save()
            assert pending()
            raise RuntimeError("edit fails")
    assert pending() == set() and SkuMapping.objects.get(pk=m.pk).safety_buffer is None
