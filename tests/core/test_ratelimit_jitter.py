"""The shared limiter against the storefront's own bucket when requests reach it late (issue 19, item 5).

The hub's bucket paces when requests *leave*; the server counts them when they *arrive*, after a delay that
varies (processes waiting for a CPU on a loaded host, the network). A request held up arrives bunched with the
ones after it. Replayed here without a clock: the hub's bucket at 95% of a 50 req/s / burst-10 limit (the
connection settings the benches and most deployments use) emits a backlog; each request is delayed by up to
``delay``; the sandbox's bucket (what the benches and tests count 429s with) takes them in arrival order.
"""

from __future__ import annotations

import random

import pytest

from connectors import ratelimit
from connectors.sandbox import server as sandbox_server

LIMIT, LIMIT_BURST = 50.0, 10
RATE, BURST = LIMIT * 0.95, int(LIMIT_BURST * 0.95)  # the connection: 47.5 req/s, burst 9


def _send_times(burst: int, n: int = 300) -> list[float]:
    """When the hub's bucket lets ``n`` requests out, all wanted at once from a full bucket (a backlog)."""
    tokens, ts, out = float(burst), 0.0, []
    for _ in range(n):
        tokens, ts, wait = ratelimit._reserve(0.0, tokens, ts, RATE, burst)
        out.append(wait)
    return out


def _refused(arrivals: list[float], monkeypatch) -> int:
    clock = {"now": 0.0}
    monkeypatch.setattr(sandbox_server.time, "monotonic", lambda: clock["now"])
    bucket = sandbox_server.Bucket()
    refused = 0
    for t in sorted(arrivals):
        clock["now"] = t
        refused += bucket.take(LIMIT, LIMIT_BURST) > 0
    return refused


def _late(sent: list[float], delay: float, stall_at: float) -> list[float]:
    """Arrival times when the way to the server stalls for ``delay`` seconds from ``stall_at`` (the server's
    process or the sender's waits for a CPU): what was sent meanwhile arrives together when it ends — the worst
    bunching a delay of up to ``delay`` can cause."""
    return [max(t, stall_at + delay) if stall_at <= t < stall_at + delay else t for t in sent]


def test_requests_arriving_up_to_the_jitter_late_draw_no_429(monkeypatch):
    burst = ratelimit.usable_burst(RATE, BURST)
    assert 1 <= burst < BURST
    sent = _send_times(burst)
    delay = 0.9 * ratelimit.JITTER_SECONDS
    for k in range(100):  # a stall starting at the burst, or anywhere in the first two seconds after it
        assert _refused(_late(sent, delay, k * 0.02), monkeypatch) == 0, k
    rnd = random.Random(7)  # and every request late by its own random amount
    assert _refused([t + rnd.uniform(0, delay) for t in sent], monkeypatch) == 0
    # sustained, the rate is the connection's: 300 requests take (300 - burst) / 47.5 s
    assert sent[-1] == pytest.approx((len(sent) - burst) / RATE)


def test_spending_the_whole_configured_burst_draws_429s_from_the_same_delays(monkeypatch):
    """Why the bucket keeps the jitter back: with the configured burst the same stall draws 429s."""
    sent = _send_times(BURST)
    assert _refused(_late(sent, 0.9 * ratelimit.JITTER_SECONDS, 0.0), monkeypatch) > 0
    assert _refused(sent, monkeypatch) == 0  # on time, even the full burst fits


def test_usable_burst():
    assert ratelimit.usable_burst(47.5, 9) == 5  # 4.75 requests' worth of 0.1 s held back, whole requests
    assert ratelimit.usable_burst(5, 2) == 2  # half a request's worth: nothing held back
    assert ratelimit.usable_burst(20, 2) == ratelimit.usable_burst(50, 1) == 1  # never below one request


def test_bucket_for_bursts_the_usable_burst(settings, tmp_path):
    settings.REDIS_URL = ""
    ratelimit._redis_client = None
    settings.VAR_DIR = tmp_path
    bucket = ratelimit.bucket_for("conn:jitter", RATE, BURST)
    waits = [bucket.reserve() for _ in range(6)]
    assert waits[:5] == [0.0] * 5 and waits[5] > 0  # five at once (not nine), then paced
