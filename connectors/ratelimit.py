"""Token-bucket rate limiting shared by every worker of a connection.

With REDIS_URL set the bucket lives in Redis (one Lua script, atomic across processes and hosts, timed
by the Redis server's clock — ``TIME`` — so workers whose clocks disagree still share one rate).
Otherwise, in a configured Django process, it lives in a small file under HUB_VAR_DIR guarded by
``flock``, so the prefork children of the embedded worker (and the web process) share one bucket per
connection on this host. Outside Django (plain scripts) it lives in process memory.

Every bucket can also be blocked: when one worker gets a 429 with Retry-After, the client calls
``block``, and every worker's next ``reserve`` waits that out too instead of spending requests the
server will refuse; after the block requests resume at the rate, spaced (no burst).

A bucket bursts a little less than the connection's configured burst (:func:`usable_burst`): it keeps
``JITTER_SECONDS`` of the rate back, so requests that reach the server late, bunched with the ones after them,
still fit in the server's bucket instead of drawing a 429.

When Redis is unreachable the Redis bucket falls back to the host's bucket (file, else memory) instead of
failing the request: each host then keeps the rate on its own (a deployment of N hosts may briefly send
up to N times the rate; a 429 still blocks that host). The fallback is logged once when it starts and once
when Redis answers again, Redis is retried every ``REDIS_RETRY_SECONDS``, and :func:`fallback_status`
tells the worker heartbeat (and so the dashboard) that the shared limit is not in force.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
REDIS_RETRY_SECONDS = 5.0

# State per bucket: ``tokens`` and ``ts``, the time from which tokens refill. A block (429 Retry-After)
# empties the bucket and moves ``ts`` to the end of the block, so after it requests resume at the rate,
# spaced, instead of every waiting worker firing at once; while ``ts`` is in the future each reserve
# waits until then plus its place in the queue.
_LUA_RESERVE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end  -- Redis < 5: TIME before writes
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
tokens = tokens - 1
local wait = math.max(0, ts - now)
if tokens < 0 then wait = wait + (-tokens) / rate end
redis.call('HSET', key, 'tokens', tokens, 'ts', ts)
redis.call('EXPIRE', key, math.ceil(math.max(0, ts - now) + burst / rate) + 60)
return tostring(wait)
"""

_LUA_BLOCK = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local seconds = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
redis.call('HSET', key, 'tokens', math.min(tokens, 0), 'ts', math.max(ts, now + seconds))
redis.call('EXPIRE', key, math.ceil(math.max(ts, now + seconds) - now + burst / rate) + 60)
return 'ok'
"""


def _reserve(now: float, tokens: float, ts: float, rate: float, burst: int) -> tuple[float, float, float]:
    """(tokens, ts, wait) after taking one token at ``now``."""
    if now > ts:
        tokens, ts = min(burst, tokens + (now - ts) * rate), now
    tokens -= 1
    wait = max(0.0, ts - now) + (-tokens / rate if tokens < 0 else 0.0)
    return tokens, ts, wait


def _block(now: float, tokens: float, ts: float, rate: float, burst: int, seconds: float) -> tuple[float, float]:
    """(tokens, ts) after the server refused us for ``seconds``: nothing refills until then, no burst after."""
    if now > ts:
        tokens, ts = min(burst, tokens + (now - ts) * rate), now
    return min(tokens, 0.0), max(ts, now + max(0.0, seconds))


class LocalBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = max(rate, 0.001), max(burst, 1)
        self.tokens, self.ts = float(self.burst), time.monotonic()
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; return how long the caller must sleep before using it."""
        with self.lock:
            self.tokens, self.ts, wait = _reserve(time.monotonic(), self.tokens, self.ts, self.rate, self.burst)
            return wait

    def block(self, seconds: float) -> None:
        """Nobody takes a token for ``seconds`` (the server said Retry-After)."""
        with self.lock:
            self.tokens, self.ts = _block(time.monotonic(), self.tokens, self.ts, self.rate, self.burst, seconds)


class FileBucket:
    """Token bucket shared by the processes of one host: state in a file, updated under an exclusive flock
    (wall-clock seconds: every process on the host shares the clock)."""

    def __init__(self, path, rate: float, burst: int):
        self.path, self.rate, self.burst = str(path), max(rate, 0.001), max(burst, 1)

    def _update(self, fn) -> float:
        import fcntl
        import os

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 64, 0).decode(errors="ignore").split()
            now = time.time()
            try:
                tokens, ts = float(raw[0]), float(raw[1])
            except (IndexError, ValueError):
                tokens, ts = float(self.burst), now
            tokens, ts, result = fn(now, tokens, ts)
            os.pwrite(fd, f"{tokens:.6f} {ts:.6f}".ljust(64).encode(), 0)
            return result
        finally:
            os.close(fd)  # closing releases the lock

    def reserve(self) -> float:
        return self._update(lambda now, tokens, ts: _reserve(now, tokens, ts, self.rate, self.burst))

    def block(self, seconds: float) -> None:
        self._update(lambda now, tokens, ts: (*_block(now, tokens, ts, self.rate, self.burst, seconds), 0.0))


# Redis unreachable: since when (wall clock), why, and when to try it again (monotonic). Per process.
_fallback: dict = {"since": None, "reason": "", "retry_at": 0.0}
_fallback_lock = threading.Lock()


def _flag_path():
    directory = _file_dir()
    return directory / "redis-fallback.json" if directory is not None else None


def fallback_status() -> dict | None:
    """``{"since": epoch seconds, "reason": str}`` while this process — or another process of this host
    (a flag file under HUB_VAR_DIR, so the heartbeat task sees its sibling worker processes) — limits
    without Redis, else None."""
    import json

    with _fallback_lock:
        if _fallback["since"] is not None:
            return {"since": _fallback["since"], "reason": _fallback["reason"]}
    path = _flag_path()
    try:
        data = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "since" in data else None


