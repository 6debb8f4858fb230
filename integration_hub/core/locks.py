"""Named locks that hold across worker processes: "only one worker does this at a time".

With ``REDIS_URL`` the lock is a key in the shared cache (every worker on every host sees it; it expires
after ``timeout`` seconds if its holder dies). Without Redis (the embedded size: one host, the cache is
per process) it is an exclusive ``flock`` on a file under ``HUB_VAR_DIR/locks``, which every process on
the host sees and the kernel releases when the holder dies. When Redis is configured but unreachable the
lock falls back to that host-wide file lock (logged), so a Redis outage degrades exclusivity to one host
instead of failing the caller.

:func:`cache_add` is ``cache.add`` for best-effort guards (e.g. "at most one nudge per second") that
must never turn a cache outage into an error of the request that called them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from django.conf import settings

log = logging.getLogger(__name__)


# A polling/sweeping job's lock: renewed while its holder runs, so a SIGKILLed worker frees it within this many
# seconds and the next beat (or catch-up) run goes ahead instead of skipping for minutes.
POLL_LOCK_SECONDS = 30


def _cache_errors() -> tuple:
    errors: tuple = (OSError, ConnectionError, TimeoutError)
    try:
        import redis

        errors += (redis.exceptions.RedisError,)
    except ImportError:  # redis is pinned; only a stripped environment lacks it
        pass
    return errors


def cache_add(key: str, value, timeout: float, *, unavailable: bool) -> bool:
    """``cache.add(key, value, timeout)``; when the cache server cannot be reached, log it and return
    ``unavailable`` (what the caller should assume: True = go ahead, False = skip)."""
    from django.core.cache import cache

    try:
        return bool(cache.add(key, value, timeout=timeout))
    except _cache_errors() as exc:
        log.warning("cache unreachable for %s (%s); assuming %s", key, exc, "go-ahead" if unavailable else "skip")
        return unavailable


def _lock_path(name: str):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    directory = settings.VAR_DIR / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{safe}.lock"


@contextlib.contextmanager
def exclusive(name: str, timeout: int = 300, renew: bool = False):
    """``with exclusive("stock-poll:3") as got:`` — ``got`` is False when another holder has it (the
    caller skips its work); never blocks.

    ``renew``: the Redis key is kept alive by this holder (touched every third of ``timeout``) for as long as
    the block runs, so ``timeout`` can be short: a holder that dies (a SIGKILLed worker) frees the lock within
    ``timeout`` seconds, however long live holders work."""
    if getattr(settings, "REDIS_URL", ""):
        from django.core.cache import cache

        key = f"hub:lock:{name}"
        try:
            got = cache.add(key, os.getpid(), timeout=timeout)
        except _cache_errors() as exc:
            log.warning("lock %s: cache unreachable (%s); using this host's file lock", name, exc)
        else:
            stop = threading.Event()
            keeper = None
            if got and renew:

                def keep_alive():
                    while not stop.wait(max(timeout / 3, 0.5)):
                        try:
                            cache.touch(key, timeout)
                        except _cache_errors():  # it expires after ``timeout``; the holder carries on
                            pass

                keeper = threading.Thread(target=keep_alive, name=f"lock-{name}", daemon=True)
                keeper.start()
            try:
                yield got
            finally:
                stop.set()
                if keeper is not None:
                    keeper.join(timeout=5)
                if got:
                    try:
                        cache.delete(key)
                    except _cache_errors():  # it expires after ``timeout``
                        pass
            return
    import fcntl

    fd = os.open(_lock_path(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
