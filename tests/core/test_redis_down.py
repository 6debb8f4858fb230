"""Redis down (issue 20, item 7): what was committed is answered 200, the rate limiter falls back to the
host's bucket and says so. Redis is "down" by pointing REDIS_URL / the cache at a port nobody listens on."""

from __future__ import annotations

import json
import logging
import socket

import pytest


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now: connections are refused at once
    return port


def _take_redis_down(settings, tmp_path) -> str:
    from connectors import ratelimit

    url = f"redis://127.0.0.1:{_closed_port()}/1"
    settings.REDIS_URL = url
    settings.VAR_DIR = tmp_path
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    ratelimit._redis_client = None
    ratelimit._fallback.update(since=None, reason="", retry_at=0.0)
    return url


@pytest.fixture
def redis_down(settings, tmp_path):
    from connectors import ratelimit

    yield lambda: _take_redis_down(settings, tmp_path)
    ratelimit._redis_client = None
    ratelimit._fallback.update(since=None, reason="", retry_at=0.0)


def test_rate_limiter_falls_back_to_a_host_bucket_and_says_so(redis_down, caplog, db):
    from connectors import ratelimit
    from integration_hub.core.models import Heartbeat
    from integration_hub.core.tasks import heartbeat

    redis_down()
    bucket = ratelimit.bucket_for("conn:down", rate=5, burst=2)
    assert isinstance(bucket, ratelimit.RedisBucket)
    with caplog.at_level(logging.WARNING, logger="connectors.ratelimit"):
        waits = [bucket.reserve() for _ in range(4)]
        bucket.block(1.0)  # a 429 while Redis is down still holds this host back
        after_block = bucket.reserve()
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0.1 and waits[3] > waits[2]  # still limited, by the host bucket
    assert after_block >= 1.0
    assert sum("Redis unreachable" in r.getMessage() for r in caplog.records) == 1  # said once, not per request
    assert ratelimit.fallback_status()["reason"]
    heartbeat("worker")
    assert "rate limiter without Redis" in Heartbeat.objects.get(name="worker").detail["degraded"]


def test_rate_limiter_flag_is_seen_by_sibling_processes_and_cleared_on_recovery(redis_down, monkeypatch):
    from connectors import ratelimit

    redis_down()
    bucket = ratelimit.bucket_for("conn:down2", rate=50, burst=5)
    bucket.reserve()
    # another worker process of this host (no in-process state) still sees the flag
    monkeypatch.setattr(ratelimit, "_fallback", {"since": None, "reason": "", "retry_at": 0.0})
    assert ratelimit.fallback_status() is not None
    # Redis answers again (here: the script runs) → shared limiting resumes and the flag goes
    monkeypatch.setattr(ratelimit, "_fallback", {"since": 1.0, "reason": "x", "retry_at": 0.0})
    bucket.script = lambda keys, args: "0"
    assert bucket.reserve() == 0.0
    assert ratelimit.fallback_status() is None


@pytest.mark.django_db(transaction=True)
def test_order_webhook_answers_200_for_what_it_committed_while_redis_is_down(sandbox, redis_down, client, task_trap):
    from integration_hub.orders import tasks
    from integration_hub.orders.models import Order
    from tests.support.factories import sandbox_order_world
    from tests.support.sandbox import control

    sent = task_trap.calls(tasks.process)
    # the webhook is a hint: the worker re-reads the order from the storefront (run here, in-process, so the
    # read and the capture also happen while Redis is down)
    task_trap.run_in_place(tasks.fetch_orders)
    ct, _wh, _channel = sandbox_order_world(sandbox)
    redis_down()  # cache, token cache and rate limiter all unreachable from here on
    [oid] = control(
        sandbox,
        "commercetools",
        "create_orders",
        {
            "orders": [
                {
                    "channel": "uk-web",
                    "order_number": "RD1",
                    "lines": [{"sku": "SKU-1", "quantity": 1}],
                    "shipping_method": "standard",
                }
            ]
        },
    )["ids"]
    order = sandbox.emulators["commercetools"].orders[oid]
    message = {
        "notificationType": "Message",
        "projectKey": "demo",
        "id": "m-1",
        "version": 1,
        "sequenceNumber": 1,
        "resource": {"typeId": "order", "id": oid},
        "resourceVersion": order["version"],
        "type": "OrderCreated",
        "order": order,
        "createdAt": order["lastModifiedAt"],
        "lastModifiedAt": order["lastModifiedAt"],
    }
    r = client.post(
        f"/hooks/orders/{ct.name}/",
        data=json.dumps(message),
        content_type="application/json",
        HTTP_AUTHORIZATION="ct-hook-secret",
    )
    assert r.status_code == 200, r.content
    assert Order.objects.filter(external_id=oid).count() == 1
    assert sent, "the worker is still nudged (the one-per-second guard is skipped, not the nudge)"
