"""Default beat schedule, installed into django-celery-beat by ``manage.py setup_beat``.

Each app declares its periodic jobs in ``integration_hub/<app>/beat.py`` as
``SCHEDULE = [Job(...), ...]``. ``setup_beat`` creates missing PeriodicTask rows and never overwrites
what an admin has since edited (interval, enabled flag, arguments), unless ``--reset`` is given.

Editing a job (console, API, admin) goes through :func:`clean_schedule` / :func:`apply_schedule`, and every
change to a job — whatever made it — is audited with before/after (:func:`track_schedule_changes`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
from dataclasses import dataclass, field

APPS = ("core", "catalog", "inventory", "orders", "planning", "reconciliation", "console", "api", "monitoring")


@dataclass
class Job:
    name: str  # unique, human readable: "stock: sweep pending pushes"
    task: str  # dotted task name
    every_seconds: int | None = None
    crontab: str | None = None  # "m h dom mon dow", e.g. "15 2 * * *"
    kwargs: dict = field(default_factory=dict)
    queue: str | None = None
    description: str = ""
    enabled: bool = True


SCHEDULE = [
    Job(
        "core: worker heartbeat",
        "core.heartbeat",
        every_seconds=60,
        description="shows on the dashboard when a worker last ran",
    ),
    Job(
        "exceptions: prune trend counts",
        "exceptions.prune_occurrences",
        crontab="15 * * * *",
        description="drops hourly exception counts older than 3 days (the queue's trend shows 24 h)",
    ),
]


def collect() -> list[Job]:
    jobs: list[Job] = list(SCHEDULE)
    for app in APPS:
        module = f"integration_hub.{app}.beat"
        if app == "core" or importlib.util.find_spec(module) is None:
            continue
        jobs.extend(getattr(importlib.import_module(module), "SCHEDULE", []))
    return jobs


def install(reset: bool = False) -> tuple[int, int]:
    """Create the missing jobs (``reset``: put every job back to its shipped default). Each change is audited
    with source ``setup_beat`` (see :func:`track_schedule_changes`)."""
    from . import audit

    with audit.acting_as(None, "setup_beat"):
        return _install(reset)


def _install(reset: bool) -> tuple[int, int]:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    created = updated = 0
    for job in collect():
        defaults = {
            "task": job.task,
            "kwargs": json.dumps(job.kwargs),
            "queue": job.queue,
            "description": job.description,
            "enabled": job.enabled,
        }
        if job.every_seconds:
            sched, _ = IntervalSchedule.objects.get_or_create(every=job.every_seconds, period=IntervalSchedule.SECONDS)
            defaults.update(interval=sched, crontab=None)
        else:
            minute, hour, dom, month, dow = job.crontab.split()
            sched, _ = CrontabSchedule.objects.get_or_create(
                minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow
            )
            defaults.update(crontab=sched, interval=None)
        existing = PeriodicTask.objects.filter(name=job.name).first()
        if existing is None:
            PeriodicTask.objects.create(name=job.name, **defaults)
            created += 1
        elif reset:
            for k, v in defaults.items():
                setattr(existing, k, v)
            existing.save()
            updated += 1
    return created, updated


# --- editing a schedule (console form, API and admin share these) ----------------------------------------
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_crontab(text: str) -> dict:
    """``"m h dom mon dow"`` → the CrontabSchedule fields, or ValidationError with what is wrong. Checked with
    the model's own validators and with Celery's parser, so what is saved is what beat can run."""
    from celery.schedules import crontab
    from django.core.exceptions import ValidationError
    from django_celery_beat.models import CrontabSchedule

    parts = (text or "").split()
    if len(parts) != 5:
        raise ValidationError("Five fields: minute hour day-of-month month day-of-week.")
    fields = dict(zip(CRON_FIELDS, parts))
    problems = []
    try:
        CrontabSchedule(**fields).full_clean(exclude=["timezone"])
    except ValidationError as exc:
        for name, errors in exc.message_dict.items():
            label = name.replace("_", " ")
            problems.append(f"{label} {fields.get(name, '')!r}: {' '.join(errors)}")
    if not problems:
        try:
            crontab(**fields)
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError(f"Not a valid crontab ({'; '.join(problems)}).")
    return fields


def clean_schedule(*, every=None, period=None, cron: str = "") -> dict:
    """What a person asked for → ``{"crontab": fields}`` or ``{"interval": (every, period)}``.
    Raises ValidationError({field: message})."""
    from django.core.exceptions import ValidationError
    from django_celery_beat.models import IntervalSchedule

    cron = (cron or "").strip()
    if cron:
        try:
            return {"crontab": parse_crontab(cron)}
        except ValidationError as exc:
            raise ValidationError({"cron": exc.messages}) from exc
    if not every or not period:
        raise ValidationError({"every": "Give an interval (number and period) or a crontab."})
    if period not in dict(IntervalSchedule.PERIOD_CHOICES):
        raise ValidationError({"period": f"Unknown period {period!r}."})
    if int(every) < 1:
        raise ValidationError({"every": "Run at least every 1 " + period.rstrip("s") + "."})
    return {"interval": (int(every), period)}


def apply_schedule(task, schedule: dict | None = None, enabled: bool | None = None, commit: bool = True):
    """Point ``task`` at the cleaned schedule (see :func:`clean_schedule`) and/or enable/disable it. The save
    is audited by :func:`track_schedule_changes` whoever calls it."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if enabled is not None:
        task.enabled = enabled
    if schedule and "crontab" in schedule:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(**schedule["crontab"])
        task.interval = None
    elif schedule and "interval" in schedule:
        every, period = schedule["interval"]
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        task.crontab = None
    if commit:
        task.save()
    return task


