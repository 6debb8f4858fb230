"""Full drift check: hub ATS vs storefront read-back."""

from __future__ import annotations

import pytest

from exceptions_app.models import ExceptionRecord
from integration_hub.inventory import drift, outbox, push
from integration_hub.inventory.models import ChannelStock, PendingPush


@pytest.fixture
def topo(world, fake_storefront):
    world.channel("web", locations=["dc1"])
    for sku, qty in (("A", 5), ("B", 8), ("C", 0), ("D", 3)):
        world.item(sku)
        world.stock(sku, "dc1", qty)
    outbox.enqueue([i.pk for i in world.items.values()])
    push.push_batch()
    assert not PendingPush.objects.exists()
    return world


def test_drift_raises_with_both_numbers_then_repairs_and_clears(topo, fake_storefront):
    web = topo.channels["web"]
    fake_storefront.quantities[("sc-web", "SF-A")] = 2  # someone edited the storefront
    del fake_storefront.quantities[("sc-web", "SF-D")]  # entry deleted on the storefront
    del fake_storefront.quantities[("sc-web", "SF-C")]  # missing with ATS 0: agrees
    res = drift.check_channel(web)
    assert (res.checked, res.drifted, res.agreed) == (4, 2, 2)
    rec = ExceptionRecord.objects.get(dedupe_key="stock_drift:web:SF-A")
    assert rec.context["master_ats"] == 5 and rec.context["storefront_quantity"] == 2 and rec.kind == "stock_drift"
    assert ExceptionRecord.objects.get(dedupe_key="stock_drift:web:SF-D").context["storefront_quantity"] is None
    cs = ChannelStock.objects.get(channel=web, item=topo.items["A"])
    assert cs.observed_quantity == 2 and cs.confirmed_quantity == 2  # so the repair is not skipped
    assert set(PendingPush.objects.values_list("item__sku", "priority")) == {("A", 9), ("D", 9)}
    res = push.push_batch()
    assert res.pushed == 2 and fake_storefront.quantities[("sc-web", "SF-A")] == 5
    res = drift.check_channel(web)
    assert res.drifted == 0
    assert ExceptionRecord.objects.get(dedupe_key="stock_drift:web:SF-A").status == "resolved"


def test_pairs_with_pending_pushes_are_not_judged(topo, fake_storefront):
    topo.stock("B", "dc1", 1)
    outbox.enqueue([topo.items["B"].pk])
    res = drift.check_channel(topo.channels["web"])
    assert res.in_flight == 1 and res.drifted == 0
    assert not ExceptionRecord.objects.filter(kind="stock_drift").exists()


def test_drift_task_covers_every_channel(topo, fake_storefront):
    from integration_hub.inventory.tasks import drift_check

    fake_storefront.quantities[("sc-web", "SF-B")] = 80
    out = drift_check()
    assert out[0]["channel"] == "web" and out[0]["drifted"] == 1


def test_unreadable_storefront_is_recorded_and_cleared(topo, fake_storefront):
    from connectors import errors
    from integration_hub.inventory.tasks import drift_check

    real = fake_storefront.get_stock
    fake_storefront.get_stock = lambda skus, ref: (_ for _ in ()).throw(
        errors.NotFoundError("no supply channel sc-web")
    )
    assert "no supply channel" in drift_check()[0]["error"]
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:shop:drift_check/web")
    fake_storefront.get_stock = real
    drift_check()
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_repair_sweep_fixes_the_storefronts_own_decrements_in_normal_operation(topo, fake_storefront, monkeypatch):
    """Issue 20, item 4: the storefront decremented itself (its own order) and the hub's push was skipped as
    "already confirmed": the beat's light sweep — bounded per channel, least recently observed first —
    finds and repairs it without anyone running the drift check."""
    from integration_hub.core.beat import collect
    from integration_hub.inventory import tasks

    assert any(j.task == "inventory.repair_sweep" and j.every_seconds <= 300 for j in collect())
    fake_storefront.quantities[("sc-web", "SF-B")] = 5  # 8 confirmed; the storefront sold 3 by itself
    reads = []
    real = fake_storefront.get_stock
    monkeypatch.setattr(fake_storefront, "get_stock", lambda skus, ref: reads.append(list(skus)) or real(skus, ref))
    first = tasks.repair_sweep(limit=2)  # bounded: two pairs read this time (never observed: A, B first)
    assert first[0]["checked"] == 2 and sorted(reads[-1]) == ["SF-A", "SF-B"]
    assert set(PendingPush.objects.values_list("item__sku", flat=True)) == {"B"}
    push.push_batch()
    assert fake_storefront.quantities[("sc-web", "SF-B")] == 8
    second = tasks.repair_sweep(limit=2)  # the next sweep reads the pairs the last one did not
    assert second[0]["checked"] == 2 and sorted(reads[-1]) == ["SF-C", "SF-D"]
