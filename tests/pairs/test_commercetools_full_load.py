"""A commercetools channel's first sync goes out through the Import API (issue 12, part 4): the rows wait in the
outbox as ImportPending, the outcome task confirms only the imported pairs and files exception records for the
validationFailed / unresolved / rejected ones — over real HTTP against the sandbox."""

import time
from tests.support.sandbox import SandboxClient


N = 200


def _routes(pair) -> dict:
    """Requests the commercetools emulator has served, per route."""
    return SandboxClient.of(pair.sandbox).stats("commercetools").by_route


def _world(pair):
    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Location
    from integration_hub.inventory.models import StockLevel

    ct, wh = pair.connection("commercetools"), pair.connection("wair")
    ch = pair.topology(ct, wh, list_id="ct-web")
    pair.push()  # the topology's own four SKUs go out as deltas
    items = Item.objects.bulk_create([Item(sku=f"FL{i:04d}", name=f"Full load {i}") for i in range(N)])
    SkuMapping.objects.bulk_create([SkuMapping(item=it, storefront_sku=f"SF-FL{i:04d}") for i, it in enumerate(items)])
    dc1 = Location.objects.get(code="dc1")
    StockLevel.objects.bulk_create(
        [StockLevel(item=it, location=dc1, state="available", quantity=i % 9) for i, it in enumerate(items)]
    )
    pair.control(
        "commercetools",
        "seed_catalog",
        {"channels": ["ct-web"], "skus": [f"SF-FL{i:04d}" for i in range(N)], "quantity": None},
    )
    return ct, ch


def _land(pair):
    """ct has processed every queued import (the tests hold them with a long delay, then let them go)."""
    emu = pair.sandbox.emulators["commercetools"]
    with emu.lock:
        emu.import_delay = 0
        emu.import_queue = sorted((0, seq, op, res) for _due, seq, op, res in emu.import_queue)


def _settle(conn, timeout=10.0):
    from integration_hub.inventory import import_outcomes

    deadline = time.monotonic() + timeout
    while True:
        out = import_outcomes.settle(conn)
        if not out.get("processing"):
            return out
        assert time.monotonic() < deadline, out
        time.sleep(0.1)


def test_a_first_sync_is_imported_and_confirmed_only_for_imported_pairs(pair):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.inventory import full_load, import_outcomes
    from integration_hub.inventory.models import ChannelStock, PendingPush

    ct, ch = _world(pair)
    emu = pair.sandbox.emulators["commercetools"]
    pair.control("commercetools", "import_settings", {"delay": 600, "reject_skus": ["SF-FL0003"]})
    before = _routes(pair)
    res = full_load.push_channels([ch])
    sent = {k: v - before.get(k, 0) for k, v in _routes(pair).items() if v != before.get(k, 0)}
    assert res.claimed == N + 4 and res.skipped == 4 and res.pushed == 0, res  # + the topology's, already confirmed
    assert sum(v for k, v in sent.items() if "inventories/import-containers" in k) == N // 20, sent
    assert not any(k.startswith("GET") and "/inventory" in k for k in sent), sent  # no per-100 read
    pending = PendingPush.objects.filter(channel=ch, last_error__startswith=import_outcomes.PENDING_PREFIX)
    assert pending.count() == N and all(p.not_before is not None for p in pending)
    # accepted is not failed: no attempt counted, no error on the connection, reported as pending
    assert res.pending == N and res.failed == 0, res
    assert not pending.filter(attempts__gt=0).exists()
    ct.refresh_from_db()
    assert not ct.last_error.startswith("ImportPending"), ct.last_error
    assert import_outcomes.pending_connections() == [ct.pk]
    # still processing: nothing is confirmed, the write-ahead says "outcome unknown"
    out = import_outcomes.settle(ct)
    assert out["processing"] == N and out["imported"] == 0, (out, list(emu.import_queue)[:2], time.monotonic())
    assert not ChannelStock.objects.filter(
        channel=ch, storefront_sku__startswith="SF-FL", confirmed_quantity__isnull=False
    ).exists()
    assert (
        ChannelStock.objects.filter(channel=ch, storefront_sku__startswith="SF-FL", attempted_at__isnull=False).count()
        == N
    )
    _land(pair)
    out = _settle(ct)
    assert out["imported"] == N - 1 and out["failed"] == 1, out
    confirmed = dict(
        ChannelStock.objects.filter(
            channel=ch, storefront_sku__startswith="SF-FL", confirmed_quantity__isnull=False
        ).values_list("storefront_sku", "confirmed_quantity")
    )
    assert len(confirmed) == N - 1 and "SF-FL0003" not in confirmed and confirmed["SF-FL0007"] == 7
    assert not ChannelStock.objects.filter(channel=ch, storefront_sku="SF-FL0007", attempted_at__isnull=False).exists()
    inv = pair.control("commercetools", "state", {})["inventory"]["ct-web"]
    assert inv["SF-FL0007"] == 7 and "SF-FL0003" not in inv
    rec = ExceptionRecord.objects.get(dedupe_key=f"bad_payload:{ct.name}:set_stock:{ch.key}/SF-FL0003")
    assert "SF-FL0003" in rec.message and "rejected" in rec.message and ch.key in rec.title
    [left] = PendingPush.objects.filter(channel=ch)  # the refused pair stays queued for the drain, no longer pending
    assert not left.last_error.startswith(import_outcomes.PENDING_PREFIX)
    assert import_outcomes.pending_connections() == []
    # a full resync of a channel in step: the confirmed pairs are known, read back 100 at a time, nothing written
    before = _routes(pair)
    again = full_load.push_channels([ch])
    sent = {k: v - before.get(k, 0) for k, v in _routes(pair).items() if v != before.get(k, 0)}
    assert again.skipped >= N - 1, again
    assert not any("import-containers" in k or k.startswith("POST") and "/inventory" in k for k in sent), sent


