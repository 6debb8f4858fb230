"""The console owns no data of its own; this unmanaged model only carries the console's custom
permissions so roles can be granted them like any other (``console.view_dashboard``)."""

from django.db import models


class ConsoleAccess(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the sync health dashboard"),
            ("import_mappings", "Can import SKU mappings from CSV"),
        ]


class ScheduleRun(models.Model):
    """A beat job sent to the workers by hand ("Run now"): who launched it, the Celery task id, and what the
    worker made of it (filled in by the task signal handlers in :mod:`integration_hub.console.schedules`)."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued (waiting for a worker)"
        STARTED = "started", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    periodic_task = models.ForeignKey(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200, help_text="the job's name when it was launched")
    task = models.CharField(max_length=200)
    celery_task_id = models.CharField(max_length=64, unique=True)
    launched_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    launched_at = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="the task's return value (JSON)")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-launched_at", "-id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.name} @ {self.launched_at:%Y-%m-%d %H:%M}"
