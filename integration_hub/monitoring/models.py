"""Monitoring: sampled figures (a small time series), alert rules over them, their firings, the
notification channels and the delivery outbox.

* :class:`Sample` — one value of one figure (see :mod:`.figures`) for one key at one time; written by the
  sampling beat job, pruned after ``HUB["MONITORING_RETENTION_DAYS"]``.
* :class:`AlertRule` — "figure (for key) above/below threshold for ``window_minutes``"; admin-editable and
  audited (``core.audit.track``).
* :class:`AlertState` — per (rule, key): since when it breaches, and the open firing if any.
* :class:`Firing` — one breach, from when it fired until it recovered.
* :class:`NotificationChannel` — email, Slack, Microsoft Teams or a signed generic webhook.
* :class:`Delivery` — the outbox: one row per (firing, channel, event) — or per (channel, day) for the
  optional daily digest, or per (finance report subscription, business day) —, unique, retried with back-off.
"""

from __future__ import annotations

from django.db import models

from integration_hub.core import crypto


class Severity(models.TextChoices):
    WARNING = "warning", "warning (amber)"
    ERROR = "error", "error (red)"
    CRITICAL = "critical", "critical (red)"


SEVERITY_RANK = {"": 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class Flow(models.TextChoices):
    STOCK = "stock", "stock"
    ORDERS = "orders", "orders"
    DISPATCH = "dispatch", "dispatch"
    DEMAND = "demand", "demand"
    CATALOGUE = "catalogue", "catalogue"


class Sample(models.Model):
    at = models.DateTimeField(db_index=True)
    figure = models.CharField(max_length=48)
    key = models.CharField(
        max_length=120, blank=True, default="", help_text="channel / connection / kind; '' = hub total"
    )
    value = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["figure", "key", "at"])]

    def __str__(self) -> str:
        return f"{self.figure}[{self.key}]={self.value} @ {self.at:%H:%M}"


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "email"
        SLACK = "slack", "Slack incoming webhook"
        TEAMS = "teams", "Microsoft Teams incoming webhook"
        WEBHOOK = "webhook", "generic webhook (HMAC signed)"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    recipients = models.CharField(max_length=500, blank=True, help_text="email: comma separated addresses")
    url_encrypted = models.TextField(
        blank=True, editable=False, help_text="webhook URL (a credential: stored encrypted)"
    )
    secret_encrypted = models.TextField(blank=True, editable=False, help_text="generic webhook: HMAC secret")
    role = models.CharField(
        max_length=20,
        blank=True,
        choices=[(r, r) for r in ("ops", "cx", "finance", "admin")],
        help_text="email: also every active user of this role who has an address",
    )
    min_severity = models.CharField(
        max_length=10,
        choices=Severity.choices,
        default=Severity.WARNING,
        help_text="firings below this severity are not sent here",
    )
    daily_digest = models.BooleanField(default=False, help_text="also send a daily digest of the last 24 hours")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def email_recipients(self) -> list[str]:
        """The listed addresses plus the role's users (1 query when a role is set)."""
        out = [r.strip() for r in self.recipients.split(",") if r.strip()]
        if self.role:
            from django.contrib.auth.models import User

            out += [
                e
                for e in User.objects.filter(groups__name=self.role, is_active=True)
                .exclude(email="")
                .order_by("email")
                .values_list("email", flat=True)
                .distinct()
            ]
        return list(dict.fromkeys(out))

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def set_url(self, url: str) -> None:
        self.url_encrypted = crypto.encrypt(url) if url else ""

    def get_url(self) -> str:
        return crypto.decrypt(self.url_encrypted) if self.url_encrypted else ""

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