def test_unresolved_channels_reach_the_exception_queue(pair):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.inventory import full_load
    from integration_hub.inventory.models import ChannelStock

    ct, ch = _world(pair)
    emu = pair.sandbox.emulators["commercetools"]
    pair.control("commercetools", "import_settings", {"delay": 600})
    full_load.push_channels([ch])
    with emu.lock:  # the supply channel disappears before ct processes the import
        cid = emu.channel_by_key.pop("ct-web")
    _land(pair)
    out = _settle(ct)
    assert out["failed"] == N and out["imported"] == 0, out
    rec = ExceptionRecord.objects.get(dedupe_key=f"bad_payload:{ct.name}:set_stock:{ch.key}/SF-FL0011")
    assert "unresolved channel key 'ct-web'" in rec.message
    assert not ChannelStock.objects.filter(
        channel=ch, storefront_sku__startswith="SF-FL", confirmed_quantity__isnull=False
    ).exists()
    with emu.lock:
        emu.channel_by_key["ct-web"] = cid


def test_the_settle_task_is_registered_and_on_the_beat():
    from integration_hub.celery import app
    from integration_hub.inventory.beat import SCHEDULE

    assert any(j.task == "inventory.settle_imports" and j.every_seconds for j in SCHEDULE)
    assert "inventory.settle_imports" in app.tasks


def test_settle_queries_do_not_grow_with_the_load(pair, django_assert_max_num_queries):
    from integration_hub.inventory import full_load, import_outcomes

    ct, ch = _world(pair)
    full_load.push_channels([ch])
    pair.control("commercetools", "import_settings", {"delay": 0})
    with django_assert_max_num_queries(16):
        out = import_outcomes.settle(ct)
    assert out["imported"] == N


def test_a_pair_changed_after_its_submission_is_released_not_deleted_and_a_replaced_attempt_is_not_confirmed(pair):
    from datetime import timedelta

    from django.utils import timezone

    from integration_hub.inventory import full_load, import_outcomes
    from integration_hub.inventory.models import ChannelStock, PendingPush

    ct, ch = _world(pair)
    pair.control("commercetools", "import_settings", {"delay": 0})
    full_load.push_channels([ch])
    changed = PendingPush.objects.get(channel=ch, item__sku="FL0001")
    PendingPush.objects.filter(pk=changed.pk).update(updated_at=timezone.now() + timedelta(seconds=5))  # enqueued again
    # the drain holds FL0002's row (its deferral ended): a newer push is in flight, its outcome unknown
    replaced = ChannelStock.objects.get(channel=ch, storefront_sku="SF-FL0002")
    later = replaced.attempted_at + timedelta(seconds=3)
    ChannelStock.objects.filter(pk=replaced.pk).update(attempted_at=later, attempted_quantity=99)
    PendingPush.objects.filter(channel=ch, item__sku="FL0002").update(
        claimed_until=timezone.now() + timedelta(seconds=30), claim_token="drain"
    )
    out = _settle(ct)
    assert out["imported"] == N - 1 and out["released"] == 1, out
    row = PendingPush.objects.get(pk=changed.pk)
    assert row.not_before is None and row.last_error == ""  # pushed now, as a relative delta over the imported marker
    assert ChannelStock.objects.get(channel=ch, storefront_sku="SF-FL0001").confirmed_quantity == 1
    cs = ChannelStock.objects.get(pk=replaced.pk)
    assert cs.confirmed_quantity is None and cs.attempted_quantity == 99 and cs.attempted_at == later
    assert PendingPush.objects.filter(channel=ch).count() == 2  # the released row and the one the drain holds
    assert import_outcomes.settle(ct)["imported"] == 0  # nothing left to settle while the drain holds it


def test_the_outcome_chain_runs_again_only_while_imports_are_processing(pair, task_trap):
    from integration_hub.inventory import full_load, import_outcomes

    ct, ch = _world(pair)
    pair.control("commercetools", "import_settings", {"delay": 30})
    sent = task_trap.calls(import_outcomes.settle_imports)
    full_load.push_channels([ch])
    assert sent == [
        {
            "kwargs": {"connection_id": ct.pk, "chain": True},
            "countdown": import_outcomes.IMPORT_POLL_SECONDS,
            "retry": False,
        }
    ]  # the full load starts the chain
    out = import_outcomes.settle_imports(ct.pk, chain=True)
    assert out[ct.name]["processing"] == N and len(sent) == 2  # still processing: polled again in 10 s
    _land(pair)
    out = import_outcomes.settle_imports(chain=True)  # the beat's call: every connection with pending rows
    assert out[ct.name]["imported"] == N and len(sent) == 2  # settled: the chain ends
    assert import_outcomes.settle_imports(chain=True) == {}
