"""Shipping method maps: the uniqueness rule and what a saved map re-checks.

The domain's own rules — the console form, the API serializer and views call these (one-way: console / API →
orders).
"""

from __future__ import annotations

from .actions import revalidate_held
from .models import ShippingMethodMap


def shipping_map_clash(channel, storefront_method: str, exclude_pk=None) -> str | None:
    """Why this (channel, storefront method) cannot be saved, or None (the form and the serializer ask this)."""
    if not storefront_method:
        return None
    clash = ShippingMethodMap.objects.filter(channel=channel, storefront_method=storefront_method)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        return f"{storefront_method!r} is already mapped for {'this channel' if channel else 'every channel'}."
    return None


def after_shipping_map_saved(obj, before: dict | None = None) -> str:
    """A shipping method map changed: orders held for an unmapped method on its channel (and on the channel it
    was moved away from) are checked again."""
    channel = obj.channel if obj.channel_id else None
    if before is not None and before.get("channel_id") != obj.channel_id:
        channel = None  # moved between channels (or to/from "every channel"): re-check them all
    n = revalidate_held(sku=None, channel=channel)
    return f"{n} held order(s) revalidated"
