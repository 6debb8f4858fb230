"""A full resync of an SFCC channel on Omnichannel Inventory goes out as one Impex import (a handful of requests),
not as a batch update per 100 SKUs; refused lines become exception records and the good lines land."""

from . import flows
from tests.support.sandbox import SandboxClient

N = 1000


def _world(pair, *, extra_skus=()):
    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Location
    from integration_hub.inventory.models import StockLevel

    sf, wh = pair.connection("sfcc"), pair.connection("wair")
    sf.options = {
        **sf.options,
        "api_family": "scapi_oci",
        "organization_id": "f_ecom_hubt_001",
        "oci_tenant_group_id": "tg-hubt",
        "oci_import_poll_seconds": 0.15,
    }
    sf.save()
    pair.control("sfcc", "configure_site", {"inventory": "oci", "tenant_group_id": "tg-hubt"})
    pair.control("sfcc", "configure_impex", {"delay": 0.1})
    ch = pair.topology(sf, wh, list_id="inv_web")  # A, B, C and KIT, no stock yet
    pair.push()  # their first pushes (deltas): the full load below is about the 1,000 SKUs
    items = Item.objects.bulk_create([Item(sku=f"FL{i:04d}", name=f"Full load {i}") for i in range(N)])
    storefront_skus = [f"SF-FL{i:04d}" for i in range(N)] + list(extra_skus)
    extra = Item.objects.bulk_create([Item(sku=f"X{i}", name=s) for i, s in enumerate(extra_skus)])
    SkuMapping.objects.bulk_create(
        [SkuMapping(item=it, storefront_sku=s) for it, s in zip(items + extra, storefront_skus)]
    )
    dc1 = Location.objects.get(code="dc1")
    StockLevel.objects.bulk_create(
        [StockLevel(item=it, location=dc1, state="available", quantity=i % 9) for i, it in enumerate(items + extra)]
    )
    pair.control(
        "sfcc",
        "seed_catalog",
        {"channels": ["inv_web"], "skus": [s for s in storefront_skus if " " not in s], "quantity": 0},
    )
    return sf, ch


def _inventory_calls(pair):
    routes = SandboxClient.of(pair.sandbox).stats("sfcc")["by_route"]
    return {k: v for k, v in routes.items() if "/inventory/" in k}


def _delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_a_1000_sku_full_resync_of_an_oci_channel_is_one_import(pair):
    from integration_hub.inventory import full_load
    from integration_hub.inventory.models import ChannelStock, PendingPush

    sf, ch = _world(pair)
    before = _inventory_calls(pair)
    res = full_load.push_channels([ch])
    calls = _delta(before, _inventory_calls(pair))
    assert res.pushed == N and res.failed == 0, res
    assert not any("batch-update" in k for k in calls), calls  # the drain would have sent 10 batch updates
    assert sum(calls.values()) <= 5, calls  # import, upload, status, result file
    oci = flows.storefront_inventory(pair, sf, "inv_web")
    assert oci["SF-FL0000"] == 0 and oci["SF-FL0005"] == 5 and oci["SF-FL0998"] == 998 % 9
    assert ChannelStock.objects.filter(channel=ch, storefront_sku__startswith="SF-FL").count() == N
    assert not PendingPush.objects.exists()
    # a second full resync finds everything confirmed: nothing is sent at all
    before = _inventory_calls(pair)
    again = full_load.push_channels([ch])
    assert again.skipped >= N and again.pushed == 0 and _delta(before, _inventory_calls(pair)) == {}


