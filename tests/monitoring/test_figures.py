"""The hub's own figures: right values, and a fixed number of queries whatever the data size."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.core.models import Channel, Connection
from integration_hub.inventory.models import ChannelStock, PendingPush, StockLevel
from integration_hub.monitoring import figures, sampling
from integration_hub.monitoring.models import Sample
from integration_hub.orders.models import OrderState
from tests.support import factories as f
from tests.support import factories


def _exc(kind, key, severity="error", channel=None, status=Status.OPEN, first_seen=None, changed=None):
    now = timezone.now()
    return ExceptionRecord.objects.create(
        kind=kind,
        dedupe_key=key,
        title=key,
        severity=severity,
        channel=channel,
        status=status,
        first_seen=first_seen or now,
        last_seen=now,
        status_changed_at=changed,
    )


def test_push_queue_per_channel_and_total(w):
    other = Channel.objects.create(key="app", name="App", connection=w.storefront, external_id="app-sc")
    f.pushes(w, w.items)
    PendingPush.objects.create(channel=other, item=w.items[0])
    old = timezone.now() - timedelta(minutes=30)
    PendingPush.objects.filter(channel=w.channel, item=w.items[1]).update(created_at=old)
    v = figures.compute()
    assert v[("push_queue_depth", "web")] == 3
    assert v[("push_queue_depth", "app")] == 1
    assert v[("push_queue_depth", "")] == 4
    assert 1790 < v[("push_oldest_age_seconds", "web")] < 1810
    assert v[("push_oldest_age_seconds", "")] == v[("push_oldest_age_seconds", "web")]
    assert v[("push_oldest_age_seconds", "app")] < 60


def test_orders_past_their_agreed_times(w, settings):
    settings.HUB = {
        **settings.HUB,
        "ACK_TIMEOUT_MINUTES": 15,
        "DISPATCH_DUE_MINUTES": 60,
        "DISPATCH_NOTIFY_MINUTES": 30,
    }
    now = timezone.now()
    f.orders(w, 2, state=OrderState.SENT, sent_at=now - timedelta(minutes=20))  # late
    f.orders(w, 1, state=OrderState.SENT, start=10, sent_at=now - timedelta(minutes=5))  # in time
    f.orders(w, 3, state=OrderState.ACKNOWLEDGED, start=20, acknowledged_at=now - timedelta(minutes=61))
    f.orders(w, 1, state=OrderState.DISPATCHED, start=30, dispatch_received_at=now - timedelta(minutes=31))
    f.orders(w, 1, state=OrderState.DISPATCHED, start=40, dispatch_received_at=now - timedelta(minutes=1))
    v = figures.compute()
    assert v[("orders_unacknowledged", "")] == 2
    assert v[("orders_undispatched", "")] == 3
    assert v[("orders_unnotified", "")] == 1
    assert v[("orders_in_state", "sent")] == 3 and v[("orders_in_state", "held")] == 0


def test_exceptions_by_kind_severity_drift_and_hourly(w):
    _exc(Kind.STOCK_DRIFT, "d1", channel=w.channel)
    _exc(Kind.STOCK_DRIFT, "d2", channel=w.channel, severity="warning")
    _exc(Kind.SKU_MISMATCH, "s1", severity="warning")
    _exc(Kind.SKU_MISMATCH, "s2", status=Status.RESOLVED, changed=timezone.now())
    _exc(Kind.STUCK_ORDER, "o1", first_seen=timezone.now() - timedelta(hours=3))
    v = figures.compute()
    assert v[("exceptions_open", "")] == 4
    assert v[("exceptions_open", "stock_drift")] == 2
    assert v[("exceptions_open", "stock_drift:warning")] == 1
    assert v[("exceptions_open", "sku_mismatch")] == 1
    assert v[("exceptions_open", "bad_payload")] == 0
    assert v[("drift_pairs", "web")] == 2 and v[("drift_pairs", "")] == 2
    assert v[("exceptions_opened_1h", "")] == 4
    assert v[("exceptions_resolved_1h", "")] == 1
    assert figures.flow_of("exceptions_open", "sku_mismatch:warning") == "catalogue"
    # by severity whatever the kind (the shipped "Critical exceptions open" rule is over this)
    assert v[("exceptions_open_severity", "warning")] == 2 and v[("exceptions_open_severity", "error")] == 2
    assert v[("exceptions_open_severity", "critical")] == 0 and v[("exceptions_open_severity", "info")] == 0


def test_connection_failing(w):
    now = timezone.now()
    Connection.objects.filter(pk=w.master.pk).update(
        last_success_at=now - timedelta(minutes=40), last_error_at=now - timedelta(minutes=1)
    )
    Connection.objects.filter(pk=w.storefront.pk).update(last_success_at=now, last_error_at=now - timedelta(minutes=1))
    factories.connection(
        "inventory_planner", "ip", base_url="http://127.0.0.1:1/ip", last_error_at=now - timedelta(minutes=2)
    )
    v = figures.compute()
    assert v[("connection_failing", "wair")] == 1
    assert 39 < v[("connection_failing_minutes", "wair")] < 41
    assert v[("connection_failing", "ct")] == 0
    assert v[("planner_failing", "ip")] == 1
    # an old error with no traffic since is not "failing now"
    Connection.objects.filter(pk=w.master.pk).update(
        last_error_at=now - timedelta(hours=2), last_success_at=now - timedelta(hours=3)
    )
    assert figures.compute()[("connection_failing", "wair")] == 0


def test_propagation_lag_percentiles(w):
    now = timezone.now()
    f.stock(w, w.items, 5)
    f.channel_stock(w, w.items, observed=None, confirmed=5)
    lags = [2, 4, 60]
    for item, lag in zip(w.items, lags):
        StockLevel.objects.filter(item=item).update(updated_at=now - timedelta(seconds=100 + lag))
        ChannelStock.objects.filter(item=item).update(confirmed_at=now - timedelta(seconds=100))
    v = figures.compute()
    assert v[("propagation_lag_p50_seconds", "")] == 4
    assert v[("propagation_lag_p95_seconds", "")] == 60
    assert v[("propagation_lag_p95_seconds", "web")] == 60
    # confirmations long after any master change (a push for another reason) are not lag
    StockLevel.objects.update(updated_at=now - timedelta(hours=5))
    assert ("propagation_lag_p50_seconds", "") not in figures.compute()


def test_percentile_nearest_rank():
    assert figures.percentile([5], 95) == 5
    assert figures.percentile(list(range(1, 101)), 50) == 50
    assert figures.percentile(list(range(1, 101)), 95) == 95


def test_fixed_query_count_whatever_the_data(w):
    def count():
        with CaptureQueriesContext(connection) as ctx:
            figures.compute()
        return len(ctx.captured_queries)

    small = count()
    items = f.items(300)
    f.pushes(w, items)
    f.stock(w, items, 3)
    f.channel_stock(w, items, observed=None, confirmed=3)
    ChannelStock.objects.update(confirmed_at=timezone.now())
    f.orders(w, 50, sent_at=timezone.now() - timedelta(hours=2))
    for i in range(20):
        _exc(Kind.STOCK_DRIFT if i % 2 else Kind.SKU_MISMATCH, f"k{i}", channel=w.channel)
    for i in range(10):
        factories.connection("wair", f"c{i}", base_url="http://127.0.0.1:1/x")
    assert count() == small == figures.QUERIES


def test_sampling_keeps_a_bounded_series(w, settings):
    settings.HUB = {**settings.HUB, "MONITORING_RETENTION_DAYS": 1}
    f.pushes(w, w.items)
    old = timezone.now() - timedelta(days=2)
    Sample.objects.create(at=old, figure="push_queue_depth", key="", value=1)
    n = sampling.record(figures.compute())
    assert n > 0
    assert not Sample.objects.filter(at=old).exists()
    assert Sample.objects.get(figure="push_queue_depth", key="web").value == 3
    assert not Sample.objects.filter(figure="exceptions_open", key__contains=":").exists()
    s = sampling.series([("push_queue_depth", "")], since=timezone.now() - timedelta(hours=1))
    assert [v for _, v in s[("push_queue_depth", "")]] == [3]


# --- issue 20, item 9: a flash sale under faults shows on the dashboard -------------------------------------
def test_holds_piling_up_per_master(w, settings):
    from integration_hub.inventory.models import Reservation

    settings.HUB = {**settings.HUB, "MASTER_FEED_LAG_SECONDS": 120}
    now = timezone.now()
    Reservation.objects.bulk_create(
        [
            Reservation(
                item=w.items[0],
                channel=w.channel,
                order_ref="a",
                quantity=1,
                warehouse=w.master,
                acknowledged_at=now - timedelta(seconds=30),
            ),
            Reservation(
                item=w.items[1],
                channel=w.channel,
                order_ref="b",
                quantity=2,
                warehouse=w.master,
                acknowledged_at=now - timedelta(seconds=500),
            ),
            Reservation(
                item=w.items[2], channel=w.channel, order_ref="c", quantity=1
            ),  # not acknowledged: the hub's own hold
            Reservation(
                item=w.items[2],
                channel=w.channel,
                order_ref="d",
                quantity=1,
                warehouse=w.master,
                acknowledged_at=now - timedelta(hours=2),
                released_at=now,
            ),  # released
        ]
    )
    v = figures.compute(now=now)
    assert v[("holds_acknowledged", "wair")] == v[("holds_acknowledged", "")] == 2
    assert v[("holds_overdue", "wair")] == v[("holds_overdue", "")] == 1
    assert (
        499 <= v[("holds_oldest_age_seconds", "wair")] <= 501
        and v[("holds_oldest_age_seconds", "")] == v[("holds_oldest_age_seconds", "wair")]
    )


def test_dead_worker_and_intake_behind(w):
    from integration_hub.core.models import Heartbeat
    from integration_hub.orders.models import Order

    now = timezone.now()
    v = figures.compute(now=now)
    assert (
        v[("worker_heartbeat_age_seconds", "")] > 50 * 365 * 86400
    )  # no worker has ever run: absent is as old as it gets
    assert v[("leases_expired", "")] == 0 and v[("intake_oldest_seconds", "")] == 0
    Heartbeat.objects.create(name="worker", at=now - timedelta(seconds=200))
    Heartbeat.objects.create(name="other", at=now - timedelta(seconds=40))
    # a worker died holding two push rows and an order: its leases ran out, nobody renews them
    f.pushes(w, w.items)
    PendingPush.objects.filter(item__in=w.items[:2]).update(
        claim_token="dead", claimed_until=now - timedelta(seconds=5)
    )
    PendingPush.objects.filter(item=w.items[2]).update(claim_token="live", claimed_until=now + timedelta(seconds=20))
    sent = f.orders(w, 2, state=OrderState.SENT)
    Order.objects.filter(pk=sent[0].pk).update(claim_token="dead", next_attempt_at=now - timedelta(seconds=1))
    captured = f.orders(w, 2, state=OrderState.CAPTURED, start=10)
    Order.objects.filter(pk=captured[0].pk).update(created_at=now - timedelta(seconds=75))
    f.orders(w, 1, state=OrderState.HELD, start=20)  # held: waiting for a person, not intake
    Order.objects.filter(state=OrderState.HELD).update(created_at=now - timedelta(hours=3))
    v = figures.compute(now=now)
    assert 39 <= v[("worker_heartbeat_age_seconds", "")] <= 41
    assert v[("leases_expired", "")] == 3
    assert 74 <= v[("intake_oldest_seconds", "")] <= 76


def test_flash_sale_figures_have_shipped_alert_rules():
    from integration_hub.monitoring.defaults import DEFAULT_RULES

    figures_with_rules = {r["figure"] for r in DEFAULT_RULES}
    for name in (
        "holds_overdue",
        "leases_expired",
        "worker_heartbeat_age_seconds",
        "intake_oldest_seconds",
        "drift_pairs",
    ):
        assert name in figures.FIGURES and name in figures_with_rules, name


def test_flash_sale_conditions_reach_the_exception_queue_and_clear(w, settings):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.monitoring import watch

    settings.HUB = {**settings.HUB, "INTAKE_BEHIND_SECONDS": 120}
    bad = {
        ("worker_heartbeat_age_seconds", ""): 400.0,
        ("leases_expired", ""): 3.0,
        ("intake_oldest_seconds", ""): 300.0,
        ("holds_overdue", ""): 7.0,
    }
    assert all(watch.record(bad).values())
    open_keys = set(ExceptionRecord.objects.filter(status="open").values_list("dedupe_key", flat=True))
    assert open_keys == {
        "sync_timeout:hub:worker-heartbeat",
        "sync_timeout:hub:expired-leases",
        "stuck_order:hub:intake-behind",
        "stock_drift:hub:holds-overdue",
    }
    assert ExceptionRecord.objects.get(dedupe_key="sync_timeout:hub:worker-heartbeat").severity == "critical"
    watch.record(bad)  # still true: merged, not doubled
    assert ExceptionRecord.objects.count() == 4
    assert not any(
        watch.record(
            {
                **bad,
                ("worker_heartbeat_age_seconds", ""): 20.0,
                ("leases_expired", ""): 0.0,
                ("intake_oldest_seconds", ""): 5.0,
                ("holds_overdue", ""): 0.0,
            }
        ).values()
    )
    assert not ExceptionRecord.objects.filter(status="open").exists()
    watch.record(
        {("worker_heartbeat_age_seconds", ""): 55 * 365 * 86400.0}
    )  # never seen: the dashboard's, not a record
    assert not ExceptionRecord.objects.filter(status="open").exists()
