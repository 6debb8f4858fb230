"""The shared limiter against the storefront's own bucket when requests reach it late (issue 19, item 5).

The hub's bucket paces when requests *leave*; the server counts them when they *arrive*, after a delay that
varies (processes waiting for a CPU on a loaded host, the network). A request held up arrives bunched with the
ones after it. Replayed here without a clock: the hub's bucket at 95% of a 50 req/s / burst-10 limit (the
connection settings the benches and most deployments use) emits a backlog; each request is delayed by up to
``delay``; the sandbox's bucket (what the benches and tests count 429s with) takes them in arrival order.
"""

from __future__ import annotations

import random
import time

import pytest

from connectors import errors, ratelimit
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


class _Bucket:
    def __init__(self, waits):
        self.waits, self.taken = list(waits), 0

    def reserve(self):
        self.taken += 1
        return self.waits.pop(0)


def test_a_caller_that_wakes_up_late_hands_its_turn_back_and_takes_a_new_one():
    clock = {"now": 0.0}
    oversleep = [0.3, 0.0]  # the first sleep ends 0.3 s after the turn (the process waited for a CPU)

    def sleep(seconds):
        clock["now"] += seconds + oversleep.pop(0)

    bucket = _Bucket([0.5, 0.2])
    assert ratelimit.acquire(bucket, sleep, clock=lambda: clock["now"]) == pytest.approx(0.7)
    assert bucket.taken == 2 and clock["now"] == pytest.approx(1.0)
    on_time = _Bucket([0.5])
    assert ratelimit.acquire(on_time, lambda s: clock.update(now=clock["now"] + s + 0.05), lambda: clock["now"]) == 0.5
    assert on_time.taken == 1  # 50 ms late is within the jitter the bucket keeps back: the turn is used


def test_a_caller_always_late_goes_after_a_few_turns():
    clock = {"now": 0.0}
    bucket = _Bucket([0.1] * 10)
    ratelimit.acquire(bucket, lambda s: clock.update(now=clock["now"] + s + 1.0), lambda: clock["now"])
    assert bucket.taken == ratelimit.LATE_RETURNS + 1


def test_the_client_has_its_token_before_it_takes_its_turn():
    """A token look-up or fetch between the turn and the request would make the request late."""
    from connectors.http import Auth, HttpClient

    order = []

    class Recording(Auth):
        def apply(self, client, headers):
            order.append("token")
            raise errors.PermanentError("token endpoint refused us")  # stop before any request is sent

    c = HttpClient("x", "http://127.0.0.1:9", auth=Recording(), bucket_name=f"token-first-{time.time()}")
    c.bucket = type("B", (), {"reserve": lambda self: order.append("turn") or 0.0})()
    with pytest.raises(errors.PermanentError):
        c.get("/anything", retries=0)
    assert order == ["token"]  # refused at the token: no turn taken, nothing sent


def test_a_turn_whose_answer_came_back_late_counts_as_late():
    """The bucket's answer can reach a caller late too (its process waited for a CPU): the turn is reckoned from
    when it was asked for, so a request sent that late is not sent on it."""
    clock = {"now": 0.0}

    class Slow(_Bucket):
        def reserve(self):
            clock["now"] += 0.3 if self.taken == 0 else 0.0  # the first answer arrives 0.3 s after the question
            return super().reserve()

    bucket = Slow([0.0, 0.0])
    ratelimit.acquire(bucket, lambda s: clock.update(now=clock["now"] + s), lambda: clock["now"])
    assert bucket.taken == 2