def test_refused_lines_become_exception_records_and_good_lines_land(pair):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.inventory import full_load
    from integration_hub.inventory.models import ChannelStock, PendingPush

    sf, ch = _world(pair, extra_skus=("SF BAD 1",))
    res = full_load.push_channels([ch])
    assert res.pushed == N and res.failed == 1, res
    rec = ExceptionRecord.objects.get(dedupe_key=f"bad_payload:{sf.name}:set_stock:{ch.key}/SF BAD 1")
    assert "white space" in rec.message and rec.status == "open"
    assert ChannelStock.objects.filter(channel=ch, storefront_sku__startswith="SF-FL").count() == N
    # never confirmed (the push engine's write-ahead attempt record may exist: the outcome stays unknown)
    assert not ChannelStock.objects.filter(storefront_sku="SF BAD 1", confirmed_quantity__isnull=False).exists()
    [left] = PendingPush.objects.all()  # the refused pair stays queued, with its error
    assert left.attempts == 1 and "white space" in left.last_error
    assert flows.storefront_inventory(pair, sf, "inv_web")["SF-FL0007"] == 7


def test_a_storefront_without_a_bulk_path_is_left_to_the_drain(pair):
    from integration_hub.inventory import full_load
    from integration_hub.inventory.models import PendingPush

    sf, wh = pair.connection("sfcc"), pair.connection("wair")  # OCAPI: no bulk path
    ch = pair.topology(sf, wh, list_id="inv_web")
    pair.push()
    res = full_load.push_channels([ch])
    assert res.claimed == 0 and PendingPush.objects.filter(channel=ch).count() == 4  # queued for the drain
    assert pair.push().skipped == 4  # the drain finds them confirmed already


def test_a_rule_change_queues_the_channel_and_a_full_load_pushes_it(
    pair, task_trap, django_capture_on_commit_callbacks
):
    """The hub's full-resync path (every SKU of the channel re-queued: its stock rule created or changed, its
    locations changed, the channel reactivated) hands an OCI channel to the full-load task after the commit."""
    from integration_hub.inventory import tasks
    from integration_hub.inventory.models import ChannelStock

    sf, ch = _world(pair)
    sent = task_trap.run_in_place(tasks.full_load).results(tasks.full_load)
    before = _inventory_calls(pair)
    with django_capture_on_commit_callbacks(execute=True):
        rule = ch.stock_rule
        rule.safety_buffer = 1
        rule.save()
    assert len(sent) == 1 and sent[0]["pushed"] == N, sent  # the 1,000 never pushed before; A, B, C, KIT unchanged
    calls = _delta(before, _inventory_calls(pair))
    assert not any("batch-update" in k for k in calls) and sum(calls.values()) <= 5, calls
    assert flows.storefront_inventory(pair, sf, "inv_web")["SF-FL0005"] == 4  # 5 − the buffer
    assert ChannelStock.objects.get(channel=ch, storefront_sku="SF-FL0005").confirmed_quantity == 4


def test_the_fullload_command(pair):
    import pytest
    from django.core.management import CommandError, call_command

    from integration_hub.inventory.models import ChannelStock

    _, ch = _world(pair)
    call_command("stock", "fullload", "--channel", ch.key)
    assert ChannelStock.objects.filter(channel=ch, storefront_sku__startswith="SF-FL").count() == N
    with pytest.raises(CommandError):
        call_command("stock", "fullload", "--channel", "nope")


def test_a_channel_larger_than_one_round_is_loaded_in_rounds(pair):
    from integration_hub.inventory import full_load
    from integration_hub.inventory.models import ChannelStock, PendingPush

    sf, ch = _world(pair)
    sf.options = {**sf.options, "oci_import_min_records": 300}
    sf.save()
    from connectors import registry

    registry.clear_cache()
    res = full_load.push_channels([ch], max_rows=400)
    assert res.pushed == N and res.claimed == N + 4  # A, B, C, KIT were queued too (already confirmed: skipped)
    # rounds of 400, 400 and 204 rows: two imports, then 200 targets (A, B, C, KIT skipped) below the minimum → batches
    assert len(pair.control("sfcc", "imports")) == 2
    assert ChannelStock.objects.filter(channel=ch, storefront_sku__startswith="SF-FL").count() == N
    assert not PendingPush.objects.exists()