class AlertRule(models.Model):
    class Op(models.TextChoices):
        ABOVE = "gt", "above"
        AT_LEAST = "gte", "at least"
        BELOW = "lt", "below"

    name = models.CharField(max_length=120, unique=True)
    figure = models.CharField(max_length=48, help_text="which of the hub's figures (see monitoring.figures.FIGURES)")
    key = models.CharField(
        max_length=120,
        blank=True,
        help_text="blank = the hub-wide value; \"*\" = every key separately; or one channel key / connection name / kind",
    )
    op = models.CharField(max_length=3, choices=Op.choices, default=Op.ABOVE)
    threshold = models.FloatField()
    window_minutes = models.PositiveIntegerField(
        default=0, help_text="the condition must hold this long before it fires"
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=15, help_text="after a recovery, no new firing for this long"
    )
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.ERROR)
    flow = models.CharField(
        max_length=10,
        choices=Flow.choices,
        blank=True,
        help_text="dashboard tile it colours; blank = the figure's own flow",
    )
    notify_recovery = models.BooleanField(default=True, help_text="send a recovery notice when it clears")
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        from .figures import FIGURES

        if self.figure not in FIGURES:
            raise ValidationError({"figure": f"Unknown figure {self.figure!r}."})

    def breaches(self, value: float) -> bool:
        if self.op == self.Op.ABOVE:
            return value > self.threshold
        if self.op == self.Op.AT_LEAST:
            return value >= self.threshold
        return value < self.threshold

    def effective_flow(self, key: str | None = None) -> str:
        """The tile a firing of this rule colours: the rule's own, else the figure's for that key."""
        from .figures import flow_of

        return self.flow or flow_of(self.figure, self.key if key is None else key)

    def condition_text(self) -> str:
        return f"{self.figure}{'[' + self.key + ']' if self.key else ''} {self.get_op_display()} {self.threshold:g}"


class AlertState(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    key = models.CharField(max_length=120, blank=True, default="")
    breach_since = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_recovered_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "key"], name="alerts_uniq_state")]


class Firing(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    key = models.CharField(max_length=120, blank=True, default="")
    severity = models.CharField(max_length=10, choices=Severity.choices)
    flow = models.CharField(max_length=10, choices=Flow.choices, blank=True)
    value = models.FloatField(help_text="the figure when it fired")
    peak = models.FloatField(help_text="worst value seen while open")
    message = models.CharField(max_length=500)
    started_at = models.DateTimeField(db_index=True)
    recovered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "key"], condition=models.Q(recovered_at__isnull=True), name="alerts_one_open_firing"
            )
        ]

    def __str__(self) -> str:
        return self.message

    @property
    def is_open(self) -> bool:
        return self.recovered_at is None


class Delivery(models.Model):
    """Outbox row: 'tell channel C about firing F (fired / recovered)'. Unique per (firing, channel, event):
    a firing is never sent twice to a channel. A ``test`` delivery has no firing."""

    class Event(models.TextChoices):
        FIRED = "fired", "fired"
        RECOVERED = "recovered", "recovered"
        TEST = "test", "test"
        DIGEST = "digest", "daily digest"
        REPORT = "report", "finance report e-mail"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"  # only test sends end failed; real ones retry

    firing = models.ForeignKey(Firing, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
        help_text="empty for finance report e-mails (sent to their subscription's addresses)",
    )
    subscription = models.ForeignKey(
        "reconciliation.ReportSubscription",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
        help_text="report e-mail: whose",
    )
    context = models.JSONField(
        default=dict, blank=True, help_text="report e-mail: the report ids of the run it carries"
    )
    event = models.CharField(max_length=10, choices=Event.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, default="")
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    digest_day = models.DateField(
        null=True,
        blank=True,
        help_text="digest: the day it covers (one per channel and day); report e-mail: the business day of the run",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["firing", "channel", "event"], name="alerts_uniq_delivery"),
            models.UniqueConstraint(
                fields=["channel", "digest_day"], condition=models.Q(event="digest"), name="alerts_uniq_digest"
            ),
            # a report run is e-mailed once per subscription (a second run of the job the same day adds nothing)
            models.UniqueConstraint(
                fields=["subscription", "digest_day"],
                condition=models.Q(event="report"),
                name="alerts_uniq_report_mail",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel_id} ({self.status})"


class TaskProgress(models.Model):
    """Progress of a long piece of work (a full resync, a report, a bulk re-queue), written by the task
    itself through :func:`integration_hub.monitoring.progress.track`; the dashboard shows it as a bar."""

    key = models.CharField(max_length=120, unique=True)
    label = models.CharField(max_length=200)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at"]

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, int(100 * self.done / self.total))
