"""Stock as mastered by the WMS/ERP, the rules that turn it into available-to-sell per channel,
the outbox of pushes waiting to go, and what each storefront last confirmed."""

from __future__ import annotations

from django.db import models

from integration_hub.catalog.models import Item
from integration_hub.core.limits import safety_buffer_validators
from integration_hub.core.models import Channel, Location


class InventoryState(models.TextChoices):
    AVAILABLE = "available", "available"
    INSPECTION = "inspection", "in inspection"
    DAMAGED = "damaged", "damaged"
    IN_TRANSIT = "in_transit", "in transit"
    RESERVED = "reserved", "reserved"


SALEABLE_STATES = (InventoryState.AVAILABLE,)


class StockPool(models.Model):
    """A set of locations whose stock is sold jointly by every channel that shares the pool."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    locations = models.ManyToManyField(Location, related_name="pools")

    def __str__(self) -> str:
        return self.name


class ChannelStockRule(models.Model):
    """Which locations feed a channel, and how much to hold back.

    segregated: the channel sells only from ``locations`` (its own);
    shared: the channel sells from ``pool``'s locations, together with the other channels on the pool.
    """

    class Mode(models.TextChoices):
        SEGREGATED = "segregated", "segregated locations"
        SHARED = "shared", "shared pool"

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="stock_rule")
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.SEGREGATED)
    locations = models.ManyToManyField(Location, blank=True, related_name="segregated_rules")
    pool = models.ForeignKey(StockPool, null=True, blank=True, on_delete=models.PROTECT, related_name="rules")
    safety_buffer = models.PositiveIntegerField(
        default=0, help_text="units held back per SKU on this channel", validators=safety_buffer_validators()
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # a shared rule without a pool draws on no location: every SKU on the channel would show 0
            models.CheckConstraint(
                condition=~models.Q(mode="shared") | models.Q(pool__isnull=False), name="shared_rule_has_pool"
            ),
        ]

    def clean(self):
        """A rule must feed its channel from somewhere. The pool is checked here; a segregated rule's
        locations (many-to-many, saved after the row) are checked by the forms and the API serializer
        (``inventory.rules.channel_rule_errors``), with the same wording."""
        from django.core.exceptions import ValidationError

        if self.mode == self.Mode.SHARED and not self.pool_id:
            raise ValidationError({"pool": "A shared channel needs a stock pool."})

    def __str__(self) -> str:
        return f"{self.channel.key}: {self.get_mode_display()}"


class StockLevel(models.Model):
    """Quantity of an item at a location in one inventory state, as the master last reported it."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="stock_levels")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="stock_levels")
    state = models.CharField(max_length=12, choices=InventoryState.choices, default=InventoryState.AVAILABLE)
    quantity = models.IntegerField(default=0)
    source_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="master's timestamp; older updates are ignored"
    )
    moved_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="master's time of the last change that moved the quantity (a repeated figure "
        "leaves it): what re-checks an acknowledged order's hold",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "location", "state"], name="uniq_stock_item_loc_state")]
        indexes = [models.Index(fields=["location", "state", "item"])]

    def __str__(self) -> str:
        return f"{self.item_id}@{self.location_id}/{self.state}={self.quantity}"