def _write_flag(data: dict | None) -> None:
    import json

    path = _flag_path()
    if path is None:
        return
    try:
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps(data))
    except OSError:  # the flag is informative only
        pass


def _redis_down(exc: Exception) -> None:
    with _fallback_lock:
        first = _fallback["since"] is None
        if first:
            _fallback["since"] = time.time()
        _fallback["reason"] = f"{type(exc).__name__}: {exc}"[:300]
        _fallback["retry_at"] = time.monotonic() + REDIS_RETRY_SECONDS
        data = {"since": _fallback["since"], "reason": _fallback["reason"]}
    if first:
        log.warning("rate limiter: Redis unreachable (%s); limiting per host until it answers again", exc)
        _write_flag(data)


def _redis_up() -> None:
    with _fallback_lock:
        was = _fallback["since"]
        _fallback.update(since=None, reason="", retry_at=0.0)
    if was is not None:
        _write_flag(None)
        log.warning("rate limiter: Redis answers again after %.0f s; the shared limit is back", time.time() - was)


def _redis_errors() -> tuple:
    import redis

    return (redis.exceptions.RedisError, OSError)


class RedisBucket:
    """The shared bucket; ``fallback`` (the host's bucket) takes over while Redis cannot be reached."""

    def __init__(self, client, key: str, rate: float, burst: int, fallback=None):
        self.client, self.key, self.rate, self.burst = client, key, max(rate, 0.001), max(burst, 1)
        self.script = client.register_script(_LUA_RESERVE)
        self.block_script = client.register_script(_LUA_BLOCK)
        self.fallback = fallback or LocalBucket(rate, burst)

    def _shared(self, call, local):
        with _fallback_lock:
            skip = _fallback["since"] is not None and time.monotonic() < _fallback["retry_at"]
        if skip:
            return local()
        try:
            result = call()
        except _redis_errors() as exc:
            _redis_down(exc)
            return local()
        _redis_up()
        return result

    def reserve(self) -> float:
        return self._shared(
            lambda: float(self.script(keys=[self.key], args=[self.rate, self.burst])), self.fallback.reserve
        )

    def block(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.fallback.block(seconds)  # also locally: it is this host that was refused
        self._shared(lambda: self.block_script(keys=[self.key], args=[self.rate, self.burst, seconds]), lambda: None)


_local: dict[tuple, LocalBucket] = {}
_local_lock = threading.Lock()
_redis_client = None


def _redis():
    global _redis_client
    from django.conf import settings

    if not settings.configured:
        return None
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    if _redis_client is None:
        import redis

        # short timeouts: a Redis host that stops answering must not hang every request behind it
        _redis_client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    return _redis_client


def _file_dir():
    try:
        from django.conf import settings

        if settings.configured:
            path = settings.VAR_DIR / "ratelimit"
            path.mkdir(parents=True, exist_ok=True)
            return path
    except Exception:  # not in a Django process
        return None
    return None


# Requests leave on time but reach the server's bucket late by varying amounts (the client's and the server's
# processes waiting for a CPU, the network), so one held up arrives together with the ones after it. A client that
# spends its whole configured burst leaves the server nothing but the difference of the two bursts for that — one
# request at a connection set to 95% of a 50/10 limit, ~20 ms of delay — and a loaded host draws 429s (each then
# blocks the connection for the Retry-After: issue 19, bench/scaleout.py). So the bucket keeps JITTER_SECONDS of
# the rate out of the configured burst (whole requests, at least one left): requests held up by up to that long
# still fit in the server's bucket. Sustained throughput is the configured rate either way.
JITTER_SECONDS = 0.1


def usable_burst(rate: float, burst: int) -> int:
    """The burst the bucket lets out: ``burst`` less ``JITTER_SECONDS`` worth of ``rate``, at least 1."""
    return max(1, int(burst) - int(max(0.0, rate) * JITTER_SECONDS))


def bucket_for(name: str, rate: float, burst: int):
    """The shared bucket of ``name`` at ``rate`` requests/s, bursting :func:`usable_burst` requests."""
    burst = usable_burst(rate, burst)
    client = _redis()
    if client is not None:
        return RedisBucket(client, f"hub:ratelimit:{name}", rate, burst, fallback=_host_bucket(name, rate, burst))
    return _host_bucket(name, rate, burst)


def _host_bucket(name: str, rate: float, burst: int):
    directory = _file_dir()
    if directory is not None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return FileBucket(directory / f"{safe}-{rate:g}-{burst}.bucket", rate, burst)
    key = (name, rate, burst)
    with _local_lock:
        if key not in _local:
            _local[key] = LocalBucket(rate, burst)
        return _local[key]


LATE_RETURNS = 3  # turns a caller who woke up late may hand back before it goes anyway


def acquire(bucket, sleep=time.sleep, clock=time.monotonic) -> float:
    """Take a turn from ``bucket`` and sleep until it comes; returns the seconds waited. A caller that wakes up
    more than ``JITTER_SECONDS`` after its turn (its process waited that long for a CPU) lets the turn go unused
    and takes a new one — sent now, its request would reach the server bunched with the ones sent on time after
    it — at most ``LATE_RETURNS`` times."""
    waited = 0.0
    for _ in range(LATE_RETURNS + 1):
        asked = clock()  # the turn is due ``wait`` after the bucket answered, at the earliest after we asked
        wait = bucket.reserve()
        due = asked + wait
        if wait > 0:
            sleep(wait)
        waited += wait
        if clock() - due <= JITTER_SECONDS:
            break
    return waited
