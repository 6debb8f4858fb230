"""Default beat schedule, installed into django-celery-beat by ``manage.py setup_beat``.

Each app declares its periodic jobs in ``integration_hub/<app>/beat.py`` as
``SCHEDULE = [Job(...), ...]``. ``setup_beat`` creates missing PeriodicTask rows and never overwrites
what an admin has since edited (interval, enabled flag, arguments), unless ``--reset`` is given.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass, field

APPS = ("core", "catalog", "inventory", "orders", "planning", "reconciliation", "console", "api")


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
    Job("core: worker heartbeat", "core.heartbeat", every_seconds=60, description="shows on the dashboard when a worker last ran"),
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
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    created = updated = 0
    for job in collect():
        defaults = {"task": job.task, "kwargs": json.dumps(job.kwargs), "queue": job.queue,
                    "description": job.description, "enabled": job.enabled}
        if job.every_seconds:
            sched, _ = IntervalSchedule.objects.get_or_create(every=job.every_seconds, period=IntervalSchedule.SECONDS)
            defaults.update(interval=sched, crontab=None)
        else:
            minute, hour, dom, month, dow = job.crontab.split()
            sched, _ = CrontabSchedule.objects.get_or_create(minute=minute, hour=hour, day_of_month=dom,
                                                             month_of_year=month, day_of_week=dow)
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
