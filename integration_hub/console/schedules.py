"""Beat schedules for admins: in words ("every day at 02:00 UTC") with the next run time, bulk enable /
disable (audited), and "Run now" recorded as a :class:`~.models.ScheduleRun` whose state the worker fills in.

Next run times are computed with Celery's own schedule classes (``celery.schedules.crontab.remaining_estimate``
in the crontab's time zone, the interval from the last run), i.e. what django-celery-beat's scheduler uses.

A run launched here gets a task id starting ``hubrun-``: the worker-side signal handlers
(:func:`on_task_prerun`, :func:`on_task_postrun`) touch the database only for such ids, so the thousands of
ordinary tasks a day cost nothing extra.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)

RUN_PREFIX = "hubrun-"
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PERIOD_WORDS = {"days": "day", "hours": "hour", "minutes": "minute", "seconds": "second", "microseconds": "microsecond"}


# --- in words ----------------------------------------------------------------------------------------------------
def _num(v: str) -> bool:
    return v.isdigit()


def _days(dow: str) -> str | None:
    """'1' → 'Monday', '1-5' → 'Monday to Friday', '1,3' → 'Monday and Wednesday' (cron: 0 or 7 = Sunday)."""

    def name(x):
        return DAYS[int(x) % 7] if x.isdigit() else (x.capitalize() if x.isalpha() else None)

    if "-" in dow and "," not in dow:
        a, b = dow.split("-", 1)
        return f"{name(a)} to {name(b)}" if name(a) and name(b) else None
    parts = [name(x) for x in dow.split(",")]
    if not all(parts):
        return None
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe_cron(minute: str, hour: str, dom: str, month: str, dow: str, tz: str = "UTC") -> str:
    """A crontab in words. Common shapes are spelled out; anything else falls back to cron-descriptor (a
    django-celery-beat dependency) and, failing that, the expression itself."""
    at = f"{int(hour):02d}:{int(minute):02d} {tz}" if _num(minute) and _num(hour) else None
    if at and month == "*":
        if dom == "*" and dow == "*":
            return f"every day at {at}"
        if dom == "*" and _days(dow):
            return f"every {_days(dow)} at {at}"
        if _num(dom) and dow == "*":
            return f"on day {int(dom)} of every month at {at}"
    if at and _num(month) and _num(dom) and dow == "*":
        return f"every year on {int(dom)} {MONTHS[int(month)]} at {at}"
    if dom == month == dow == "*":
        if minute == "*" and hour == "*":
            return "every minute"
        if minute.startswith("*/") and minute[2:].isdigit() and hour == "*":
            return f"every {int(minute[2:])} minutes"
        if _num(minute) and hour == "*":
            return f"every hour at minute {int(minute)}"
        if _num(minute) and hour.startswith("*/") and hour[2:].isdigit():
            return f"every {int(hour[2:])} hours at minute {int(minute)} ({tz})"
        if _num(minute) and all(h.isdigit() for h in hour.split(",")):
            times = ", ".join(f"{int(h):02d}:{int(minute):02d}" for h in hour.split(","))
            return f"every day at {times} {tz}"
    try:
        from cron_descriptor import get_description

        return f"{get_description(' '.join([minute, hour, dom, month, dow]))} ({tz})"
    except Exception:  # noqa: BLE001 - an expression cron-descriptor cannot read: show it as it is
        return f"cron {minute} {hour} {dom} {month} {dow} ({tz})"


def describe_interval(every: int, period: str) -> str:
    unit = PERIOD_WORDS.get(period, period.rstrip("s"))
    return f"every {unit}" if every == 1 else f"every {every} {unit}s"


def describe(task) -> str:
    """How often ``task`` (a PeriodicTask, interval/crontab selected) runs, in words."""
    if task.crontab_id:
        c = task.crontab
        return describe_cron(c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, str(c.timezone or "UTC"))
    if task.interval_id:
        return describe_interval(task.interval.every, task.interval.period)
    if task.clocked_id:
        return "once"
    if task.solar_id:
        return "at a solar event"
    return "no schedule"


def next_run(task, now: datetime | None = None) -> datetime | None:
    """When beat will next send ``task`` (UTC), or None (disabled, one-off already run, expired, no schedule)."""
    from celery.schedules import crontab

    now = now or timezone.now()
    if not task.enabled or (task.expires and task.expires <= now):
        return None
    if task.one_off and task.total_run_count:
        return None
    start = task.start_time if task.start_time and task.start_time > now else None
    if task.crontab_id:
        c = task.crontab
        tz = ZoneInfo(str(c.timezone or "UTC"))
        # Celery reads the fields in its own time zone: give it the wall-clock time of the crontab's zone
        ref = (start or now).astimezone(tz).replace(tzinfo=None)
        sched = crontab(
            minute=c.minute,
            hour=c.hour,
            day_of_month=c.day_of_month,
            month_of_year=c.month_of_year,
            day_of_week=c.day_of_week,
            nowfun=lambda: ref,
        )
        wall = ref + sched.remaining_estimate(ref)
        return wall.replace(tzinfo=tz).astimezone(ZoneInfo("UTC"))
    if task.interval_id:
        if start:
            return start
        every = timedelta(**{task.interval.period: task.interval.every})
        nxt = (task.last_run_at + every) if task.last_run_at else now
        return max(nxt, now)
    if task.clocked_id:
        return task.clocked.clocked_time if task.clocked.clocked_time > now else None
    return None


# --- bulk enable / disable -------------------------------------------------------------------------------------
def set_enabled(ids: list[int], enabled: bool) -> int:
    """Enable or disable the jobs ``ids`` in one UPDATE; each job that changed gets its audit entry (before →
    after, actor and source from the request), and beat is told to reload (``PeriodicTasks.update_changed``).
    Returns the number changed."""
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    from integration_hub.core import beat

    with transaction.atomic():
        qs = PeriodicTask.objects.filter(pk__in=ids).exclude(enabled=enabled)
        with beat.audited_bulk_change(qs):
            changed = qs.update(enabled=enabled)
        if changed:
            PeriodicTasks.update_changed()
    return changed


# --- run now, and its result -------------------------------------------------------------------------------------
def run_now(task, user=None):
    """Send a beat job's task now (same task, arguments and queue as the schedule) and record the run; the run
    is marked failed with the reason if the broker refuses it. In eager mode (``CELERY_TASK_ALWAYS_EAGER``,
    no worker) the task runs here, and the record is complete on return."""
    from integration_hub.celery import app

    from .models import ScheduleRun

    run = ScheduleRun.objects.create(
        periodic_task=task,
        name=task.name[:200],
        task=task.task,
        celery_task_id=f"{RUN_PREFIX}{uuid.uuid4().hex}",
        launched_by=user if getattr(user, "is_authenticated", False) else None,
        launched_at=timezone.now(),
    )
    kwargs = json.loads(task.kwargs or "{}")
    args = json.loads(task.args or "[]")
    options = {"queue": task.queue} if task.queue else {}
    try:
        if app.conf.task_always_eager:
            app.loader.import_default_modules()  # the tasks modules (autodiscovery), for the registry
        if app.conf.task_always_eager and task.task in app.tasks:
            app.tasks[task.task].apply_async(args=args, kwargs=kwargs, task_id=run.celery_task_id, **options)
        else:
            app.send_task(task.task, args=args, kwargs=kwargs, task_id=run.celery_task_id, **options)
    except Exception as exc:  # noqa: BLE001 - broker down or misconfigured: say so on the run
        log.exception("could not send %s", task.task)
        ScheduleRun.objects.filter(pk=run.pk, state=ScheduleRun.State.QUEUED).update(
            state=ScheduleRun.State.FAILED,
            finished_at=timezone.now(),
            error=f"could not send the task: {type(exc).__name__}: {exc}"[:2000],
        )
    run.refresh_from_db()
    return run


def _outcome(value) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:4000]


def on_task_prerun(sender=None, task_id=None, **kwargs):
    if not str(task_id or "").startswith(RUN_PREFIX):
        return
    from .models import ScheduleRun

    ScheduleRun.objects.filter(celery_task_id=task_id).update(
        state=ScheduleRun.State.STARTED, started_at=timezone.now()
    )


def on_task_postrun(sender=None, task_id=None, retval=None, state=None, **kwargs):
    if not str(task_id or "").startswith(RUN_PREFIX):
        return
    from .models import ScheduleRun

    failed = state != "SUCCESS"
    ScheduleRun.objects.filter(celery_task_id=task_id).update(
        state=ScheduleRun.State.FAILED if failed else ScheduleRun.State.SUCCEEDED,
        finished_at=timezone.now(),
        outcome="" if failed else _outcome(retval),
        error=(f"{state}: {type(retval).__name__}: {retval}"[:2000] if failed else ""),
    )


def connect_signals() -> None:
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(on_task_prerun, dispatch_uid="hub-schedule-run-prerun", weak=False)
    task_postrun.connect(on_task_postrun, dispatch_uid="hub-schedule-run-postrun", weak=False)
