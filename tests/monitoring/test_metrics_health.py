"""Prometheus endpoint behind a bearer token, /healthz, /readyz, JSON log lines, optional Sentry."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from integration_hub.monitoring import logs, sentry
from tests.support import factories as f

pytestmark = pytest.mark.django_db


def test_metrics_endpoint_does_not_exist_without_a_token(client, settings):
    settings.HUB = {**settings.HUB, "METRICS_TOKEN": ""}
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_need_the_bearer_token(client, settings):
    settings.HUB = {**settings.HUB, "METRICS_TOKEN": "t0ken"}
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="t0ken").status_code == 401


def test_metrics_carry_the_figures_and_counters(client, settings):
    from integration_hub.core.tasks import heartbeat

    settings.HUB = {**settings.HUB, "METRICS_TOKEN": "t0ken"}
    w = f.console_world()
    f.pushes(w, w.items)
    client.get("/healthz")
    heartbeat.apply()  # counted by the task_postrun signal
    resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/plain")
    text = resp.content.decode()
    assert 'hub_push_queue_depth{key="web"} 3.0' in text
    assert 'hub_push_queue_depth{key=""} 3.0' in text
    assert 'hub_orders_unacknowledged{key=""} 0.0' in text
    assert 'hub_connection_failing{key="wair"} 0.0' in text
    assert 'hub_http_requests_total{method="GET",status="200",view="monitoring:healthz"}' in text
    assert 'hub_celery_tasks_total{state="success",task="core.heartbeat"}' in text
    assert "hub_http_request_duration_seconds_bucket" in text


def test_probes_and_the_scrape_are_not_redirected_to_https(client, settings):
    """The production path redirects plain http to https; kubelet/load-balancer probes and Prometheus reach
    the app server directly over http, so those three answer where they are asked (found probing waitress)."""
    settings.SECURE_SSL_REDIRECT = True  # as with debug off (the suite runs with HUB_SECURE_SSL_REDIRECT=false)
    settings.HUB = {**settings.HUB, "METRICS_TOKEN": "t0ken"}
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").status_code == 200
    assert client.get("/metrics").status_code == 401
    for url in ("/", "/dashboard/", "/api/orders/", "/healthz/x", "/xhealthz", "/metrics/"):
        r = client.get(url)
        assert r.status_code == 301 and r["Location"].startswith("https://"), url


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_readyz_ok(client, settings):
    settings.REDIS_URL = ""
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.content
    assert resp.json()["checks"] == {"database": "ok", "broker": "ok", "redis": "not configured"}


def test_readyz_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["redis"] == "unreachable" and resp.json()["checks"]["database"] == "ok"


def test_readyz_503_when_the_broker_is_unreachable(client, monkeypatch):
    from integration_hub.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:9/0")
    monkeypatch.setattr(app.conf, "broker_write_url", "redis://127.0.0.1:9/0")
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json()["checks"]["broker"] == "unreachable"


def test_json_log_lines():
    fmt = logs.JsonFormatter()
    rec = logging.LogRecord("hub.test", logging.WARNING, __file__, 1, "queue at %s", (42,), None)
    rec.channel = "web"
    line = json.loads(fmt.format(rec))
    assert line["level"] == "WARNING" and line["logger"] == "hub.test" and line["message"] == "queue at 42"
    assert line["channel"] == "web" and line["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("hub.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(fmt.format(rec))["exception"]


def test_json_logging_is_chosen_by_env():
    import subprocess

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            ("import django, logging; django.setup(); logging.getLogger('hub.x').warning('hello %s', 1)"),
        ],
        env={
            **__import__('os').environ,
            "HUB_LOG_FORMAT": "json",
            "DJANGO_SETTINGS_MODULE": "integration_hub.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("{")]
    assert lines and json.loads(lines[-1])["message"] == "hello 1", out.stderr[-2000:]


def test_sentry_only_with_dsn_and_package(monkeypatch, caplog):
    assert sentry.init_from_env({}) is False
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # not installed
    with caplog.at_level(logging.WARNING):
        assert sentry.init_from_env({"SENTRY_DSN": "https://k@sentry.example.com/1"}) is False
    assert "sentry-sdk is not installed" in caplog.text

    calls = []

    class FakeSdk:
        @staticmethod
        def init(**kw):
            calls.append(kw)

    monkeypatch.setitem(sys.modules, "sentry_sdk", FakeSdk)
    assert sentry.init_from_env({"SENTRY_DSN": "https://k@sentry.example.com/1"}) is True
    assert calls[0]["dsn"] == "https://k@sentry.example.com/1" and calls[0]["send_default_pii"] is False
    # sentry-sdk ignores Django's sensitive_variables: frames must go without their locals (webhook secrets)
    assert calls[0]["include_local_variables"] is False


def test_metrics_cost_a_fixed_number_of_queries(client, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integration_hub.monitoring import rules
    from tests.monitoring.conftest import make_rule

    settings.HUB = {**settings.HUB, "METRICS_TOKEN": "t0ken"}
    w = f.console_world()

    def scrape():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").status_code == 200
        return len(ctx.captured_queries)

    small = scrape()
    f.pushes(w, f.items(200))
    for i in range(5):
        make_rule(name=f"r{i}", key="*", threshold=0)
    rules.evaluate({("push_queue_depth", "web"): 200.0, ("push_queue_depth", "app"): 3.0})
    assert scrape() == small <= 9  # figures.QUERIES (7, one for issue 20's holds/liveness) + counters


def _settings_in_a_fresh_process(env: dict, expr: str) -> str:
    import os
    import subprocess

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; print(repr(({expr},)))",
        ],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "integration_hub.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_smtp_settings_come_from_the_environment():
    expr = "settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL"
    # (a 1-tuple of the expression for one value, the tuple itself for several)
    assert (
        _settings_in_a_fresh_process({"HUB_SMTP_HOST": ""}, "settings.EMAIL_BACKEND")
        == "('django.core.mail.backends.console.EmailBackend',)"
    )
    assert (
        _settings_in_a_fresh_process({"HUB_SMTP_HOST": "smtp.example.com", "HUB_SMTP_PORT": "2525"}, expr)
        == "('django.core.mail.backends.smtp.EmailBackend', 'smtp.example.com', 2525, True, False)"
    )
    assert _settings_in_a_fresh_process({"HUB_SMTP_HOST": "smtp.example.com", "HUB_SMTP_SSL": "true"}, expr).endswith(
        "False, True)"
    )
