"""The live dashboard fragment: tiles coloured by open firings, charts from samples, progress bars; fixed
query count; what each role sees; no inline script (CSP-ready)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from integration_hub.monitoring import progress, rules
from integration_hub.monitoring.models import Sample
from tests.support import factories as f

from .conftest import make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_chart_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _samples(n_minutes: int):
    now = timezone.now()
    rows = []
    for m in range(n_minutes):
        at = now - timedelta(minutes=m)
        rows += [
            Sample(at=at, figure="push_queue_depth", key="", value=m % 7),
            Sample(at=at, figure="propagation_lag_p50_seconds", key="", value=1.5),
            Sample(at=at, figure="propagation_lag_p95_seconds", key="", value=9),
            Sample(at=at, figure="orders_in_state", key="sent", value=3),
            Sample(at=at, figure="exceptions_opened_1h", key="", value=2),
            Sample(at=at, figure="exceptions_resolved_1h", key="", value=1),
        ]
    Sample.objects.bulk_create(rows)


def count(client, url):
    from django.core.cache import cache
    from django.db import connection

    cache.clear()  # count the charts' own query, not a shared rendering
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
    assert resp.status_code == 200
    return len(ctx.captured_queries)


def test_fragment_query_count_is_fixed(role_client):
    client = role_client("ops")
    _samples(5)
    small = {r: count(client, f"/monitoring/live/?range={r}") for r in ("hour", "day", "week")}
    _samples(300)
    for i in range(10):
        make_rule(name=f"r{i}", threshold=0)
    rules.evaluate({("push_queue_depth", ""): 5.0})
    with progress.track("resync:wair", "Full resync", total=10) as p:
        p.advance(3, force=True)
        big = {r: count(client, f"/monitoring/live/?range={r}") for r in ("hour", "day", "week")}
    assert big == small
    assert max(big.values()) <= 8  # session + user + permissions, tiles, charts, progress


def test_tiles_go_red_and_back_by_the_rules(role_client):
    client = role_client("ops")
    make_rule(name="queue", threshold=10, severity="error")
    make_rule(name="skus", figure="exceptions_open", key="sku_mismatch", threshold=0, severity="warning")
    html = client.get("/monitoring/live/").content.decode()
    assert re.search(r'data-testid="tile-stock" data-colour="green"', html)
    rules.evaluate({("push_queue_depth", ""): 50.0, ("exceptions_open", "sku_mismatch"): 2.0})
    html = client.get("/monitoring/live/").content.decode()
    assert 'data-testid="tile-stock" data-colour="red"' in html
    assert 'data-testid="tile-catalogue" data-colour="amber"' in html
    assert 'data-testid="tile-orders" data-colour="green"' in html
    assert "Stock push queue depth = 50" in html
    rules.evaluate({("push_queue_depth", ""): 1.0, ("exceptions_open", "sku_mismatch"): 0.0})
    html = client.get("/monitoring/live/").content.decode()
    assert 'data-testid="tile-stock" data-colour="green"' in html
    assert 'data-testid="tile-catalogue" data-colour="green"' in html


def test_charts_are_svg_without_script_and_ranges(role_client):
    client = role_client("ops")
    _samples(30)
    html = client.get("/monitoring/live/?range=day").content.decode()
    for slug in ("queue", "lag", "orders", "exceptions"):
        assert f'data-testid="chart-{slug}"' in html
    assert html.count("<svg") == 5  # queue, lag, orders, holds/leases/intake (issue 20), exceptions
    assert "<script" not in html  # no inline script anywhere in the fragment
    assert 'class="active">last day<' in html
    assert "every " in html and 'hx-get="/monitoring/live/?range=day"' in html
    # nonsense range → the hour, not an error
    assert client.get("/monitoring/live/?range=<x>").status_code == 200


def test_progress_bar_fed_by_the_task():
    with progress.track("report:7", "Finance report", total=200) as p:
        p.advance(50, force=True)
        (row,) = progress.current()
        assert (row.done, row.total, row.percent, row.finished_at) == (50, 200, 25, None)
        p.advance(150, force=True)
    (row,) = progress.current()
    assert row.finished_at is not None and row.percent == 100
    with pytest.raises(RuntimeError), progress.track("resync:x", "Resync", total=5):
        raise RuntimeError("master down")
    failed = next(r for r in progress.current() if r.key == "resync:x")
    assert failed.error == "master down" and failed.finished_at


def test_progress_shown_on_fragment(role_client):
    client = role_client("ops")
    with progress.track("requeue:1", "Bulk re-queue", total=4) as p:
        p.advance(1, force=True)
        html = client.get("/monitoring/live/").content.decode()
    assert 'data-testid="progress-requeue:1"' in html and '<progress max="4" value="1">' in html


def test_roles(role_client, client, make_user):
    w = f.console_world()
    f.pushes(w, w.items)
    make_rule(threshold=0)
    rules.evaluate({("push_queue_depth", ""): 3.0})
    _samples(3)
    cx = role_client("cx")
    html = cx.get("/monitoring/live/").content.decode()
    assert 'data-testid="tile-orders"' in html and 'data-testid="tile-stock"' not in html  # no stock for cx
    assert 'chart-orders' in html and 'chart-queue' not in html
    client.logout()
    client.force_login(make_user("finance"))
    assert client.get("/monitoring/live/").status_code == 403
    client.logout()
    assert client.get("/monitoring/live/").status_code == 302  # to the login page


def test_console_dashboard_includes_the_live_part(role_client):
    html = role_client("ops").get("/dashboard/").content.decode()
    assert 'hx-get="/monitoring/live/?range=hour"' in html and 'hx-trigger="load"' in html
    assert "django_htmx/htmx-2.min.js" in html and "monitoring/monitoring.css" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a static file


def test_long_series_are_thinned_to_their_worst_values():
    from integration_hub.monitoring.dashboard import thin

    pts = [(i, i % 10) for i in range(1000)]
    out = thin(pts, 100)
    assert len(out) == 100 and all(v == 9 for _, v in out)
    assert thin(pts[:50], 100) == pts[:50]


def test_charts_are_rendered_once_for_every_viewer_within_the_cache_window(role_client):
    client = role_client("ops")
    _samples(3)
    first = count(client, "/monitoring/live/")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get("/monitoring/live/")
    assert len(ctx.captured_queries) == first - 1  # the samples query is skipped
