"""Progress of long work, written by the task doing it and shown on the dashboard as a bar.

    with progress.track("resync:wair", "Full stock resync from wair", total=n) as p:
        for chunk in chunks:
            ...
            p.advance(len(chunk))      # one UPDATE, at most every MIN_INTERVAL seconds

The row says queued/running/done/failed on its own: ``finished_at`` and ``error`` are set on exit.
"""
from __future__ import annotations

import contextlib
import time

from django.utils import timezone

from .models import TaskProgress

MIN_INTERVAL = 1.0  # seconds between progress writes
SHOW_FINISHED_FOR = 600  # seconds a finished bar stays on the dashboard


class Tracker:
    def __init__(self, row: TaskProgress):
        self.row = row
        self._last_write = 0.0

    def advance(self, n: int = 1, total: int | None = None, force: bool = False) -> None:
        self.row.done += n
        if total is not None:
            self.row.total = total
        now = time.monotonic()
        if force or now - self._last_write >= MIN_INTERVAL:
            self._last_write = now
            TaskProgress.objects.filter(pk=self.row.pk).update(done=self.row.done, total=self.row.total,
                                                               updated_at=timezone.now())


@contextlib.contextmanager
def track(key: str, label: str, total: int | None = None):
    now = timezone.now()
    row, _ = TaskProgress.objects.update_or_create(key=key, defaults={
        "label": label[:200], "done": 0, "total": total, "started_at": now, "updated_at": now,
        "finished_at": None, "error": ""})
    tracker = Tracker(row)
    try:
        yield tracker
    except BaseException as exc:
        TaskProgress.objects.filter(pk=row.pk).update(done=row.done, finished_at=timezone.now(), updated_at=timezone.now(),
                                                      error=(str(exc) or type(exc).__name__)[:300])
        raise
    TaskProgress.objects.filter(pk=row.pk).update(done=row.done, total=row.total if row.total is not None else row.done,
                                                  finished_at=timezone.now(), updated_at=timezone.now())


def current(now=None) -> list[TaskProgress]:
    """Running work and work finished in the last few minutes (1 query)."""
    from datetime import timedelta

    from django.db.models import Q

    now = now or timezone.now()
    return list(TaskProgress.objects.filter(Q(finished_at__isnull=True) |
                                            Q(finished_at__gte=now - timedelta(seconds=SHOW_FINISHED_FOR)))
                .order_by("-started_at")[:10])
