"""Token-bucket rate limiting shared by every worker of a connection.

With REDIS_URL set the bucket lives in Redis (one Lua script, atomic across processes and hosts, timed
by the Redis server's clock — ``TIME`` — so workers whose clocks disagree still share one rate).
Otherwise, in a configured Django process, it lives in a small file under HUB_VAR_DIR guarded by
``flock``, so the prefork children of the embedded worker (and the web process) share one bucket per
connection on this host. Outside Django (plain scripts) it lives in process memory.

Every bucket also keeps a shared "blocked until": when one worker gets a 429 with Retry-After, the
client calls :meth:`block`, and every worker's next :meth:`reserve` waits that out too instead of
spending requests the server will refuse.
"""
from __future__ import annotations

import threading
import time

_LUA_RESERVE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end  -- Redis < 5: TIME before writes
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'ts', 'blocked')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local blocked = tonumber(state[3]) or 0
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
  tokens = tokens - 1
end
if blocked > now then wait = math.max(wait, blocked - now) end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', key, math.ceil(math.max(burst / rate, blocked - now)) + 60)
return tostring(wait)
"""

_LUA_BLOCK = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local seconds = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('HGET', key, 'blocked')) or 0
if now + seconds > blocked then
  redis.call('HSET', key, 'blocked', now + seconds)
  local ttl = redis.call('TTL', key)
  if ttl < seconds + 60 then redis.call('EXPIRE', key, math.ceil(seconds) + 60) end
end
return tostring(math.max(blocked, now + seconds) - now)
"""


class LocalBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = max(rate, 0.001), max(burst, 1)
        self.tokens, self.ts = float(self.burst), time.monotonic()
        self.blocked_until = 0.0
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; return how long the caller must sleep before using it."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.ts) * self.rate)
            self.ts = now
            self.tokens -= 1
            wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
            return max(wait, self.blocked_until - now)

    def block(self, seconds: float) -> None:
        """Nobody takes a token for ``seconds`` (the server said Retry-After)."""
        with self.lock:
            self.blocked_until = max(self.blocked_until, time.monotonic() + max(0.0, seconds))


class FileBucket:
    """Token bucket shared by the processes of one host: state in a file, updated under an exclusive flock.
    The file holds ``tokens ts blocked_until`` (wall-clock seconds: every process on the host shares it)."""

    def __init__(self, path, rate: float, burst: int):
        self.path, self.rate, self.burst = str(path), max(rate, 0.001), max(burst, 1)

    def _update(self, fn) -> float:
        import fcntl
        import os

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 96, 0).decode(errors="ignore").split()
            now = time.time()
            try:
                tokens, ts = float(raw[0]), float(raw[1])
            except (IndexError, ValueError):
                tokens, ts = float(self.burst), now
            try:
                blocked = float(raw[2])
            except (IndexError, ValueError):
                blocked = 0.0
            tokens, ts, blocked, result = fn(now, tokens, ts, blocked)
            os.pwrite(fd, f"{tokens:.6f} {ts:.6f} {blocked:.6f}".ljust(96).encode(), 0)
            return result
        finally:
            os.close(fd)  # closing releases the lock

    def reserve(self) -> float:
        def take(now, tokens, ts, blocked):
            tokens = min(self.burst, tokens + max(0.0, now - ts) * self.rate) - 1
            wait = 0.0 if tokens >= 0 else -tokens / self.rate
            return tokens, now, blocked, max(wait, blocked - now)

        return self._update(take)

    def block(self, seconds: float) -> None:
        self._update(lambda now, tokens, ts, blocked: (tokens, ts, max(blocked, now + max(0.0, seconds)), 0.0))


class RedisBucket:
    def __init__(self, client, key: str, rate: float, burst: int):
        self.client, self.key, self.rate, self.burst = client, key, max(rate, 0.001), max(burst, 1)
        self.script = client.register_script(_LUA_RESERVE)
        self.block_script = client.register_script(_LUA_BLOCK)

    def reserve(self) -> float:
        return float(self.script(keys=[self.key], args=[self.rate, self.burst]))

    def block(self, seconds: float) -> None:
        self.block_script(keys=[self.key], args=[max(0.0, float(seconds))])


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
