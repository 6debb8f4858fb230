"""Demand feed to the planner (Inventory Planner) and the recommendations it sends back.

The feed is **state, not events**: every demand line has a stable key
``<order ref>|<sku>|<bundle sku>|sale|return`` and :class:`DemandFeedEntry` remembers the quantity last
sent for it per planner connection. A line is sent once; it is sent again only when its quantity changes
(an order cancelled after it was sent goes again with 0; more saleable returns raise the return line).
"""

from __future__ import annotations

from django.db import models

from integration_hub.catalog.models import Item
from integration_hub.core.models import Connection
from integration_hub.orders.models import Order, OrderLine


class ReturnCondition(models.TextChoices):
    """Where returned units stand (the hub's inventory states, plus ``advised``: announced by the customer,
    not back yet). Only ``available`` (saleable) returns offset demand: an announced unit has not arrived,
    and a damaged or quarantined one did not come back to sellable stock."""

    ADVISED = "advised", "advised (not back yet)"
    AVAILABLE = "available", "saleable"
    INSPECTION = "inspection", "inspection / quarantine"
    DAMAGED = "damaged", "damaged"


class ReturnLine(models.Model):
    """Units of an order line a customer sent back (recorded by :func:`planning.services.record_returns`)."""

    order_line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="planning_returns")
    external_ref = models.CharField(
        max_length=150, unique=True, help_text="return / RMA line id from the storefront or master"
    )
    quantity = models.PositiveIntegerField()
    condition = models.CharField(max_length=16, choices=ReturnCondition.choices, default=ReturnCondition.AVAILABLE)
    returned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.quantity}× returned ({self.condition}) {self.external_ref}"


class DemandFeedEntry(models.Model):
    """The quantity last sent to ``connection`` for one demand line key."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="demand_entries")
    key = models.CharField(max_length=400)
    order = models.ForeignKey(Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="demand_entries")
    sku = models.CharField(max_length=100)
    bundle_sku = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=64, blank=True)
    location = models.CharField(max_length=100, blank=True)
    quantity = models.IntegerField(help_text="negative for return lines")
    is_return = models.BooleanField(default=False)
    sent_at = models.DateTimeField()
    # what a planner that pulls files (Inventory Planner's CSV connector) needs to write the line again
    order_ref = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    unit_price_cents = models.IntegerField(null=True, blank=True)
    ordered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-sent_at", "-id"]
        verbose_name_plural = "demand feed entries"
        constraints = [models.UniqueConstraint(fields=["connection", "key"], name="uniq_demand_entry")]

    def __str__(self) -> str:
        return f"{self.key} = {self.quantity}"


class Recommendation(models.Model):
    """A replenishment / purchase (or transfer) recommendation as last read from the planner."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase", "purchase"
        TRANSFER = "transfer", "transfer"
        TARGET = "target", "stock target"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="recommendations")
    sku = models.CharField(max_length=100, db_index=True)
    item = models.ForeignKey(Item, on_delete=models.SET_NULL, null=True, blank=True, related_name="recommendations")
    location = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PURCHASE)
    recommended_quantity = models.IntegerField()
    supplier = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-recommended_quantity", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "sku", "location", "kind"], name="uniq_recommendation")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.recommended_quantity}× {self.sku} @ {self.location or '-'}"


class FeedToken(models.Model):
    """The secret a planner presents to pull the hub's demand files (HTTP basic password or ``?token=``).
    Only its SHA-256 is stored; the token itself is shown once, when issued (``manage.py planner_feed_token``)."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="feed_token")
    token_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"feed token of {self.connection.name} (issued {self.created_at:%Y-%m-%d})"


class StockOrder(models.Model):
    """A purchase order / transfer / assembly order as last read from the planner (Stock Orders API)."""

    class Kind(models.TextChoices):
        PO = "po", "purchase order"
        TRANSFER = "transfer", "transfer"
        ASSEMBLY = "assembly", "assembly"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="stock_orders")
    external_id = models.CharField(max_length=100)
    reference = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PO)
    status = models.CharField(max_length=64, blank=True)
    vendor = models.CharField(max_length=200, blank=True)
    warehouse = models.CharField(max_length=100, blank=True)
    source_warehouse = models.CharField(max_length=100, blank=True)
    expected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    lines = models.JSONField(default=list, blank=True, help_text="[[sku, ordered, received], ...]")
    units_open = models.IntegerField(default=0, help_text="ordered − received over all lines")
    raw = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["expected_at", "reference"]
        constraints = [models.UniqueConstraint(fields=["connection", "external_id"], name="uniq_stock_order")]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference or self.external_id} ({self.status})"
