"""Rule edits re-queue stock: whoever changes which locations feed a channel (console, Django admin,
API, shell), every mapped SKU on the affected channels gets its ATS pushed again. Written in the same
transaction as the edit (outbox), coalescing with anything already queued."""
from __future__ import annotations

from django.db.models import Q
from django.db.models.signals import m2m_changed, post_save

from .models import ChannelStockRule, PendingPush, StockPool


def requeue_channels(channel_ids, reason: str) -> int:
    from integration_hub.catalog.models import SkuMapping

    from . import outbox

    channel_ids = sorted(set(channel_ids))
    if not channel_ids:
        return 0
    item_ids = SkuMapping.objects.filter(Q(channel_id__in=channel_ids) | Q(channel__isnull=True), active=True) \
        .values_list("item_id", flat=True).distinct()
    return outbox.enqueue(list(item_ids), channel_ids=channel_ids, priority=PendingPush.Priority.SWEEP, reason=reason)


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
        rules = ChannelStockRule.objects.filter(pool__isnull=False) if pk_set is None else ChannelStockRule.objects.filter(pool_id__in=pk_set)
    requeue_channels(rules.values_list("channel_id", flat=True), "stock pool locations changed")


def connect():
    post_save.connect(_rule_saved, sender=ChannelStockRule, dispatch_uid="inventory-rule-saved")
    m2m_changed.connect(_rule_locations_changed, sender=ChannelStockRule.locations.through, dispatch_uid="inventory-rule-locations")
    m2m_changed.connect(_pool_locations_changed, sender=StockPool.locations.through, dispatch_uid="inventory-pool-locations")
