"""The exception queue: everything that could not proceed, merged by a stable key."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Kind(models.TextChoices):
    SKU_MISMATCH = "sku_mismatch", "SKU mismatch"
    UNKNOWN_SKU = "unknown_sku", "unknown SKU"
    STUCK_ORDER = "stuck_order", "stuck order"
    ORPHANED_ORDER = "orphaned_order", "orphaned order"
    SYNC_TIMEOUT = "sync_timeout", "sync timeout"
    RATE_LIMITED = "rate_limited", "rate-limit rejection"
    MISSING_DISPATCH = "missing_dispatch", "missing dispatch notification"
    STOCK_DRIFT = "stock_drift", "stock drift"
    BAD_PAYLOAD = "bad_payload", "bad payload"
    AUTH_FAILURE = "auth_failure", "connection auth failure"
    ESCALATED = "escalated", "escalated to ops"
    MASTER_DATA_DRIFT = "master_data_drift", "master data drift"
    NOT_ON_STOREFRONT = "not_on_storefront", "not on the storefront"


class Severity(models.TextChoices):
    INFO = "info", "info"
    WARNING = "warning", "warning"
    ERROR = "error", "error"
    CRITICAL = "critical", "critical"


class Status(models.TextChoices):
    OPEN = "open", "open"
    ACKNOWLEDGED = "acknowledged", "acknowledged"
    RESOLVED = "resolved", "resolved"
    IGNORED = "ignored", "ignored"


ACTIVE_STATUSES = (Status.OPEN, Status.ACKNOWLEDGED)


class ExceptionRecord(models.Model):
    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.ERROR)
    dedupe_key = models.CharField(max_length=300, unique=True, help_text="same failure → same key → one row")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True)
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True)
    context = models.JSONField(default=dict, blank=True)
    connection = models.ForeignKey(
        "core.Connection", null=True, blank=True, on_delete=models.SET_NULL, related_name="exceptions"
    )
    channel = models.ForeignKey(
        "core.Channel", null=True, blank=True, on_delete=models.SET_NULL, related_name="exceptions"
    )
    sku = models.CharField(max_length=100, blank=True, db_index=True)
    order_ref = models.CharField(max_length=100, blank=True, db_index=True)
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status_reason = models.TextField(blank=True)
    times_reopened = models.PositiveIntegerField(default=0)
    # root-cause grouping (services.group_fingerprint): records with the same fingerprint raised within
    # HUB_EXCEPTION_GROUP_WINDOW_MINUTES of each other share a group_key (one outage = one parent row)
    fingerprint = models.CharField(max_length=120, blank=True, db_index=True)
    group_key = models.CharField(max_length=140, blank=True, db_index=True)
    # ops triage (exceptions_app.queue): who owns it, and hidden from the default view until a time or
    # until a sync clears it (a recurrence after resolution un-snoozes)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    snoozed_until = models.DateTimeField(null=True, blank=True, db_index=True)
    snooze_until_sync = models.BooleanField(default=False)

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["status", "kind", "-last_seen"])]
        permissions = [
            ("escalate_order", "Can escalate an order to ops with a note"),
            ("bulk_retry", "Can retry all matching orders and stock pushes"),
        ]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.title}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def is_snoozed(self, now=None) -> bool:
        from django.utils import timezone

        return self.snooze_until_sync or (
            self.snoozed_until is not None and self.snoozed_until > (now or timezone.now())
        )


class ExceptionOccurrence(models.Model):
    """Occurrences of a record per hour (the queue's 24 h trend): one upsert per distinct (record, hour) each
    time records are raised; rows older than a few days are pruned with the monitoring samples."""

    record = models.ForeignKey(ExceptionRecord, on_delete=models.CASCADE, related_name="occurrences")
    hour = models.DateTimeField()
    n = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["record", "hour"], name="exception_occurrence_record_hour")]
        indexes = [models.Index(fields=["hour"])]
