"""Short leases renewed while the work is in flight (issue 20).

A worker claims rows with a short lease (``claimed_until`` on stock pushes, ``next_attempt_at`` on
orders) and, while it waits on a remote system, :class:`LeaseKeeper` renews that lease every third of its
length in a thread with its own database connection. A slow call never loses its claim; a killed worker
stops renewing, so its rows are due again within one short lease instead of a long one. A renewal that
fails (a busy database) is logged and retried on the next tick — the lease still runs meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)


class LeaseKeeper:
    """``with LeaseKeeper(renew, seconds):`` calls ``renew(new_lease_end)`` every ``seconds / 3`` until
    the block ends. ``renew`` extends only rows still under this worker's lease."""

    def __init__(self, renew: Callable[[datetime], object], lease_seconds: float, what: str = "lease"):
        self.renew, self.seconds, self.what = renew, float(lease_seconds), what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"renew-{what}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _run(self):
        try:
            while not self._stop.wait(max(0.2, self.seconds / 3)):
                try:
                    self.renew(timezone.now() + timedelta(seconds=self.seconds))
                except Exception as exc:  # noqa: BLE001 — retried next tick; the lease still runs meanwhile
                    log.warning("could not renew the %s: %s", self.what, exc)
        finally:
            connection.close()  # this thread's own connection
