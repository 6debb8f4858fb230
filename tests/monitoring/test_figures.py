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
from tests.console import factories as f


def _exc(kind, key, severity="error", channel=None, status=Status.OPEN, first_seen=None, changed=None):
    now = timezone.now()
    return ExceptionRecord.objects.create(kind=kind, dedupe_key=key, title=key, severity=severity, channel=channel,
                                          status=status, first_seen=first_seen or now, last_seen=now,
                                          status_changed_at=changed)


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
    settings.HUB = {**settings.HUB, "ACK_TIMEOUT_MINUTES": 15, "DISPATCH_DUE_MINUTES": 60, "DISPATCH_NOTIFY_MINUTES": 30}
    now = timezone.now()
    f.orders(w, 2, state=OrderState.SENT, sent_at=now - timedelta(minutes=20))           # late
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
    Connection.objects.filter(pk=w.master.pk).update(last_success_at=now - timedelta(minutes=40),
                                                     last_error_at=now - timedelta(minutes=1))
    Connection.objects.filter(pk=w.storefront.pk).update(last_success_at=now, last_error_at=now - timedelta(minutes=1))
    Connection.objects.create(name="ip", system_type="inventory_planner", base_url="http://127.0.0.1:1/ip",
                              last_error_at=now - timedelta(minutes=2))
    v = figures.compute()
    assert v[("connection_failing", "wair")] == 1
    assert 39 < v[("connection_failing_minutes", "wair")] < 41
    assert v[("connection_failing", "ct")] == 0
    assert v[("planner_failing", "ip")] == 1
    # an old error with no traffic since is not "failing now"
    Connection.objects.filter(pk=w.master.pk).update(last_error_at=now - timedelta(hours=2), last_success_at=now - timedelta(hours=3))
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
        Connection.objects.create(name=f"c{i}", system_type="wair", base_url="http://127.0.0.1:1/x")
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
