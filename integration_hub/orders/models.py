"""Order mirror: storefront orders as the hub moves them to the warehouse and back.

State machine (ARCHITECTURE principle 5), enforced by :mod:`integration_hub.orders.state`:
captured → validated → sent → acknowledged → dispatched → storefront_notified, plus held, cancelled, failed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from integration_hub.catalog.models import Item
from integration_hub.core.models import Channel, Connection


class OrderState(models.TextChoices):
    CAPTURED = "captured", "captured"
    VALIDATED = "validated", "validated"
    SENT = "sent", "sent to warehouse"
    ACKNOWLEDGED = "acknowledged", "acknowledged by warehouse"
    DISPATCHED = "dispatched", "dispatched"
    STOREFRONT_NOTIFIED = "storefront_notified", "shipped in storefront"
    HELD = "held", "held"
    CANCELLED = "cancelled", "cancelled"
    FAILED = "failed", "failed"


class Order(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="orders")
    external_id = models.CharField(max_length=100, help_text="storefront order id")
    order_number = models.CharField(max_length=100, blank=True, db_index=True)
    state = models.CharField(max_length=24, choices=OrderState.choices, default=OrderState.CAPTURED, db_index=True)
    storefront_version = models.BigIntegerField(null=True, blank=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    total_cents = models.BigIntegerField(null=True, blank=True)
    customer_email = models.EmailField(blank=True)
    shipping_address = models.JSONField(default=dict, blank=True)
    billing_address = models.JSONField(default=dict, blank=True)
    shipping_method = models.CharField(max_length=100, blank=True, help_text="storefront shipping method key")
    warehouse_shipping_method = models.CharField(max_length=100, blank=True)
    warehouse_carrier = models.CharField(max_length=100, blank=True)
    gift_message = models.TextField(blank=True)
    delivery_notes = models.TextField(blank=True)
    custom_fields = models.JSONField(default=dict, blank=True)
    promotion_codes = models.JSONField(default=list, blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="payload as received")
    warehouse = models.ForeignKey(
        Connection, on_delete=models.PROTECT, null=True, blank=True, related_name="warehouse_orders"
    )
    idempotency_key = models.CharField(max_length=100, unique=True)
    warehouse_ref = models.CharField(max_length=100, blank=True, help_text="acknowledgement id from the warehouse")
    send_attempts = models.PositiveIntegerField(default=0)
    notify_attempts = models.PositiveIntegerField(default=0, help_text="attempts to mark the storefront order shipped")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="when the goods left, as the warehouse says")
    dispatch_received_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when the hub received the dispatch confirmation (the agreed time to show it shipped runs from here)",
    )
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="a cancel the warehouse must confirm (the order reached it)"
    )
    cancel_reason = models.CharField(max_length=300, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    tracking = models.JSONField(default=list, blank=True, help_text="[{carrier, tracking_number, tracking_url, lines}]")
    hold_reason = models.TextField(blank=True)
    last_error = models.TextField(blank=True, help_text="last failure talking to the warehouse / storefront")
    claim_token = models.CharField(
        max_length=32,
        blank=True,
        db_index=True,
        help_text="set while a worker works on the order; the lease is next_attempt_at",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["channel", "external_id"], name="uniq_order_channel_external")]
        indexes = [models.Index(fields=["state", "updated_at"])]
        permissions = [
            ("retry_order", "Can retry sending an order to the warehouse"),
            ("cancel_order", "Can cancel an order in the hub"),
        ]

    def __str__(self) -> str:
        return self.order_number or self.external_id


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_id = models.CharField(max_length=100, help_text="storefront line item id")
    storefront_sku = models.CharField(max_length=100)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, null=True, blank=True, related_name="order_lines")
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="components",
        help_text="bundle line this component was exploded from",
    )
    quantity = models.PositiveIntegerField()
    unit_price_cents = models.BigIntegerField(null=True, blank=True)
    custom_fields = models.JSONField(default=dict, blank=True)
    shipped_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity}× {self.storefront_sku}"


class OrderTransition(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=24, blank=True)
    to_state = models.CharField(max_length=24)
    cause = models.CharField(max_length=300)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or '∅'} → {self.to_state}"


class ShippingMethodMap(models.Model):
    """Storefront shipping method → warehouse service code (and carrier)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, null=True, blank=True, related_name="shipping_maps")
    storefront_method = models.CharField(max_length=100)
    warehouse_method = models.CharField(max_length=100)
    carrier = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["storefront_method"]
        constraints = [models.UniqueConstraint(fields=["channel", "storefront_method"], name="uniq_ship_map")]

    def __str__(self) -> str:
        return f"{self.storefront_method} → {self.warehouse_method}"


class StorefrontFulfilment(models.Model):
    """A fulfilment the storefront side did itself (ship-from-store, click & collect), to be reported to the
    inventory master until it acknowledges. One row per (order, fulfilment_ref); retried until ``ack_id``."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="storefront_fulfilments")
    fulfilment_ref = models.CharField(max_length=100)
    warehouse = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="storefront_fulfilments")
    lines = models.JSONField(default=list, help_text="[[master sku, quantity], …]")
    location = models.CharField(max_length=100, blank=True, help_text="master location id")
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    ack_id = models.CharField(max_length=100, blank=True, help_text="the master's acknowledgement id")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["order", "fulfilment_ref"], name="uniq_sf_fulfilment")]
        indexes = [models.Index(fields=["acknowledged_at", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.order} fulfilment {self.fulfilment_ref}"
