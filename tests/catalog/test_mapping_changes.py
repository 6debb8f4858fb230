"""The one "mapping changed" entry point: a row save goes through it by its signal (once — the console/API save hook
no longer re-queues a second time), a bulk write calls it itself, and it re-checks held orders only when asked."""

from __future__ import annotations

import pytest

from integration_hub.catalog import mapping_changes
from integration_hub.catalog.mapping_changes import last_change, mapping_changed
from integration_hub.catalog.models import SkuMapping
from integration_hub.inventory.models import PendingPush
from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def test_a_row_save_requeues_once_through_the_signal(w):
    m = SkuMapping.objects.create(item=w.items[0], channel=w.channel, storefront_sku="A-1")
    assert last_change(m).pushes == 1 and last_change(m).orders_revalidated == 0
    row = PendingPush.objects.get(item=w.items[0], channel=w.channel)
    assert row.reason == "sku mapping created" and row.changes == 1
    m.storefront_product = "P-1"
    m.save()  # nothing that moves stock changed: nothing queued
    assert last_change(m).pushes == 0
    m.delete()
    assert PendingPush.objects.get(item=w.items[0], channel=w.channel).reason == "sku mapping deleted"


def test_a_bulk_write_calls_it_itself(w):
    SkuMapping.objects.bulk_create([SkuMapping(item=i, channel=None, storefront_sku=f"B-{i.pk}") for i in w.items])
    assert not PendingPush.objects.exists()  # bulk_create sends no signals
    change = mapping_changed([i.pk for i in w.items], None, "test import")
    assert change.pushes == len(w.items) == PendingPush.objects.filter(reason="test import").count()


def test_held_orders_are_rechecked_only_for_the_skus_given(w, monkeypatch):
    calls = []
    monkeypatch.setattr(
        mapping_changes, "revalidate_held", lambda sku=None, channel=None: calls.append((sku, channel)) or 2
    )
    assert mapping_changed([w.items[0].pk], [w.channel.pk], "x").orders_revalidated == 0 and calls == []
    assert mapping_changed((), None, "x", storefront_skus=["A"], channel=w.channel).orders_revalidated == 2
    assert mapping_changed((), None, "x", storefront_skus=["A", "B"]).orders_revalidated == 2
    assert calls == [("A", w.channel), (None, None)]  # one SKU: its orders; several: the channel in one pass
