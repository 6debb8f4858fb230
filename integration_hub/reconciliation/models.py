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
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    total_value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True,
                                      help_text="sum of row values at unit cost, where known")
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
