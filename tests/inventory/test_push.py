"""Draining the outbox against a fake storefront: skip-if-confirmed, mid-push changes, back-off,
exception records, priority, claims, and a fixed query count per batch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connectors import errors
from exceptions_app.models import ExceptionRecord
from integration_hub.inventory import outbox, push
from integration_hub.inventory.models import ChannelStock, PendingPush
from tests.support.fakes import install_fakes
from tests.support import factories

ORDER, ROUTINE = PendingPush.Priority.ORDER, PendingPush.Priority.ROUTINE


@pytest.fixture
def topo(world, fake_storefront):
    world.channel("web", locations=["dc1"], buffer=1)
    world.channel("b2b", locations=["dc1"])
    for n in range(3):
        world.item(f"S{n}")
        world.stock(f"S{n}", "dc1", 10 + n)
    return world


def enqueue_all(world, priority=ROUTINE):
    return outbox.enqueue([i.pk for i in world.items.values()], priority=priority)


def test_push_sends_absolute_targets_and_records_confirmation(topo, fake_storefront):
    enqueue_all(topo)
    res = push.push_batch()
    assert (res.claimed, res.pushed, res.failed) == (6, 6, 0)
    assert (
        fake_storefront.quantities[("sc-web", "SF-S2")] == 11 and fake_storefront.quantities[("sc-b2b", "SF-S2")] == 12
    )
    assert len(fake_storefront.calls) == 1  # one call per storefront connection
    assert not PendingPush.objects.exists()
    cs = ChannelStock.objects.get(channel=topo.channels["web"], item=topo.items["S0"])
    assert (cs.confirmed_quantity, cs.storefront_version, cs.storefront_sku, cs.storefront_ref) == (
        9,
        1,
        "SF-S0",
        "ie-SF-S0",
    )
    # unchanged ATS: nothing is sent again
    enqueue_all(topo)
    res = push.push_batch()
    assert res.skipped == 6 and res.pushed == 0 and len(fake_storefront.calls) == 1 and not PendingPush.objects.exists()
    # a real change is sent, with the version we know
    topo.stock("S0", "dc1", 3)
    enqueue_all(topo)
    res = push.push_batch()
    assert res.pushed == 2 and res.skipped == 4
    sent = {(t.channel_ref, t.sku): t for t in fake_storefront.calls[-1]}
    assert sent[("sc-web", "SF-S0")].quantity == 2 and sent[("sc-web", "SF-S0")].known_version == 1


def test_change_during_push_is_not_lost(topo, fake_storefront):
    enqueue_all(topo)

    def meanwhile(targets):
        if len(fake_storefront.calls) == 1:
            topo.stock("S1", "dc1", 50)  # the master moves while the request is in flight
            outbox.enqueue([topo.items["S1"].pk])

    fake_storefront.on_call = meanwhile
    res = push.push_batch()
    assert res.pushed == 6 and res.requeued == 2
    rows = PendingPush.objects.all()
    assert {r.item.sku for r in rows} == {"S1"} and all(r.claimed_until is None for r in rows)
    res = push.push_batch()
    assert res.pushed == 2
    assert fake_storefront.quantities[("sc-web", "SF-S1")] == 49
    assert not PendingPush.objects.exists()


def test_failures_back_off_then_raise_and_clear(topo, fake_storefront):
    enqueue_all(topo)
    for attempt in range(1, 4):
        fake_storefront.raise_next = [errors.RateLimitedError("429 Too Many Requests", status=429, retry_after=30)]
        res = push.push_batch()
        assert res.failed == 6
        rows = list(PendingPush.objects.all())
        assert all(r.attempts == attempt and "RateLimitedError" in r.last_error for r in rows)
        assert all(r.not_before >= timezone.now() + timedelta(seconds=29) for r in rows)  # honours Retry-After
        assert push.push_batch().claimed == 0  # backing off
        if attempt < push.FAILURES_BEFORE_EXCEPTION:
            assert not ExceptionRecord.objects.filter(kind="rate_limited").exists()
        PendingPush.objects.update(not_before=None)
    rec = ExceptionRecord.objects.get(dedupe_key="rate_limited:shop:set_stock")
    assert rec.status == "open" and rec.context["rows_waiting"] == 6
    topo.storefront.refresh_from_db()
    assert "429" in topo.storefront.last_error
    res = push.push_batch()
    assert res.pushed == 6
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_timeouts_raise_sync_timeout(topo, fake_storefront):
    enqueue_all(topo)
    for _ in range(push.FAILURES_BEFORE_EXCEPTION):
        fake_storefront.raise_next = [errors.TimeoutError_("read timed out")]
        push.push_batch()
        PendingPush.objects.update(not_before=None)
    assert ExceptionRecord.objects.get(dedupe_key="sync_timeout:shop:set_stock").kind == "sync_timeout"


def test_per_item_failures(topo, fake_storefront):
    enqueue_all(topo)
    fake_storefront.item_errors = {
        "SF-S1": errors.NotFoundError("no such sku"),
        "SF-S2": errors.BadDataError("quantity too big"),
    }
    res = push.push_batch()
    assert res.pushed == 2 and res.failed == 4
    assert set(PendingPush.objects.values_list("item__sku", flat=True)) == {"S1", "S2"}
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:SF-S1").context["action"] == "map_sku"
    assert ExceptionRecord.objects.filter(dedupe_key="bad_payload:shop:set_stock:b2b/SF-S2").exists()
    fake_storefront.item_errors = {}
    PendingPush.objects.update(not_before=None)
    push.push_batch()
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:SF-S1").status == "resolved"


def test_unpushable_rows_are_dropped(topo, fake_storefront):
    from integration_hub.catalog.models import SkuMapping

    enqueue_all(topo)
    SkuMapping.objects.filter(item=topo.items["S0"]).delete()
    res = push.push_batch()
    assert res.dropped == 2 and res.pushed == 4 and not PendingPush.objects.exists()


def test_order_priority_first_and_priority_only_drain(topo, fake_storefront):
    outbox.enqueue([topo.items["S0"].pk, topo.items["S1"].pk], priority=ROUTINE)
    outbox.enqueue([topo.items["S2"].pk], channel_ids=[topo.channels["web"].pk], priority=ORDER)
    res = push.push_batch(batch_size=1)
    assert res.pushed == 1 and fake_storefront.calls[0][0].sku == "SF-S2"
    outbox.enqueue([topo.items["S2"].pk], channel_ids=[topo.channels["b2b"].pk], priority=ORDER)
    topo.stock("S2", "dc1", 1)
    totals, more = push.drain(max_priority=ORDER)
    assert totals.pushed == 1 and not more
    assert PendingPush.objects.count() == 4 and not PendingPush.objects.filter(priority=ORDER).exists()


def test_claims_are_exclusive_and_expired_claims_recover(topo):
    enqueue_all(topo)
    t1, lease1, rows1 = push.claim(batch_size=4)
    t2, lease2, rows2 = push.claim(batch_size=4)
    assert len(rows1) == 4 and len(rows2) == 2 and not {r["id"] for r in rows1} & {r["id"] for r in rows2}
    assert push.claim()[2] == []
    PendingPush.objects.filter(claim_token=t1).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )  # worker died
    assert push.release_expired_claims() == 4
    assert push.claimable_counts() == {"order": 0, "other": 4}


def _queries(fn):
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_push_runs_a_fixed_number_of_queries(world, fake_storefront):
    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.inventory.models import StockLevel

    world.channel("web", locations=["dc1"])
    world.channel("app", locations=["dc1"])
    loc = world.location("dc1")
    Item.objects.bulk_create([Item(sku=f"Q{n:03d}") for n in range(200)])
    items = list(Item.objects.order_by("pk").values_list("pk", flat=True))
    SkuMapping.objects.bulk_create([SkuMapping(item_id=i, storefront_sku=f"SF{i}") for i in items])
    StockLevel.objects.bulk_create([StockLevel(item_id=i, location=loc, quantity=5) for i in items])

    counts, start = [], 0
    for n in (3, 60, 130):  # fresh items each time (confirmed ones would be skipped)
        PendingPush.objects.all().delete()
        outbox.enqueue(items[start : start + n])  # 2n rows over two channels
        start += n
        counts.append(_queries(lambda: push.push_batch(batch_size=400)))
        assert len(fake_storefront.calls[-1]) == 2 * n
    assert counts[0] == counts[1] == counts[2], counts
    # claim 3, captured units 1 (the ledger offset), ATS 1, confirmed 1, channels 1, write-ahead, upsert, delete,
    # release, connection, clear (+4 savepoints)
    assert counts[0] <= 17, counts


def test_sweep_releases_dead_claims_and_dispatches_by_priority(topo, task_trap):
    from integration_hub.inventory import tasks

    sent = task_trap.calls(tasks.push_pending)
    outbox.enqueue([topo.items["S0"].pk], priority=ORDER)
    outbox.enqueue([topo.items["S1"].pk])
    PendingPush.objects.filter(item=topo.items["S1"]).update(
        claimed_until=timezone.now() - timedelta(seconds=5), claim_token="dead"
    )
    out = tasks.sweep_pending()
    assert out == {"released": 2, "order": 2, "other": 2}
    assert {"kwargs": {"max_priority": 0}} in sent and {} in sent  # routed to "stock" / "default" by core.queues
    sent.clear()
    PendingPush.objects.update(not_before=timezone.now() + timedelta(minutes=5))  # all backing off
    assert tasks.sweep_pending() == {"released": 0, "order": 0, "other": 0} and sent == []


def test_push_task_continues_in_a_new_task_when_out_of_time(topo, fake_storefront, task_trap):
    from integration_hub.inventory import tasks

    sent = task_trap.calls(tasks.push_pending)
    enqueue_all(topo)
    conn_id = topo.storefront.pk
    out = tasks.push_pending(batch_size=2, time_budget=0, connection_id=conn_id)
    assert out["pushed"] == 2 and out["more"] is True
    assert sent[0]["kwargs"]["batch_size"] == 2 and sent[0]["kwargs"]["connection_id"] == conn_id
    out = tasks.push_pending(batch_size=100, connection_id=conn_id)
    assert out["pushed"] == 4 and out["more"] is False


def test_concurrent_claims_never_overlap(transactional_db):
    """Four threads (own DB connections) claim from the same outbox at once: each row exactly once."""
    import threading

    from django.db import connections

    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Channel
    from integration_hub.inventory.models import ChannelStockRule

    shop = factories.connection("commercetools", "shop", base_url="http://127.0.0.1:9/ct")
    ch = Channel.objects.create(key="web", name="web", connection=shop, external_id="sc-web")
    ChannelStockRule.objects.create(channel=ch)
    Item.objects.bulk_create([Item(sku=f"C{n:04d}") for n in range(400)])
    SkuMapping.objects.bulk_create([SkuMapping(item=i, storefront_sku=f"SF-{i.sku}") for i in Item.objects.all()])
    outbox.enqueue(Item.objects.values_list("pk", flat=True))
    assert PendingPush.objects.count() == 400
    claimed, errors_seen = [], []

    def worker():
        try:
            while True:
                _, _, rows = push.claim(batch_size=7)
                if not rows:
                    return
                claimed.extend(r["id"] for r in rows)
        except Exception as exc:  # pragma: no cover - surfaced below
            errors_seen.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors_seen
    assert len(claimed) == 400 and len(set(claimed)) == 400


def test_storefronts_are_pushed_concurrently_and_independently(world, monkeypatch):
    import threading
    import time as _time

    from .conftest import FakeStorefront

    sfcc = factories.connection("sfcc", "sfcc", base_url="http://127.0.0.1:9/sfcc")
    world.channel("web", locations=["dc1"])
    world.channel("eu", locations=["dc1"], connection=sfcc)
    world.item("A")
    world.stock("A", "dc1", 4)
    slow, fast = FakeStorefront(), FakeStorefront()
    seen_threads = set()

    def slow_call(targets):
        seen_threads.add(threading.get_ident())
        _time.sleep(0.5)
        raise errors.TimeoutError_("storefront hangs")

    slow.on_call = slow_call
    fast.on_call = lambda targets: seen_threads.add(threading.get_ident())
    install_fakes(monkeypatch).install(fast)
    install_fakes(monkeypatch).install(slow, system_type="commercetools")
    outbox.enqueue([world.items["A"].pk])
    res = push.push_batch()
    assert res.pushed == 1 and res.failed == 1 and len(seen_threads) == 2
    assert fast.quantities == {("sc-eu", "SF-A"): 4}
    assert set(PendingPush.objects.values_list("channel__key", flat=True)) == {"web"}


def test_stock_management_command(topo, fake_storefront):
    from io import StringIO

    from django.core.management import call_command

    def run(*args):
        out = StringIO()
        call_command("stock", *args, stdout=out)
        return out.getvalue()

    assert "outbox empty" in run("status")
    assert "3 push(es) queued for b2b" in run("requeue", "--channel", "b2b")
    assert "waiting" in run("status")
    assert "pushed 3" in run("push")
    assert fake_storefront.quantities[("sc-b2b", "SF-S1")] == 11


@pytest.mark.django_db(transaction=True)
def test_priority_drain_is_not_held_up_by_a_routine_batch_in_flight(world, fake_storefront, settings, tmp_path):
    """Embedded mode (no Redis): a routine batch stuck in ``set_stock`` (slow storefront, Retry-After
    waits) must not make an order decrement wait — no per-connection lock around the push; the rate
    limiter (file bucket shared by the processes of the host) is what paces them."""
    import threading
    import time as _time

    from django.db import connections

    settings.REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    world.channel("web", locations=["dc1"])
    for sku in ("R0", "R1", "R2", "HOT"):
        world.item(sku)
        world.stock(sku, "dc1", 5)
    outbox.enqueue([world.items[s].pk for s in ("R0", "R1", "R2")], priority=ROUTINE)
    in_flight, release = threading.Event(), threading.Event()

    def slow_routine(targets):
        if any(t.sku.startswith("SF-R") for t in targets):
            in_flight.set()
            release.wait(15)

    fake_storefront.on_call = slow_routine
    results = {}

    def routine():
        try:
            results["routine"] = push.push_batch()
        finally:
            connections.close_all()

    worker = threading.Thread(target=routine)
    worker.start()
    try:
        assert in_flight.wait(10)
        outbox.enqueue([world.items["HOT"].pk], priority=ORDER)
        started = _time.monotonic()
        res = push.push_batch(max_priority=ORDER)
        elapsed = _time.monotonic() - started
        assert not release.is_set()
    finally:
        release.set()
        worker.join(20)
    assert res.pushed == 1 and elapsed < 5, elapsed
    assert fake_storefront.quantities[("sc-web", "SF-HOT")] == 5
    assert results["routine"].pushed == 3


def test_conflict_that_outlasts_the_retries_is_filed_as_a_conflict(topo, fake_storefront):
    enqueue_all(topo)
    for _ in range(push.FAILURES_BEFORE_EXCEPTION):
        fake_storefront.raise_next = [errors.ConflictError("409 version mismatch", status=409)]
        push.push_batch()
        PendingPush.objects.update(not_before=None)
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:shop:set_stock")
    assert rec.kind == "sync_timeout" and "conflict" in rec.title
    assert rec.context["reason"] == "conflict" and rec.context["error"] == "ConflictError"
    push.push_batch()
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_timeouts_are_not_called_conflicts(topo, fake_storefront):
    enqueue_all(topo)
    for _ in range(push.FAILURES_BEFORE_EXCEPTION):
        fake_storefront.raise_next = [errors.TimeoutError_("read timed out")]
        push.push_batch()
        PendingPush.objects.update(not_before=None)
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:shop:set_stock")
    assert rec.context["reason"] == "error" and "conflict" not in rec.title


def test_a_skipped_push_still_resolves_a_sku_exception_the_storefront_already_agrees_with(topo, fake_storefront):
    """A SKU fix whose pair the storefront already shows at the right quantity resolves on the skip."""
    from exceptions_app import kinds
    from exceptions_app.services import raise_exception

    enqueue_all(topo)
    push.push_batch()
    key = kinds.key("sku_mismatch", "web", "SF-S0")
    raise_exception("sku_mismatch", key, "SF-S0 mapped by hand")
    other = raise_exception("sku_mismatch", kinds.key("sku_mismatch", "web", "SF-NOPE"), "unrelated")
    enqueue_all(topo)
    res = push.push_batch()
    assert res.skipped == 6 and res.pushed == 0
    assert ExceptionRecord.objects.get(dedupe_key=key).status == "resolved"
    other.refresh_from_db()
    assert other.status == "open"


def test_one_drain_per_connection_at_a_time_and_the_leaver_rekicks(topo, fake_storefront, task_trap, monkeypatch):
    """A second drain of a connection returns at once while one runs; rows that arrive after the running
    drain's last claim are picked up by a re-kick it sends after letting go of its lock (issue 20, item 1)."""
    from integration_hub.core.locks import exclusive
    from integration_hub.inventory import tasks

    sent = task_trap.calls(tasks.push_pending)
    enqueue_all(topo)
    rows = PendingPush.objects.count()
    conn_id = topo.storefront.pk
    assert tasks.push_pending() == {"connections": [conn_id]}  # no connection: fan out, one drain each
    assert sent.pop()["kwargs"]["connection_id"] == conn_id
    with exclusive(f"stock-drain-{conn_id}-all"):  # a drain of this connection runs elsewhere
        assert tasks.push_pending(connection_id=conn_id) == {"skipped": "a drain of this connection is running"}
        assert tasks.push_pending(connection_id=conn_id) == {"skipped": "a drain of this connection is running"}
        assert (
            tasks.push_pending(max_priority=ORDER, connection_id=conn_id)["claimed"] == 0
        )  # the urgent drain is its own
    assert PendingPush.objects.count() == rows and not fake_storefront.calls
    # in case the holder died: one delayed retry after the lock's lifetime, however many drains were skipped
    [retry] = sent
    assert retry["countdown"] == tasks.DRAIN_LOCK_SECONDS + 1 and retry["kwargs"]["connection_id"] == conn_id
    sent.clear()

    real = push.drain

    def drain_then_a_change_arrives(**kw):
        out = real(**kw)
        topo.stock("S1", "dc1", 50)  # committed after the drain's last claim; its own kick found the lock taken
        outbox.enqueue([topo.items["S1"].pk])
        return out

    monkeypatch.setattr(push, "drain", drain_then_a_change_arrives)
    out = tasks.push_pending(connection_id=conn_id)
    assert out["pushed"] == rows and out["more"] is False
    assert PendingPush.objects.exists() and sent[-1]["kwargs"]["connection_id"] == conn_id


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it in the worker runs (not an Exception the push could handle)."""


def test_write_that_landed_before_a_kill_is_never_skipped_later(topo, fake_storefront):
    """eu-web 00045504 (issue 20, item 2): the storefront took 19, the worker died before recording it, the
    target went back to the stale "confirmed" 0 — the hub must write 0, not skip on that old confirmation."""
    from integration_hub.inventory.models import StockLevel

    StockLevel.objects.filter(item=topo.items["S0"]).update(quantity=0)
    outbox.enqueue([topo.items["S0"].pk])
    push.push_batch()
    key = ("sc-web", "SF-S0")
    assert fake_storefront.quantities[key] == 0
    assert ChannelStock.objects.get(channel=topo.channels["web"], item=topo.items["S0"]).confirmed_quantity == 0

    StockLevel.objects.filter(item=topo.items["S0"]).update(quantity=20)  # web sells 19 (buffer 1)
    outbox.enqueue([topo.items["S0"].pk])

    def lands_then_dies(targets):
        for t in targets:
            fake_storefront.quantities[(t.channel_ref, t.sku)] = t.quantity  # the write lands ...
        raise _Killed()  # ... and the worker is killed before any answer is recorded

    fake_storefront.on_call = lands_then_dies
    with pytest.raises(_Killed):
        push.push_batch()
    assert fake_storefront.quantities[key] == 19
    cs = ChannelStock.objects.get(channel=topo.channels["web"], item=topo.items["S0"])
    assert cs.confirmed_quantity == 0 and cs.attempted_quantity == 19  # outcome unknown, and the hub knows it

    fake_storefront.on_call = None
    StockLevel.objects.filter(item=topo.items["S0"]).update(quantity=0)  # the target is back to the old "confirmed" 0
    PendingPush.objects.update(claimed_until=None, claim_token="")  # the dead worker's lease ran out
    outbox.enqueue([topo.items["S0"].pk])
    res = push.push_batch()
    assert fake_storefront.quantities[key] == 0, "skipped on a confirmation older than the last attempt"
    assert res.pushed >= 1
    cs.refresh_from_db()
    assert cs.confirmed_quantity == 0 and cs.attempted_quantity is None and cs.attempted_at is None
    outbox.enqueue([topo.items["S0"].pk])  # confirmed after the last attempt: now skipping is right
    assert push.push_batch().skipped == 2


@pytest.mark.django_db(transaction=True)
def test_lease_is_short_and_renewed_while_the_push_is_in_flight(topo, fake_storefront):
    """Issue 20, item 3: a live worker's slow push keeps its claim (renewed), a dead worker's rows are free
    again within the short lease."""
    import time

    assert push.LEASE_SECONDS <= 60
    outbox.enqueue([topo.items["S0"].pk])
    seen = {}

    def slow(targets):
        time.sleep(2.5)  # far past the 1 s lease
        seen["claimable"] = push._claimable(timezone.now(), None).count()
        seen["until"] = PendingPush.objects.values_list("claimed_until", flat=True).first()

    fake_storefront.on_call = slow
    res = push.push_batch(lease_seconds=1)
    assert seen["claimable"] == 0, "the lease ran out while the push was still in flight"
    assert seen["until"] > timezone.now() - timedelta(seconds=1)
    assert res.pushed == 2 and not PendingPush.objects.exists()
    # a worker that dies holds nothing for long: no renewal, the short lease ends
    outbox.enqueue([topo.items["S1"].pk])
    push.claim(lease_seconds=1)
    assert push._claimable(timezone.now(), None).count() == 0
    time.sleep(1.2)
    assert push._claimable(timezone.now(), None).count() == 2


def test_a_drain_that_pushed_takes_rows_committed_while_it_lingers(topo, fake_storefront):
    """Issue 19 item 3: a change committed just after the drain's last claim is pushed by that drain (it keeps
    looking for ``linger`` seconds), not left for the trailing kick, a Celery hop and a new drain."""
    enqueue_all(topo)
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        if len(polls) == 3:  # a webhook commits a change while the drain lingers
            topo.stock("S1", "dc1", 50)
            outbox.enqueue([topo.items["S1"].pk])

    totals, more = push.drain(linger=1.0, poll=0.1, sleep=sleep)
    assert not PendingPush.objects.exists() and more is False
    assert totals.claimed == 8 and len(fake_storefront.calls) == 2  # 6 rows, then S1 on both channels
    assert fake_storefront.quantities[("sc-b2b", "SF-S1")] == 50
    assert polls[:3] == [0.1] * 3 and len(polls) == 3 + 10  # then it lingered again: ten polls, nothing came


def test_a_drain_lets_go_at_once_without_linger_or_when_it_found_nothing(topo, fake_storefront):
    polls = []
    assert push.drain(linger=1.0, sleep=polls.append)[0].claimed == 0 and polls == []  # nothing to push: no linger
    enqueue_all(topo)
    assert push.drain(sleep=polls.append)[0].claimed == 6 and polls == []  # linger 0 (the default): no polls
    enqueue_all(topo, priority=ORDER)
    assert push.drain(linger=1.0, poll=0.25, time_budget=0, sleep=polls.append)[0].claimed == 6
    assert polls == []  # out of time: it returns (the task re-kicks if rows are ready) instead of lingering


def test_push_task_lingers_only_on_a_worker():
    """A drain task lingers on a worker; run inline (called directly, or eagerly inside a web request or a test)
    the caller would wait the linger out, so it does not. An explicit ``linger`` wins."""
    from types import SimpleNamespace

    from integration_hub.inventory import tasks

    worker = SimpleNamespace(called_directly=False, is_eager=False)
    assert tasks._linger(worker, None) == tasks.DRAIN_LINGER_SECONDS > 0
    assert tasks._linger(SimpleNamespace(called_directly=True, is_eager=False), None) == 0
    assert tasks._linger(SimpleNamespace(called_directly=False, is_eager=True), None) == 0
    assert (
        tasks._linger(worker, 0) == 0 and tasks._linger(SimpleNamespace(called_directly=True, is_eager=False), 2) == 2
    )


def test_push_task_passes_its_linger_to_the_drain(topo, fake_storefront, monkeypatch):
    from integration_hub.inventory import tasks

    seen = []
    real = push.drain
    monkeypatch.setattr(push, "drain", lambda **kw: seen.append(kw["linger"]) or real(**kw))
    enqueue_all(topo)
    tasks.push_pending(connection_id=topo.storefront.pk)  # inline: no linger
    tasks.push_pending.apply(kwargs={"connection_id": topo.storefront.pk, "linger": 0.5})
    assert seen == [0.0, 0.5]
