"""The shared client layer over real HTTP: retries, back-off, Retry-After, OAuth cache, error taxonomy."""

from __future__ import annotations

import time

import pytest

from connectors import errors
from connectors.http import HttpClient, OAuthClientCredentials, parse_retry_after
from connectors.sandbox.server import Emulator, Response, SandboxServer, route


class EchoEmulator(Emulator):
    prefix = "echo"
    exempt_patterns = (r"^/oauth/token$",)

    def reset(self):
        self.tokens_issued = 0
        self.valid_token = "tok-1"
        self.revoked = False

    @route("POST", r"/oauth/token")
    def token(self, req):
        if req.header("Authorization") != "Basic Y2xpZW50OnNlY3JldA==":  # client:secret
            return Response(401, {"error": "invalid_client"})
        self.tokens_issued += 1
        self.valid_token = f"tok-{self.tokens_issued}"
        return Response(200, {"access_token": self.valid_token, "expires_in": 3600, "token_type": "Bearer"})

    @route("GET", r"/things/(?P<id>\d+)")
    def thing(self, req):
        if req.header("Authorization") not in ("", f"Bearer {self.valid_token}"):
            return Response(401, {"error": "invalid_token"})
        return Response(200, {"id": int(req.params["id"])})

    @route("POST", r"/things")
    def create(self, req):
        data = req.json()
        if not data or "name" not in data:
            return Response(400, {"message": "name is required"})
        return Response(201, data)

    @route("GET", r"/quota")
    def quota(self, req):
        return Response(429, {"message": "hourly quota used"}, {"Retry-After": "3600"})

    @route("PUT", r"/versioned")
    def versioned(self, req):
        return Response(409, {"statusCode": 409, "errors": [{"code": "ConcurrentModification", "currentVersion": 7}]})


@pytest.fixture(scope="module")
def echo_server():
    server = SandboxServer([EchoEmulator()], port=0)
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo(echo_server):
    emulator = echo_server.emulators["echo"]
    emulator.reset_all()
    return echo_server


def client(url, **kw):
    kw.setdefault("backoff_base", 0.01)
    return HttpClient("echo", url + "/echo", rate_per_second=1000, burst=1000, bucket_name=f"test-{time.time()}", **kw)


def test_success_and_pooled_session(echo):
    c1, c2 = client(echo.url), client(echo.url)
    assert c1.get("/things/5").json() == {"id": 5}
    assert c1.session is c2.session  # one pooled session per API root


def test_5xx_is_retried_then_succeeds(echo):
    echo.emulators["echo"].faults.fail_next = [503, 502]
    c = client(echo.url)
    assert c.get("/things/1").json() == {"id": 1}
    assert c.stats.retries == 2 and c.stats.server_errors == 2


def test_retries_end(echo):
    echo.emulators["echo"].faults.fail_next = [503] * 10
    c = client(echo.url, max_retries=2)
    with pytest.raises(errors.RetryableError):
        c.get("/things/1")
    assert c.stats.requests == 3


def test_429_honours_retry_after(echo):
    echo.emulators["echo"].faults.fail_next = [429]  # the sandbox answers Retry-After: 1
    slept = []
    c = client(echo.url, sleep=lambda s: slept.append(s))
    assert c.get("/things/2").json() == {"id": 2}
    assert c.stats.rate_limited == 1
    assert max(slept) >= 1.0


def test_real_rate_limit_429_then_recovers(echo):
    em = echo.emulators["echo"]
    em.faults.rate_limit_per_second, em.faults.rate_limit_burst = 50, 1
    c = client(echo.url, max_retries=8)
    for i in range(5):
        assert c.get(f"/things/{i}").status_code == 200
    assert em.stats.rate_limited >= 1
    assert c.stats.rate_limited == em.stats.rate_limited


def test_timeout_is_retryable_and_classified(echo):
    em = echo.emulators["echo"]
    em.faults.timeout_rate, em.faults.hang_seconds = 1.0, 1.0
    c = client(echo.url, timeout=0.2, max_retries=1)
    with pytest.raises(errors.TimeoutError_):
        c.get("/things/1")
    assert c.stats.timeouts == 2


