"""Edits that move ATS re-queue stock, whoever makes them (console, Django admin, API, shell):

* a channel stock rule or the locations feeding a channel / pool: every mapped SKU on the affected
  channels; a deleted rule or a deactivated channel: every pair the storefront was last told a positive
  quantity for, so the push withdraws it (sets it to 0) instead of leaving it on sale;
* a SKU mapping (created, edited — item, channel, storefront SKU, buffer, active —, deleted): its item
  on its channel(s), before and after the edit — through
  :func:`integration_hub.catalog.mapping_changes.mapping_changed`, the one "mapping changed" entry point (these
  signals are its row-save / row-delete path; bulk writes call it themselves);
* a bundle component (added, quantity changed, removed): the bundle.

Written in the same transaction as the edit (outbox), coalescing with anything already queued. A
queryset delete is handled once for the whole set (one query to read it, one enqueue), before the rows
go, so the enqueue still sees the pairs the deleted rows fed.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from integration_hub.catalog.mapping_changes import mapping_changed

from .models import ChannelStockRule, PendingPush, StockPool


def requeue_channels(channel_ids, reason: str) -> int:
    from integration_hub.catalog.models import SkuMapping

    from . import outbox

    channel_ids = sorted(set(channel_ids))
    if not channel_ids:
        return 0
    item_ids = (
        SkuMapping.objects.filter(Q(channel_id__in=channel_ids) | Q(channel__isnull=True), active=True)
        .values_list("item_id", flat=True)
        .distinct()
    )
    n = outbox.enqueue(list(item_ids), channel_ids=channel_ids, priority=PendingPush.Priority.SWEEP, reason=reason)
    if n:  # every SKU of the channel at once: storefronts with a bulk path take it as one full load
        from . import full_load

        full_load.dispatch_on_commit(channel_ids, reason)
    return n


def _rule_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        requeue_channels([instance.channel_id], "channel stock rule changed")


def _rule_locations_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        channels = [instance.channel_id]
    else:  # location.segregated_rules.add/remove/clear(...): instance is a Location
        rules = ChannelStockRule.objects.all() if pk_set is None else ChannelStockRule.objects.filter(pk__in=pk_set)
        channels = rules.values_list("channel_id", flat=True)
    requeue_channels(channels, "channel locations changed")


def _pool_locations_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        rules = ChannelStockRule.objects.filter(pool_id=instance.pk)
    else:  # location.pools.add/remove/clear(...): instance is a Location
        rules = (
            ChannelStockRule.objects.filter(pool__isnull=False)
            if pk_set is None
            else ChannelStockRule.objects.filter(pool_id__in=pk_set)
        )
    requeue_channels(rules.values_list("channel_id", flat=True), "stock pool locations changed")


# --- SKU mappings and bundles ---------------------------------------------------------------------
MAPPING_FIELDS = ("item_id", "channel_id", "storefront_sku", "safety_buffer", "active")
BUNDLE_FIELDS = ("bundle_id", "component_id", "quantity")


def _enqueue_items(item_ids, channel_ids, reason: str) -> int:
    """Bundles: ``channel_ids`` None: every channel."""
    from . import outbox

    item_ids = sorted({i for i in item_ids if i})
    if not item_ids:
        return 0
    return outbox.enqueue(item_ids, channel_ids=channel_ids, priority=PendingPush.Priority.ROUTINE, reason=reason)


def _remember_before(sender, instance, raw=False, **kwargs):
    """pre_save: the row as stored, so post_save can re-queue what the edit moved away from. One query."""
    fields = MAPPING_FIELDS if _is_mapping(sender) else BUNDLE_FIELDS
    instance._hub_stock_before = None
    if raw or instance.pk is None:
        return
    instance._hub_stock_before = sender.objects.filter(pk=instance.pk).values(*fields).first()


def _is_mapping(sender) -> bool:
    from integration_hub.catalog.models import SkuMapping

    return issubclass(sender, SkuMapping)


def _mapping_saved(sender, instance, created=False, raw=False, **kwargs):
    instance._hub_mapping_change = None
    if raw:
        return
    before = getattr(instance, "_hub_stock_before", None)
    instance._hub_stock_before = None
    if before is not None and all(before[f] == getattr(instance, f) for f in MAPPING_FIELDS):
        return  # nothing that moves ATS changed (e.g. storefront_product, transform)
    items = {instance.item_id} | ({before["item_id"]} if before else set())
    channel_ids = (
        None
        if instance.channel_id is None or (before and before["channel_id"] is None)
        else sorted({instance.channel_id} | ({before["channel_id"]} if before else set()))
    )
    instance._hub_mapping_change = mapping_changed(
        items, channel_ids, "sku mapping created" if created else "sku mapping changed"
    )


def _bundle_saved(sender, instance, created=False, raw=False, **kwargs):
    if raw:
        return
    before = getattr(instance, "_hub_stock_before", None)
    instance._hub_stock_before = None
    if before is not None and all(before[f] == getattr(instance, f) for f in BUNDLE_FIELDS):
        return
    _enqueue_items(
        {instance.bundle_id} | ({before["bundle_id"]} if before else set()),
        None,
        "bundle component added" if created else "bundle component changed",
    )


def _rows_being_deleted(sender, instance, origin, fields):
    """The rows a delete removes, read once per delete call: the instance itself for ``obj.delete()``,
    the whole queryset for ``qs.delete()`` (admin "delete selected"). None when this delete is a cascade
    from another model (that model's own handling applies) or the set was already handled."""
    if isinstance(origin, QuerySet):
        if not issubclass(origin.model, sender):
            return None
        if getattr(origin, "_hub_stock_requeued", False):
            return None
        origin._hub_stock_requeued = True
        return list(origin.values(*fields))
    if origin is not None and origin is not instance:
        return None
    return [{f: getattr(instance, f) for f in fields}]


def _mapping_deleting(sender, instance, origin=None, **kwargs):
    rows = _rows_being_deleted(sender, instance, origin, ("item_id", "channel_id"))
    if not rows:
        return
    if any(r["channel_id"] is None for r in rows):
        mapping_changed({r["item_id"] for r in rows}, None, "sku mapping deleted")
    else:
        mapping_changed({r["item_id"] for r in rows}, {r["channel_id"] for r in rows}, "sku mapping deleted")


def _bundle_deleting(sender, instance, origin=None, **kwargs):
    rows = _rows_being_deleted(sender, instance, origin, ("bundle_id",))
    if rows:
        _enqueue_items({r["bundle_id"] for r in rows}, None, "bundle component removed")


# --- channels --------------------------------------------------------------------------------------
def _channel_before(sender, instance, raw=False, **kwargs):
    instance._hub_was_active = None
    if not raw and instance.pk is not None:
        instance._hub_was_active = sender.objects.filter(pk=instance.pk).values_list("active", flat=True).first()


def _channel_saved(sender, instance, created=False, raw=False, **kwargs):
    from . import outbox

    was = getattr(instance, "_hub_was_active", None)
    instance._hub_was_active = None
    if raw or created or was is None or was == instance.active:
        return
    if instance.active:
        requeue_channels([instance.pk], "channel reactivated")
    else:
        outbox.enqueue_withdrawals([instance.pk], "channel deactivated")


def _rule_deleted(sender, instance, origin=None, **kwargs):
    from integration_hub.core.models import Channel

    from . import outbox

    if isinstance(origin, Channel) or (isinstance(origin, QuerySet) and issubclass(origin.model, Channel)):
        return  # the channel itself is going: its confirmed stock goes with it
    outbox.enqueue_withdrawals([instance.channel_id], "channel stock rule deleted")


def connect():
    post_save.connect(_rule_saved, sender=ChannelStockRule, dispatch_uid="inventory-rule-saved")
    m2m_changed.connect(
        _rule_locations_changed, sender=ChannelStockRule.locations.through, dispatch_uid="inventory-rule-locations"
    )
    m2m_changed.connect(
        _pool_locations_changed, sender=StockPool.locations.through, dispatch_uid="inventory-pool-locations"
    )
    post_delete.connect(_rule_deleted, sender=ChannelStockRule, dispatch_uid="inventory-rule-deleted")

    from integration_hub.catalog.models import BundleComponent, SkuMapping
    from integration_hub.core.models import Channel

    pre_save.connect(_remember_before, sender=SkuMapping, dispatch_uid="inventory-mapping-before")
    post_save.connect(_mapping_saved, sender=SkuMapping, dispatch_uid="inventory-mapping-saved")
    pre_delete.connect(_mapping_deleting, sender=SkuMapping, dispatch_uid="inventory-mapping-deleting")
    pre_save.connect(_remember_before, sender=BundleComponent, dispatch_uid="inventory-bundle-before")
    post_save.connect(_bundle_saved, sender=BundleComponent, dispatch_uid="inventory-bundle-saved")
    pre_delete.connect(_bundle_deleting, sender=BundleComponent, dispatch_uid="inventory-bundle-deleting")
    pre_save.connect(_channel_before, sender=Channel, dispatch_uid="inventory-channel-before")
    post_save.connect(_channel_saved, sender=Channel, dispatch_uid="inventory-channel-saved")
