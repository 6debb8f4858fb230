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
        self._last_write = time.monotonic()  # start() has just written the row

    def finish(self, error: str = "") -> None:
        now = timezone.now()
        total = self.row.total if self.row.total is not None else self.row.done
        TaskProgress.objects.filter(key=self.row.key).update(
            done=self.row.done, total=total, finished_at=now, updated_at=now, error=error[:300]
        )

    def advance(self, n: int = 1, total: int | None = None, force: bool = False) -> None:
        self.row.done += n
        if total is not None:
            self.row.total = total
        now = time.monotonic()
        if force or now - self._last_write >= MIN_INTERVAL:
            self._last_write = now
            TaskProgress.objects.filter(key=self.row.key).update(
                done=self.row.done, total=self.row.total, updated_at=timezone.now()
            )


def start(key: str, label: str, total: int | None = None) -> Tracker:
    """For loops that cannot sit in a ``with``: ``p = start(...)``, ``p.advance()``, ``p.finish()``.

    One query: an upsert on ``key`` (INSERT … ON CONFLICT DO UPDATE, no savepoint), so a bar costs the work it
    tracks two queries (start, finish) plus its throttled advances; the tracker then writes by ``key``."""
    now = timezone.now()
    fields = {
        "label": label[:200],
        "done": 0,
        "total": total,
        "started_at": now,
        "updated_at": now,
        "finished_at": None,
        "error": "",
    }
    row = TaskProgress(key=key, **fields)
    TaskProgress.objects.bulk_create([row], update_conflicts=True, unique_fields=["key"], update_fields=list(fields))
    return Tracker(row)


@contextlib.contextmanager
def track(key: str, label: str, total: int | None = None):
    tracker = start(key, label, total)
    try:
        yield tracker
    except BaseException as exc:
        tracker.finish(error=str(exc) or type(exc).__name__)
        raise
    tracker.finish()


def current(now=None) -> list[TaskProgress]:
    """Running work and work finished in the last few minutes (1 query)."""
    from datetime import timedelta

    from django.db.models import Q

    now = now or timezone.now()
    # a running row not updated for an hour belongs to a worker that died: not shown
    return list(
        TaskProgress.objects.filter(
            Q(finished_at__isnull=True, updated_at__gte=now - timedelta(hours=1))
            | Q(finished_at__gte=now - timedelta(seconds=SHOW_FINISHED_FOR))
        ).order_by("-started_at")[:10]
    )