def test_error_taxonomy(echo):
    c = client(echo.url)
    with pytest.raises(errors.BadDataError) as bad:
        c.post("/things", json={})
    # the remote's body stays on the error (connectors, admins), never in the message ops read
    assert (
        bad.value.status == 400 and "name is required" in bad.value.detail and "name is required" not in str(bad.value)
    )
    with pytest.raises(errors.NotFoundError):
        c.get("/nothing")
    with pytest.raises(errors.ConflictError) as conflict:
        c.put("/versioned", json={})
    assert conflict.value.current_version == 7
    assert c.stats.requests == 3  # none of these is retried


def test_oauth_token_cached_and_refreshed_on_401(echo, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "oauth-test"}
    }
    from django.core.cache import cache

    cache.clear()
    auth = OAuthClientCredentials(echo.url + "/echo/oauth/token", "client", "secret")
    c = client(echo.url, auth=auth)
    for i in range(3):
        c.get(f"/things/{i}")
    em = echo.emulators["echo"]
    assert em.tokens_issued == 1
    em.valid_token = "rotated"  # server revokes the cached token
    c.get("/things/9")
    assert em.tokens_issued == 2


def test_oauth_bad_credentials_is_permanent(echo):
    from django.core.cache import cache

    cache.clear()
    auth = OAuthClientCredentials(echo.url + "/echo/oauth/token", "client", "wrong")
    with pytest.raises(errors.PermanentError):
        client(echo.url, auth=auth).get("/things/1")


