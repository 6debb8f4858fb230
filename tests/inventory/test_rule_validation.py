"""A channel stock rule that cannot feed its channel (shared without a pool, segregated without
locations) is refused — by the model, the database and the Django admin — instead of silently giving
every SKU ATS 0."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from integration_hub.inventory.models import ChannelStockRule


def test_shared_rule_without_pool_fails_validation(world):
    ch = world.channel("web", locations=["dc1"])
    rule = ch.stock_rule
    rule.mode = ChannelStockRule.Mode.SHARED
    with pytest.raises(ValidationError) as err:
        rule.full_clean()
    assert "pool" in err.value.message_dict


def test_database_refuses_shared_rule_without_pool(world):
    from integration_hub.core.models import Channel

    ch = Channel.objects.create(key="x", name="x", connection=world.storefront, external_id="sc-x")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            ChannelStockRule.objects.create(channel=ch, mode="shared", pool=None)


def test_admin_refuses_rules_that_feed_nothing(world, admin_client):
    ch = world.channel("web", locations=["dc1"])
    url = f"/admin/inventory/channelstockrule/{ch.stock_rule.pk}/change/"
    r = admin_client.post(url, {"channel": ch.pk, "mode": "segregated", "safety_buffer": "0"})
    assert r.status_code == 200 and "needs at least one location" in r.content.decode()
    r = admin_client.post(
        url, {"channel": ch.pk, "mode": "shared", "safety_buffer": "0", "locations": [world.location("dc1").pk]}
    )
    assert r.status_code == 200 and "needs a stock pool" in r.content.decode()
    pool = world.pool("uk", ["dc1"])
    r = admin_client.post(url, {"channel": ch.pk, "mode": "shared", "pool": pool.pk, "safety_buffer": "0"})
    assert r.status_code == 302
    assert ChannelStockRule.objects.get(pk=ch.stock_rule.pk).pool == pool
