"""Finance reconciliation reports: one :class:`Report` per run and kind, its findings as
:class:`ReportRow` rows written set-based (``INSERT … SELECT``) by :mod:`.services`.

A report is a snapshot: rows copy what they need (order reference, SKUs, quantities, cost) so later
changes to orders or stock never rewrite what finance saw on the day.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ReportKind(models.TextChoices):
    SHIPPED_NOT_DISPATCHED = "shipped_open", "Fulfilled in storefront, open in warehouse"
    DISPATCHED_NOT_SHIPPED = "dispatched_unshipped", "Dispatched in warehouse, not shipped in storefront"
    STOCK_DRIFT = "stock_drift", "Stock drift (master ATS vs storefront)"


class Report(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "daily schedule"
        ON_DEMAND = "on_demand", "on demand"

    kind = models.CharField(max_length=24, choices=ReportKind.choices, db_index=True)
    run_date = models.DateField(db_index=True, help_text="business day the report covers")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.ON_DEMAND)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    total_value = models.DecimalField(
        max_digits=18, decimal_places=4, null=True, blank=True, help_text="sum of row values at unit cost, where known"
    )
    params = models.JSONField(default=dict, blank=True, help_text="thresholds and sources used for this run")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["kind", "-started_at"])]
        permissions = [
            ("download_report", "Can download reconciliation reports as CSV"),
            ("run_report", "Can run a reconciliation report on demand"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.run_date}"


class ReportRow(models.Model):
    """One finding. Order reports fill the order columns; the drift report the stock columns.

    ``difference`` = storefront quantity − master ATS: positive means the storefront offers more than the
    master can sell (oversell exposure); ``value`` = difference × item unit cost when the cost is known.
    """

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="rows")
    channel_id = models.BigIntegerField(null=True, blank=True)
    channel_key = models.CharField(max_length=64, blank=True)
    order_id = models.BigIntegerField(null=True, blank=True)
    order_ref = models.CharField(max_length=100, blank=True, help_text="storefront order number / id")
    external_id = models.CharField(max_length=100, blank=True)
    order_state = models.CharField(max_length=24, blank=True)
    warehouse_ref = models.CharField(max_length=100, blank=True)
    event_at = models.DateTimeField(null=True, blank=True, help_text="dispatch / storefront shipment time")
    item_id = models.BigIntegerField(null=True, blank=True)
    sku = models.CharField(max_length=100, blank=True, help_text="master SKU")
    storefront_sku = models.CharField(max_length=100, blank=True)
    master_quantity = models.IntegerField(null=True, blank=True)
    storefront_quantity = models.IntegerField(null=True, blank=True)
    difference = models.IntegerField(null=True, blank=True)
    unit_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["report", "id"])]
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.report_id}: {self.order_ref or self.storefront_sku}"


class ReportSubscription(models.Model):
    """Scheduled delivery of reports by e-mail: which reports, to whom (a user's own address and/or listed
    addresses), as XLSX or CSV attachments. Sent after each daily report run through the monitoring outbox
    (``monitoring.Delivery``, event ``report``): once per subscription and business day, retried on failure."""

    class Format(models.TextChoices):
        XLSX = "xlsx", "Excel workbook (XLSX)"
        CSV = "csv", "CSV for Excel"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="send to this user's own e-mail address",
    )
    addresses = models.CharField(max_length=500, blank=True, help_text="more addresses, comma separated")
    kinds = models.JSONField(default=list, blank=True, help_text="report kinds; empty = every report")
    format = models.CharField(max_length=4, choices=Format.choices, default=Format.XLSX)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def address_list(self) -> list[str]:
        return [a.strip() for a in self.addresses.split(",") if a.strip()]

    def recipients(self) -> list[str]:
        out = self.address_list()
        if self.user_id and self.user.is_active and self.user.email:
            out.insert(0, self.user.email)
        return list(dict.fromkeys(out))

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds

    def kinds_label(self) -> str:
        labels = dict(ReportKind.choices)
        return ", ".join(labels.get(k, k) for k in self.kinds) if self.kinds else "every report"

    def __str__(self) -> str:
        who = ", ".join(self.recipients()) or "no address"
        return f"{self.kinds_label()} → {who}"
