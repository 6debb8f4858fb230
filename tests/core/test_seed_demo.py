"""The demo seeder: realistic volumes, idempotent, switches pairs, starts over with --reset."""

from django.contrib.auth import authenticate
from django.core.management import call_command

from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
from integration_hub.core.models import Channel, Connection, Location


def test_seed_hub_side(db):
    call_command("seed_demo", no_sandbox=True)
    assert Item.objects.count() == 3001
    assert BundleComponent.objects.filter(bundle__sku="GIFTSET-01").count() == 3
    assert Item.objects.count() - SkuMapping.objects.count() == 20  # deliberately unmapped
    assert set(Channel.objects.values_list("connection__system_type", flat=True)) == {"commercetools"}
    assert authenticate(username="finance", password="hub-demo") is not None
    ct = Connection.objects.get(system_type="commercetools")
    assert ct.get_secret() == "hub-demo-secret" and "hub-demo-secret" not in ct.secret_encrypted
    from connectors.registry import api_notice

    default = set(Connection.objects.filter(enabled=True).values_list("system_type", flat=True))
    assert default == {"commercetools", "clarus", "inventory_planner", "wair_replenishment"}
    assert not [
        s for s in default if api_notice(s)[0]
    ]  # ./hub up's default pair: every connector follows a published API

    call_command("seed_demo", no_sandbox=True, storefront="sfcc", master="clarus")  # switch pair, keep data
    assert Item.objects.count() == 3001
    assert set(Channel.objects.values_list("connection__system_type", flat=True)) == {"sfcc"}
    assert set(Channel.objects.values_list("warehouse__system_type", flat=True)) == {"clarus"}
    assert set(Location.objects.values_list("connection__system_type", flat=True)) == {"clarus"}
    enabled = set(Connection.objects.filter(enabled=True).values_list("system_type", flat=True))
    assert enabled == {"sfcc", "clarus", "inventory_planner", "wair_replenishment"}

    call_command("seed_demo", no_sandbox=True, reset=True)
    assert Item.objects.count() == 3001 and Channel.objects.count() == 2
