"""The console's rule tables (SKU mappings, transforms, channel stock rules, shipping maps): for each, its model,
form, list columns and the domain hook a save runs. The rule pages (:mod:`.views`) and revert
(:mod:`.activity`) both read :data:`RULES`; the hooks live in the domains (console → domain, one way)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from exceptions_app import triage
from integration_hub.catalog.models import IdentifierTransform, SkuMapping
from integration_hub.inventory.models import ChannelStockRule
from integration_hub.inventory.rules import after_channel_rule_saved
from integration_hub.orders.models import ShippingMethodMap
from integration_hub.orders.shipping_rules import after_shipping_map_saved

from .forms import ChannelRuleForm, ShippingMapForm, SkuMappingForm, TransformForm


@dataclass
class RuleType:
    slug: str
    model: type
    form: type
    title: str
    columns: list  # (label, callable(obj) -> value)
    search: list = field(default_factory=list)
    select_related: list = field(default_factory=list)
    prefetch: list = field(default_factory=list)
    after_save: Callable | None = None
    help: str = ""

    def perm(self, action: str) -> str:
        return f"{self.model._meta.app_label}.{action}_{self.model._meta.model_name}"


def _yesno(v):
    return "yes" if v else "no"


RULES: dict[str, RuleType] = {
    r.slug: r
    for r in [
        RuleType(
            "sku-mappings",
            SkuMapping,
            SkuMappingForm,
            "SKU mappings",
            [
                ("Storefront SKU", lambda o: o.storefront_sku),
                ("Master SKU", lambda o: o.item.sku),
                ("Channel", lambda o: o.channel.key if o.channel_id else "all channels"),
                ("Transform", lambda o: o.transform.name if o.transform_id else ""),
                ("Buffer", lambda o: o.safety_buffer),
                ("Active", lambda o: _yesno(o.active)),
                ("Updated", lambda o: o.updated_at),
            ],
            search=["storefront_sku", "item__sku"],
            select_related=["item", "channel", "transform"],
            after_save=triage.after_mapping_saved,
            help="Saving re-queues a stock push for the item; SKU exceptions for that storefront SKU resolve when "
            "the storefront confirms it.",
        ),
        RuleType(
            "transforms",
            IdentifierTransform,
            TransformForm,
            "Identifier transforms",
            [
                ("Name", lambda o: o.name),
                ("Connection", lambda o: o.connection.name if o.connection_id else ""),
                ("Channel", lambda o: o.channel.key if o.channel_id else ""),
                ("Strip zeros", lambda o: _yesno(o.strip_leading_zeros)),
                ("Pad to", lambda o: o.pad_to_length),
                ("Fixed length", lambda o: o.fixed_length),
                ("Prefix", lambda o: o.prefix),
                ("Suffix", lambda o: o.suffix),
                ("Case", lambda o: o.case),
                ("Active", lambda o: _yesno(o.active)),
            ],
            search=["name", "prefix", "suffix"],
            select_related=["connection", "channel"],
        ),
        RuleType(
            "channel-rules",
            ChannelStockRule,
            ChannelRuleForm,
            "Channel stock rules",
            [
                ("Channel", lambda o: o.channel.key),
                ("Mode", lambda o: o.get_mode_display()),
                ("Locations", lambda o: ", ".join(loc.code for loc in o.locations.all())),
                ("Pool", lambda o: o.pool.code if o.pool_id else ""),
                ("Safety buffer", lambda o: o.safety_buffer),
                ("Updated", lambda o: o.updated_at),
            ],
            search=["channel__key", "channel__name"],
            select_related=["channel", "pool"],
            prefetch=["locations"],
            after_save=after_channel_rule_saved,
            help="Saving recomputes and re-queues every mapped SKU on the channel.",
        ),
        RuleType(
            "shipping-methods",
            ShippingMethodMap,
            ShippingMapForm,
            "Shipping method maps",
            [
                ("Storefront method", lambda o: o.storefront_method),
                ("Warehouse method", lambda o: o.warehouse_method),
                ("Carrier", lambda o: o.carrier),
                ("Channel", lambda o: o.channel.key if o.channel_id else "all channels"),
                ("Active", lambda o: _yesno(o.active)),
            ],
            search=["storefront_method", "warehouse_method", "carrier"],
            select_related=["channel"],
            after_save=after_shipping_map_saved,
            help="Saving re-checks orders held for an unmapped shipping method.",
        ),
    ]
}
