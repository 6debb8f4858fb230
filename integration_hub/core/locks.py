"""Named locks that hold across worker processes: "only one worker does this at a time".

With ``REDIS_URL`` the lock is a key in the shared cache (every worker on every host sees it; it expires
after ``timeout`` seconds if its holder dies). Without Redis (the embedded size: one host, the cache is
per process) it is an exclusive ``flock`` on a file under ``HUB_VAR_DIR/locks``, which every process on
the host sees and the kernel releases when the holder dies.
"""
from __future__ import annotations

import contextlib
import os

from django.conf import settings


def _lock_path(name: str):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    directory = settings.VAR_DIR / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{safe}.lock"


@contextlib.contextmanager
def exclusive(name: str, timeout: int = 300):
    """``with exclusive("stock-poll:3") as got:`` — ``got`` is False when another holder has it (the
    caller skips its work); never blocks."""
    if getattr(settings, "REDIS_URL", ""):
        from django.core.cache import cache

        key = f"hub:lock:{name}"
        got = cache.add(key, os.getpid(), timeout=timeout)
        try:
            yield got
        finally:
            if got:
                cache.delete(key)
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