def cron_text(task) -> str:
    c = task.crontab
    return f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}" if task.crontab_id else ""


# --- audit: every change to a beat job, whatever the path (console, API, Django admin, setup_beat) ---------
# What a person edits; the scheduler's own bookkeeping (last run, run count) is not audited, so beat's saves
# never flood the history.
_EDITABLE = (
    "enabled",
    "task",
    "args",
    "kwargs",
    "queue",
    "interval_id",
    "crontab_id",
    "solar_id",
    "clocked_id",
    "one_off",
    "start_time",
    "expires",
    "description",
)


def schedule_snapshot(task) -> dict:
    return {
        "enabled": task.enabled,
        "interval": str(task.interval) if task.interval_id else None,
        "crontab": cron_text(task) or None,
        "task": task.task,
        "args": task.args,
        "kwargs": task.kwargs,
        "queue": task.queue,
    }


def _state(task) -> tuple:
    return tuple(str(getattr(task, f, None)) for f in _EDITABLE)


def _pre_save(sender, instance, raw=False, **kwargs):
    instance._beat_before = None
    if raw or instance.pk is None:
        return
    old = sender._default_manager.select_related("interval", "crontab").filter(pk=instance.pk).first()
    if old is not None:
        instance._beat_before = (_state(old), schedule_snapshot(old))


def _post_save(sender, instance, created, raw=False, **kwargs):
    from . import audit

    if raw:
        return
    before = getattr(instance, "_beat_before", None)
    if created or before is None:
        audit.write(instance, "create", None, schedule_snapshot(instance), repr_=instance.name)
    elif before[0] != _state(instance):
        audit.write(instance, "update", before[1], schedule_snapshot(instance), repr_=instance.name)


def _post_delete(sender, instance, **kwargs):
    from . import audit

    audit.write(instance, "delete", schedule_snapshot(instance), None, repr_=instance.name)


def track_schedule_changes() -> None:
    from django.db.models.signals import post_delete, post_save, pre_save
    from django_celery_beat.models import PeriodicTask

    pre_save.connect(_pre_save, sender=PeriodicTask, dispatch_uid="beat-audit-pre")
    post_save.connect(_post_save, sender=PeriodicTask, dispatch_uid="beat-audit-post")
    post_delete.connect(_post_delete, sender=PeriodicTask, dispatch_uid="beat-audit-del")


@contextlib.contextmanager
def audited_bulk_change(queryset):
    """For ``queryset.update(...)`` on beat jobs (the Django admin's enable/disable/toggle actions), which
    sends no signals: one before/after entry per job that changed."""
    from . import audit

    tasks = list(queryset.select_related("interval", "crontab"))
    before = {t.pk: (_state(t), schedule_snapshot(t)) for t in tasks}
    yield
    for t in (
        type(queryset)(queryset.model, using=queryset.db)
        .filter(pk__in=list(before))
        .select_related("interval", "crontab")
    ):
        if _state(t) != before[t.pk][0]:
            audit.write(t, "update", before[t.pk][1], schedule_snapshot(t), repr_=t.name)
