"""Channel stock rules: what a rule must hold to feed its channel, and what saving or deleting one re-queues.

The domain's own rules — the console rule pages, the API serializers/views and the Django admin all call these
(one-way: console / API / admin → inventory). Row-level effects (a rule saved, its locations changed, a rule
deleted) are also covered by :mod:`.signals`; :func:`after_channel_rule_saved` is the explicit re-queue a person's
edit reports back ("n stock push(es) queued").
"""

from __future__ import annotations

from django.db.models import Q

from integration_hub.catalog.models import SkuMapping
from integration_hub.core import audit

from . import outbox
from .models import ChannelStockRule, PendingPush


def channel_rule_errors(mode, pool, locations) -> dict[str, str]:
    """{field: message} for a channel stock rule that cannot feed its channel (form, serializer and admin share it)."""
    errors = {}
    if mode == ChannelStockRule.Mode.SHARED and not pool:
        errors["pool"] = "A shared channel needs a stock pool."
    if mode == ChannelStockRule.Mode.SEGREGATED and not list(locations or []):
        errors["locations"] = "A segregated channel needs at least one location."
    return errors


def rule_location_codes(rule) -> list[str] | None:
    """The rule's locations as sorted codes (None for a rule not saved yet): take it before an edit."""
    return sorted(rule.locations.values_list("code", flat=True)) if rule.pk else None


def audit_rule_locations(rule, before: list[str] | None) -> bool:
    """Audit a change of a channel rule's locations (many-to-many: the automatic audit only sees concrete
    fields). Actor and source come from the request (console or api). Returns whether anything changed."""
    after = rule_location_codes(rule)
    if after == before:
        return False
    audit.write(rule, "update", {"locations": before}, {"locations": after})
    return True


def after_channel_rule_saved(obj, before=None) -> str:
    """A channel's stock rule changed: every mapped SKU on the channel needs its ATS pushed again."""
    item_ids = set(
        SkuMapping.objects.filter(Q(channel_id=obj.channel_id) | Q(channel__isnull=True), active=True).values_list(
            "item_id", flat=True
        )
    )
    n = (
        outbox.enqueue(
            sorted(item_ids),
            channel_ids=[obj.channel_id],
            priority=PendingPush.Priority.ROUTINE,
            reason="channel stock rule changed",
        )
        if item_ids
        else 0
    )
    return f"{n} stock push(es) queued for {obj.channel}"


def after_rule_deleted(obj) -> None:
    """After a confirmed delete on the console or the API (:func:`integration_hub.console.impact.preview_delete`):
    a channel rule re-queues what it fed. A deleted SKU mapping needs nothing here: its delete signal already
    re-queued its item (:func:`integration_hub.catalog.mapping_changes.mapping_changed`)."""
    if isinstance(obj, ChannelStockRule):
        after_channel_rule_saved(obj)
