"""Token-bucket rate limiting shared by every worker of a connection.

With REDIS_URL set the bucket lives in Redis (one Lua script, atomic across processes and hosts, timed
by the Redis server's clock — ``TIME`` — so workers whose clocks disagree still share one rate).
Otherwise, in a configured Django process, it lives in a small file under HUB_VAR_DIR guarded by
``flock``, so the prefork children of the embedded worker (and the web process) share one bucket per
connection on this host. Outside Django (plain scripts) it lives in process memory.

Every bucket can also be blocked: when one worker gets a 429 with Retry-After, the client calls
``block``, and every worker's next ``reserve`` waits that out too instead of spending requests the
server will refuse; after the block requests resume at the rate, spaced (no burst).
"""
from __future__ import annotations

import threading
import time

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


class RedisBucket:
    def __init__(self, client, key: str, rate: float, burst: int):
        self.client, self.key, self.rate, self.burst = client, key, max(rate, 0.001), max(burst, 1)
        self.script = client.register_script(_LUA_RESERVE)
        self.block_script = client.register_script(_LUA_BLOCK)

    def reserve(self) -> float:
        return float(self.script(keys=[self.key], args=[self.rate, self.burst]))

    def block(self, seconds: float) -> None:
        self.block_script(keys=[self.key], args=[self.rate, self.burst, max(0.0, float(seconds))])


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

        _redis_client = redis.Redis.from_url(url)
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


def bucket_for(name: str, rate: float, burst: int):
    client = _redis()
    if client is not None:
        return RedisBucket(client, f"hub:ratelimit:{name}", rate, burst)
    directory = _file_dir()
    if directory is not None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return FileBucket(directory / f"{safe}-{rate:g}-{burst}.bucket", rate, burst)
    key = (name, rate, burst)
    with _local_lock:
        if key not in _local:
            _local[key] = LocalBucket(rate, burst)
        return _local[key]


def acquire(bucket, sleep=time.sleep) -> float:
    wait = bucket.reserve()
    if wait > 0:
        sleep(wait)
    return wait
