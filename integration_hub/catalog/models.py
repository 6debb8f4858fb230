"""The item master as the hub sees it: master items, how their identifiers map onto storefront SKUs
(variant level), the identifier transforms between systems, and bundles (kits)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from integration_hub.core.limits import safety_buffer_validators
from integration_hub.core.models import Channel, Connection


class Item(models.Model):
    """A sellable child SKU (variant) as mastered by the WMS / ERP."""

    sku = models.CharField("master SKU", max_length=100, unique=True)
    name = models.CharField(max_length=300, blank=True)
    parent_sku = models.CharField("style / parent", max_length=100, blank=True, db_index=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="size, colour …")
    unit_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    is_bundle = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    # item master fields (issue 17): see :mod:`.item_validation` for what each may hold
    barcode = models.CharField("barcode / GTIN", max_length=14, blank=True, db_index=True)
    weight = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    weight_unit = models.CharField(
        max_length=2, blank=True, choices=[("g", "g"), ("kg", "kg"), ("lb", "lb"), ("oz", "oz")]
    )
    pending = models.BooleanField(
        default=False,
        help_text="created from a master SKU the hub did not know (stock feed); "
        "the master pull or an import completes it",
    )
    source = models.CharField(
        max_length=40,
        blank=True,
        help_text="what last wrote the master fields: csv-import, master:<connection>, stock:<connection>",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.sku


class IdentifierTransform(models.Model):
    """How a master identifier becomes a storefront SKU for one storefront connection (or channel).

    Applied in order: trim, strip leading zeros, pad to a length with zeros, check fixed length,
    prefix/suffix, case. See :mod:`integration_hub.catalog.transforms`.
    """

    class Case(models.TextChoices):
        KEEP = "keep", "keep"
        UPPER = "upper", "UPPER"
        LOWER = "lower", "lower"

    name = models.CharField(max_length=100, unique=True)
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="transforms"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, null=True, blank=True, related_name="transforms")
    strip_leading_zeros = models.BooleanField(default=False)
    pad_to_length = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="left-pad with zeros to this length"
    )
    fixed_length = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="reject identifiers not of this length"
    )
    prefix = models.CharField(max_length=20, blank=True)
    suffix = models.CharField(max_length=20, blank=True)
    case = models.CharField(max_length=5, choices=Case.choices, default=Case.KEEP)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SkuMapping(models.Model):
    """Master item ↔ storefront SKU for one channel (``channel`` empty: every channel)."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="mappings")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, null=True, blank=True, related_name="sku_mappings")
    storefront_sku = models.CharField(max_length=100, db_index=True)
    storefront_product = models.CharField(
        max_length=200, blank=True, help_text="product key / id of the parent, when known"
    )
    transform = models.ForeignKey(
        IdentifierTransform,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="transform that produced this mapping, if any",
    )
    safety_buffer = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="overrides the channel buffer for this SKU",
        validators=safety_buffer_validators(),
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["storefront_sku"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "storefront_sku"], name="uniq_mapping_channel_sku"),
            models.UniqueConstraint(
                fields=["storefront_sku"], condition=models.Q(channel__isnull=True), name="uniq_mapping_global_sku"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item.sku} → {self.storefront_sku}" + (f" @{self.channel.key}" if self.channel_id else "")


class BundleComponent(models.Model):
    """One component of a kit: selling one ``bundle`` consumes ``quantity`` of ``component``."""

    bundle = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="components", limit_choices_to={"is_bundle": True}
    )
    component = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="used_in_bundles")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)], default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bundle", "component"], name="uniq_bundle_component"),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="bundle_component_qty_positive"),
        ]

    def clean(self):
        if self.bundle_id and self.bundle_id == self.component_id:
            raise ValidationError("A bundle cannot contain itself.")
        if self.component_id and self.component.is_bundle:
            raise ValidationError("Nested bundles are not supported: list the component SKUs directly.")

    def __str__(self) -> str:
        return f"{self.bundle.sku} ∋ {self.quantity}× {self.component.sku}"


class WarehouseProduct(models.Model):
    """A warehouse's own id for an item, for warehouses whose orders name products by id (Clarus WMS: products
    must exist there before a goods out references them). Written by
    :func:`integration_hub.catalog.warehouse_products.sync_warehouse_products`."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="warehouse_products")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="warehouse_products")
    external_id = models.CharField(max_length=100)
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "item"], name="uniq_warehouse_product")]

    def __str__(self) -> str:
        return f"{self.item_id} @ {self.connection_id} = {self.external_id}"


class PendingItemSync(models.Model):
    """Outbox row: 'system C must get item I's product record'. The stock outbox's rules
    (:mod:`integration_hub.inventory.outbox`) keyed on (connection, item) instead of (channel, item): written in
    the transaction of the item change, repeated changes coalesce (``changes``), a claiming worker's token is
    cleared by any new change, failures back off (``not_before``) and file records in the same exception queue.
    Drained by :func:`integration_hub.catalog.item_outbox.drain`."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="pending_item_syncs")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="pending_syncs")
    reason = models.CharField(max_length=100, blank=True)
    changes = models.PositiveIntegerField(default=1)
    attempts = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, default="")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "item"], name="uniq_pending_item_sync")]

    def __str__(self) -> str:
        return f"item {self.item_id} → {self.connection_id}"