def test_backoff_is_jittered_and_capped():
    c = HttpClient("x", "http://127.0.0.1:9", backoff_base=1, backoff_cap=5)
    delays = [c.backoff(10) for _ in range(50)]
    assert all(0 <= d <= 5 for d in delays) and len(set(delays)) > 1
    assert c.backoff(0, retry_after=3) >= 3


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_file_bucket_is_shared_across_processes(tmp_path):
    """Two processes taking tokens from one file bucket together stay within its rate."""
    import multiprocessing

    from connectors.ratelimit import FileBucket, acquire

    path = tmp_path / "b.bucket"

    def take(n):
        bucket = FileBucket(path, rate=50, burst=5)
        for _ in range(n):
            acquire(bucket)

    start = time.time()
    procs = [multiprocessing.get_context("fork").Process(target=take, args=(30,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    elapsed = time.time() - start
    # 60 tokens at 50/s with a burst of 5 need at least (60 - 5) / 50 = 1.1 s; two private buckets would take 0.5 s
    assert elapsed >= 1.0, elapsed
    assert all(p.exitcode == 0 for p in procs)


def test_bucket_choice(settings, tmp_path):
    from connectors import ratelimit

    settings.REDIS_URL = ""
    ratelimit._redis_client = None
    settings.VAR_DIR = tmp_path
    assert isinstance(ratelimit.bucket_for("conn:1", 10, 10), ratelimit.FileBucket)


# --- the shared limiter: Redis (as on CI) and the shared 429 block ---------------------------------
def _redis_or_skip():
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    return client


def _take_from_redis(key, n):
    import redis

    from connectors.ratelimit import RedisBucket, acquire

    bucket = RedisBucket(redis.Redis(host="127.0.0.1", port=6379), key, rate=50, burst=5)
    for _ in range(n):
        acquire(bucket)


def test_redis_bucket_is_shared_across_processes():
    """Two processes taking tokens from one Redis bucket together stay within its rate."""
    import multiprocessing

    client = _redis_or_skip()
    key = f"hub:ratelimit:test-shared-{time.time()}"
    start = time.time()
    procs = [multiprocessing.get_context("fork").Process(target=_take_from_redis, args=(key, 30)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    elapsed = time.time() - start
    client.delete(key)
    assert all(p.exitcode == 0 for p in procs)
    # 60 tokens at 50/s with a burst of 5 need at least (60 - 5) / 50 = 1.1 s; two private buckets would take 0.5 s
    assert elapsed >= 1.0, elapsed


def test_redis_bucket_runs_on_the_server_clock(monkeypatch):
    """A worker whose clock is 100 s behind must not see a 100 s wait (or a free refill when ahead)."""
    import redis

    from connectors import ratelimit

    client = _redis_or_skip()
    key = f"hub:ratelimit:test-clock-{time.time()}"
    a = ratelimit.RedisBucket(redis.Redis(host="127.0.0.1", port=6379), key, rate=10, burst=2)
    assert a.reserve() == 0.0
    real = time.time
    monkeypatch.setattr(ratelimit.time, "time", lambda: real() - 100)  # the other host's clock is off
    b = ratelimit.RedisBucket(redis.Redis(host="127.0.0.1", port=6379), key, rate=10, burst=2)
    assert b.reserve() == 0.0  # the second token of the burst
    assert 0.0 < b.reserve() <= 0.11  # then the shared rate applies, no more
    monkeypatch.setattr(ratelimit.time, "time", lambda: real() + 100)
    assert 0.1 <= a.reserve() <= 0.21  # a clock ahead does not refill the bucket either
    client.delete(key)


@pytest.mark.parametrize("kind", ["file", "redis", "local"])
def test_block_is_seen_by_every_holder_of_the_bucket(kind, tmp_path):
    from connectors import ratelimit

    if kind == "redis":
        import redis

        _redis_or_skip()
        key = f"hub:ratelimit:test-block-{time.time()}"
        one, two = (
            ratelimit.RedisBucket(redis.Redis(host="127.0.0.1", port=6379), key, rate=20, burst=20) for _ in range(2)
        )
    elif kind == "file":
        one, two = (ratelimit.FileBucket(tmp_path / "x.bucket", rate=20, burst=20) for _ in range(2))
    else:
        one = two = ratelimit.LocalBucket(rate=20, burst=20)
    assert two.reserve() == 0.0
    one.block(2.0)  # worker one got a 429 with Retry-After: 2
    first = two.reserve()
    assert 1.5 < first <= 2.1  # worker two waits it out too
    one.block(0.5)  # a shorter block does not shorten the longer one
    waits = [two.reserve() for _ in range(5)]
    assert all(1.4 < w <= 2.4 for w in waits)
    # after the block requests resume at the rate (one per 50 ms), one after another — not all at once
    assert all(b - a >= 0.03 for a, b in zip([first] + waits, waits))


def test_429_blocks_the_connection_for_every_worker(echo, settings, tmp_path):
    """Worker A is refused with 429 Retry-After: 1; worker B (another client on the same connection's
    bucket — another process in production) waits the second out before its next request."""
    settings.REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    name = f"conn-test-{time.time()}"
    a_slept, b_slept = [], []
    a = HttpClient(
        "echo",
        echo.url + "/echo",
        rate_per_second=1000,
        burst=1000,
        bucket_name=name,
        max_retries=0,
        sleep=a_slept.append,
    )
    b = HttpClient("echo", echo.url + "/echo", rate_per_second=1000, burst=1000, bucket_name=name, sleep=b_slept.append)
    echo.emulators["echo"].faults.fail_next = [429]  # the sandbox answers Retry-After: 1
    with pytest.raises(errors.RateLimitedError):
        a.get("/things/1")
    assert b.get("/things/2").status_code == 200
    assert b_slept and 0.8 <= b_slept[0] <= 1.05, b_slept


def test_a_long_retry_after_is_handed_to_the_caller_not_slept_by_every_worker(echo, settings, tmp_path):
    """A quota-style 429 (Retry-After: 3600) is not slept inside the request: the caller gets the error with
    its retry_after (its outbox row or next attempt backs off), and the shared block that makes the other
    workers of the connection wait is capped at backoff_cap."""
    settings.REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    name = f"conn-quota-{time.time()}"
    a_slept, b_slept = [], []
    a = HttpClient(
        "echo",
        echo.url + "/echo",
        rate_per_second=1000,
        burst=1000,
        bucket_name=name,
        max_retries=5,
        backoff_cap=2.0,
        sleep=a_slept.append,
    )
    b = HttpClient(
        "echo",
        echo.url + "/echo",
        rate_per_second=1000,
        burst=1000,
        bucket_name=name,
        backoff_cap=2.0,
        sleep=b_slept.append,
    )
    with pytest.raises(errors.RateLimitedError) as caught:
        a.get("/quota")
    assert caught.value.retry_after == 3600
    assert a.stats.requests == 1 and not any(s > 2.0 for s in a_slept), a_slept  # no retry, no hour-long sleep
    assert b.get("/things/2").status_code == 200
    assert b_slept and 1.5 <= b_slept[0] <= 2.05, b_slept  # the others wait the capped block only