class ChannelOnHand(models.Model):
    """Stock on hand per (channel, item), kept by the database itself: the sum over the channel's locations (its
    rule's, or its pool's) of ``available`` (a negative figure counts as 0) minus ``reserved``; a row for every
    (channel with a rule, item), 0 without stock. Triggers on the stock, item, rule and pool tables keep it exact
    whatever writes them (migrations ``0008_channel_on_hand`` and ``0009``; the SQL is in :mod:`.on_hand`), so a
    whole-catalogue ATS recompute reads these rows instead of aggregating every stock row (issue 19). Never
    written by application code; :func:`.on_hand.verify` compares it with a fresh aggregate and
    :func:`.on_hand.rebuild` recomputes it."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    quantity = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "item"], name="uniq_channel_on_hand")]

    def __str__(self) -> str:
        return f"{self.item_id}@{self.channel_id}={self.quantity}"


class PendingPush(models.Model):
    """Outbox row: 'channel C must be told SKU S's current ATS'. Keyed (channel, item) so repeated
    changes coalesce; written in the same transaction as the change that caused it."""

    class Priority(models.IntegerChoices):
        ORDER = 0, "live order decrement"
        ROUTINE = 5, "routine adjustment"
        SWEEP = 9, "drift / sweep"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="pending_pushes")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="pending_pushes")
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.ROUTINE)
    reason = models.CharField(max_length=100, blank=True)
    changes = models.PositiveIntegerField(default=1, help_text="raw changes coalesced into this row")
    attempts = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(null=True, blank=True, help_text="back-off: do not try before")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="a worker holds this row until then")
    claim_token = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="set by the claiming worker; any new change clears it, so the worker "
        "deletes the row after its push only if nothing changed meanwhile",
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "item"], name="uniq_pending_push")]
        indexes = [models.Index(fields=["priority", "created_at"])]

    def __str__(self) -> str:
        return f"push {self.item_id} → {self.channel_id} (p{self.priority})"


class ChannelStock(models.Model):
    """What the hub last pushed and the storefront confirmed for (channel, item)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="confirmed_stock")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="channel_stock")
    storefront_sku = models.CharField(max_length=100)
    confirmed_quantity = models.IntegerField(null=True, blank=True)
    storefront_version = models.BigIntegerField(null=True, blank=True)
    storefront_ref = models.CharField(max_length=200, blank=True, help_text="inventory entry id / record id")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    observed_quantity = models.IntegerField(
        null=True, blank=True, help_text="last quantity read back from the storefront (drift check)"
    )
    observed_at = models.DateTimeField(null=True, blank=True)
    # write-ahead of a push (issue 20): set before the request leaves, cleared by its confirmation. While set,
    # the storefront may hold attempted_quantity instead of confirmed_quantity (a worker died mid-batch, an
    # answer was lost), so "target equals confirmed" is no reason to skip the next write.
    attempted_quantity = models.IntegerField(
        null=True, blank=True, help_text="last quantity sent whose outcome is not known yet"
    )
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "item"], name="uniq_channel_stock")]

    def __str__(self) -> str:
        return f"{self.storefront_sku}@{self.channel_id}={self.confirmed_quantity}"


class Reservation(models.Model):
    """Hub-side hold on stock for a captured order until the master's own stock figures carry it.

    Created when an order is captured (live decrement: the order's channels get priority pushes). When
    the warehouse acknowledges the order the row is only marked (``acknowledged_at`` = when the master
    took the order, on the master's clock when it says so; ``warehouse`` = that master): the master's
    stock feed may not show the order's allocation yet, and releasing then would let ATS bounce back up
    (an oversell window). It is released by whichever comes first:

    * an inbound stock update from ``warehouse`` that moves ``item``'s figure at ``allocated_location`` (where
      the master allocated the line, wherever that is — WAIR may allocate a uk-web order at EU1; any of the
      master's locations when it did not say), changed at or after ``acknowledged_at``
      (``inventory.services.apply_stock_changes``, same transaction as the StockLevel write): from then on
      the master's figure carries the order. A figure that moved before the hold was marked (the master's
      allocation reached the hub before its acknowledgement) is re-checked when it is marked
      (``inventory.reservations.recheck_holds``);
    * ``HUB["HOLD_MAX_SECONDS"]`` after ``acknowledged_at`` (``inventory.reservations.expire_holds``), with a record;
    * the order's dispatch confirmation;
    * the order's cancellation.

    Active rows (``released_at`` null) count against every channel that sells from the same locations
    as ``channel``.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reservations")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="reservations")
    order_ref = models.CharField(max_length=100, db_index=True)
    quantity = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when the warehouse took the order; the master's stock feed releases "
        "the row with its first update changed at or after this",
    )
    warehouse = models.ForeignKey(
        "core.Connection",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the master that acknowledged the order (whose stock feed releases the row)",
    )
    allocated_location = models.ForeignKey(
        Location,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="where the master said it allocated this line (any location of the master's when it did not say)",
    )
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=50, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order_ref", "item", "channel"], name="uniq_reservation")]
        indexes = [
            models.Index(fields=["item"], condition=models.Q(released_at__isnull=True), name="active_reservations")
        ]

    def __str__(self) -> str:
        return f"reserve {self.quantity}×{self.item_id} for {self.order_ref}"
