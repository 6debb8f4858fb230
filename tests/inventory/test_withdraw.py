"""A pair that stops being pushable (mapping deleted / deactivated / moved to another SKU, channel
deactivated, rule deleted) must not leave its last quantity on sale: the push sets the storefront to 0
over real HTTP, and the drift check sees such pairs."""

from __future__ import annotations

import pytest

from exceptions_app.models import ExceptionRecord
from integration_hub.catalog.models import SkuMapping
from integration_hub.inventory import drift, outbox, push
from integration_hub.inventory.models import ChannelStock, PendingPush


@pytest.fixture
def shop(ct_world):
    w = ct_world
    w.channel("web", locations=["dc1"], external_id="sc-web")
    w.channel("app", locations=["dc1"], external_id="sc-app")
    for n in range(4):
        w.item(f"I{n}", storefront_sku=f"SKU-{n}")
        w.stock(f"I{n}", "dc1", 10 + n)
    w.control(
        "seed_catalog",
        {"channels": ["sc-web", "sc-app"], "skus": [f"SKU-{n}" for n in range(4)] + ["SKU-1B"], "quantity": 0},
    )
    outbox.enqueue([i.pk for i in w.items.values()])
    assert push.push_batch().pushed == 8
    return w


def storefront(w, skus):
    return w.control("state", {"skus": skus})["inventory"]


def drain():
    for _ in range(5):
        res = push.push_batch()
        if not res.claimed:
            return


def test_deleting_a_mapping_zeroes_the_storefront(shop):
    assert storefront(shop, ["SKU-0"])["sc-web"]["SKU-0"] == 10
    SkuMapping.objects.get(storefront_sku="SKU-0").delete()  # admin, console, API or shell: the signal queues it
    assert PendingPush.objects.filter(item=shop.items["I0"]).count() == 2
    res = push.push_batch()
    assert res.pushed == 2 and res.dropped == 0
    inv = storefront(shop, ["SKU-0", "SKU-1"])
    assert inv["sc-web"]["SKU-0"] == 0 and inv["sc-app"]["SKU-0"] == 0
    assert inv["sc-web"]["SKU-1"] == 11  # nothing else touched
    assert set(ChannelStock.objects.filter(item=shop.items["I0"]).values_list("confirmed_quantity", flat=True)) == {0}
    # once withdrawn, later stock changes of the unmapped item queue nothing
    shop.stock("I0", "dc1", 50)
    assert outbox.enqueue([shop.items["I0"].pk]) == 0


def test_deactivating_a_mapping_zeroes_the_storefront_and_reactivating_restores(shop):
    m = SkuMapping.objects.get(storefront_sku="SKU-2")
    m.active = False
    m.save()
    drain()
    assert storefront(shop, ["SKU-2"])["sc-web"]["SKU-2"] == 0
    m.active = True
    m.save()
    drain()
    assert storefront(shop, ["SKU-2"])["sc-web"]["SKU-2"] == 12


def test_moving_a_mapping_to_another_sku_zeroes_the_old_one(shop):
    m = SkuMapping.objects.get(storefront_sku="SKU-1")
    m.storefront_sku = "SKU-1B"
    m.save()
    res = push.push_batch()
    assert res.pushed == 2 and res.failed == 0
    inv = storefront(shop, ["SKU-1", "SKU-1B"])
    assert inv["sc-web"] == {"SKU-1": 0, "SKU-1B": 11} and inv["sc-app"] == {"SKU-1": 0, "SKU-1B": 11}
    assert ChannelStock.objects.get(channel=shop.channels["web"], item=shop.items["I1"]).storefront_sku == "SKU-1B"


def test_a_sku_taken_over_by_another_item_is_not_zeroed(shop):
    from integration_hub.catalog.models import Item

    m = SkuMapping.objects.get(storefront_sku="SKU-3")
    m.item = Item.objects.get(sku="I2")  # SKU-3 now sells I2's stock (12); I2 keeps its global SKU-2 too
    SkuMapping.objects.filter(storefront_sku="SKU-2").update(channel=shop.channels["app"])
    m.channel = shop.channels["web"]
    m.save()
    drain()
    inv = storefront(shop, ["SKU-3"])
    assert inv["sc-web"]["SKU-3"] == 12  # not zeroed by I3's withdrawal
    assert inv["sc-app"]["SKU-3"] == 0  # I3 unmapped on app: withdrawn there


def test_deactivating_a_channel_zeroes_its_storefront(shop):
    web = shop.channels["web"]
    web.active = False
    web.save()
    assert PendingPush.objects.filter(channel=web).count() == 4
    drain()
    inv = storefront(shop, [f"SKU-{n}" for n in range(4)])
    assert set(inv["sc-web"].values()) == {0}
    assert inv["sc-app"]["SKU-3"] == 13


def test_deleting_a_channel_rule_zeroes_its_storefront(shop):
    shop.channels["app"].stock_rule.delete()
    drain()
    inv = storefront(shop, [f"SKU-{n}" for n in range(4)])
    assert set(inv["sc-app"].values()) == {0} and inv["sc-web"]["SKU-0"] == 10


def test_drift_sees_unmapped_pairs_still_on_sale(shop):
    # unmapped behind the hub's back (bulk update: no signal), and nothing queued
    SkuMapping.objects.filter(storefront_sku="SKU-0").update(active=False)
    assert not PendingPush.objects.exists()
    res = drift.check_channel(shop.channels["web"])
    assert res.drifted == 1 and res.checked == 4
    rec = ExceptionRecord.objects.get(dedupe_key="stock_drift:web:SKU-0")
    assert rec.context["master_ats"] == 0 and rec.context["storefront_quantity"] == 10
    drain()
    assert storefront(shop, ["SKU-0"])["sc-web"]["SKU-0"] == 0
    res = drift.check_channel(shop.channels["web"])
    assert res.drifted == 0 and res.checked == 4  # seen at 0: recorded as confirmed 0 ...
    assert drift.check_channel(shop.channels["web"]).checked == 3  # ... and out of the check from then on
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_drift_checks_an_inactive_channel_that_still_shows_stock(shop):
    from integration_hub.core.models import Channel

    Channel.objects.filter(pk=shop.channels["web"].pk).update(active=False)  # no signal, nothing queued
    assert shop.channels["web"].pk in {c.pk for c in drift.channels_to_check()}
    res = drift.check_channel(Channel.objects.get(pk=shop.channels["web"].pk))
    assert res.drifted == 4
    drain()
    assert set(storefront(shop, [f"SKU-{n}" for n in range(4)])["sc-web"].values()) == {0}
