"""Storefront order → what the warehouse needs: master SKUs, exploded bundles, mapped shipping method.

Pure lookups plus one builder; no state changes here (those live in the phase modules — :mod:`.lines`,
:mod:`.validate`, … — and :mod:`.state`).

SKU resolution (per channel, set-based: a fixed number of queries per batch of SKUs):
1. an active :class:`SkuMapping` for the channel, else a global one (``channel`` NULL);
2. else an active :class:`IdentifierTransform` that applies to the channel (channel-specific first,
   then ones for the channel's storefront connection, then global): the storefront SKU is the
   transform's output, so candidate master SKUs are derived by undoing prefix/suffix/case/zero padding
   and each candidate Item is confirmed by re-applying the transform (``apply(item.sku) == sku``). Two
   different items matching is ambiguous and resolves to nothing (the order is held, not guessed).
3. otherwise the SKU is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from connectors.base import Address, WarehouseOrder, WarehouseOrderLine
from integration_hub.catalog.models import BundleComponent, IdentifierTransform, Item, SkuMapping
from integration_hub.catalog.transforms import TransformError, TransformSpec, apply

from .models import Order, ShippingMethodMap

MAX_PAD = 20
CANDIDATE_CHUNK = 2000  # item lookups per query when undoing transforms (well under SQLite's 32,766 parameters)
ADDRESS_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "street",
    "street2",
    "postal_code",
    "city",
    "region",
    "country",
    "phone",
    "email",
)
REQUIRED_ADDRESS = ("street", "postal_code", "city", "country")


@dataclass
class Resolution:
    item: Item | None
    how: str  # "mapping:channel" | "mapping:global" | "transform:<name>" | "unknown" | "ambiguous"


def _candidates(sku: str, spec: TransformSpec) -> set[str]:
    """Master identifiers that ``spec`` could have turned into ``sku`` (a superset; confirmed later)."""
    value = sku.strip()
    if spec.prefix:
        if not value.lower().startswith(spec.prefix.lower()):
            return set()
        value = value[len(spec.prefix) :]
    if spec.suffix:
        if not value.lower().endswith(spec.suffix.lower()):
            return set()
        value = value[: -len(spec.suffix)]
    if not value:
        return set()
    bases = {value, value.upper(), value.lower()} if spec.case != "keep" else {value}
    out = set()
    for base in bases:
        out.add(base)
        core = base.lstrip("0") or "0"
        out.add(core)
        if spec.strip_leading_zeros or spec.pad_to_length:
            out.update(core.zfill(n) for n in range(len(core) + 1, MAX_PAD + 1))
    return out


def resolve_skus(channel, skus) -> dict[str, Resolution]:
    """storefront SKU → Resolution for one channel."""
    skus = sorted({s for s in skus if s})
    out: dict[str, Resolution] = {}
    if not skus:
        return out
    for m in (
        SkuMapping.objects.filter(storefront_sku__in=skus, active=True)
        .filter(Q(channel=channel) | Q(channel__isnull=True))
        .select_related("item")
    ):
        current = out.get(m.storefront_sku)
        if m.channel_id is not None or current is None:
            out[m.storefront_sku] = Resolution(m.item, "mapping:channel" if m.channel_id else "mapping:global")
    missing = [s for s in skus if s not in out]
    if missing:
        transforms = list(
            IdentifierTransform.objects.filter(active=True).filter(
                Q(channel=channel)
                | Q(channel__isnull=True, connection_id=channel.connection_id)
                | Q(channel__isnull=True, connection__isnull=True)
            )
        )
        transforms.sort(key=lambda t: (t.channel_id is None, t.connection_id is None, t.name))
        if transforms:
            specs = [(t, TransformSpec.from_model(t)) for t in transforms]
            wanted: dict[str, set[str]] = {}
            for sku in missing:
                for _, spec in specs:
                    for c in _candidates(sku, spec):
                        wanted.setdefault(c, set()).add(sku)
            names = sorted(wanted)
            items = []
            for start in range(0, len(names), CANDIDATE_CHUNK):
                items += list(Item.objects.filter(sku__in=names[start : start + CANDIDATE_CHUNK], active=True))
            for sku in missing:
                for t, spec in specs:  # first transform (most specific) that matches wins
                    hits = []
                    for item in items:
                        if sku not in wanted.get(item.sku, ()):
                            continue
                        try:
                            if apply(item.sku, spec) == sku:
                                hits.append(item)
                        except TransformError:
                            continue
                    if len(hits) == 1:
                        out[sku] = Resolution(hits[0], f"transform:{t.name}")
                        break
                    if len(hits) > 1:
                        out[sku] = Resolution(None, "ambiguous")
                        break
    for sku in skus:
        out.setdefault(sku, Resolution(None, "unknown"))
    return out


def bundle_components(item_ids) -> dict[int, list[tuple[Item, int]]]:
    """bundle item id → [(component item, quantity per bundle)] (one query)."""
    out: dict[int, list[tuple[Item, int]]] = {}
    ids = list({int(i) for i in item_ids})
    if not ids:
        return out
    for bc in (
        BundleComponent.objects.filter(bundle_id__in=ids)
        .select_related("component")
        .order_by("bundle_id", "component__sku")
    ):
        out.setdefault(bc.bundle_id, []).append((bc.component, bc.quantity))
    return out


def shipping_maps(channel_ids) -> dict[tuple[int | None, str], ShippingMethodMap]:
    """(channel id | None, storefront method) → active map row, for the given channels plus global rows."""
    ids = list({int(i) for i in channel_ids})
    return {
        (m.channel_id, m.storefront_method): m
        for m in ShippingMethodMap.objects.filter(active=True).filter(Q(channel_id__in=ids) | Q(channel__isnull=True))
    }


def map_shipping(maps: dict, channel_id: int, method: str) -> ShippingMethodMap | None:
    """Channel-specific row first, then the global one."""
    return maps.get((channel_id, method)) or maps.get((None, method))


def address_from_dict(d: dict | None) -> Address:
    d = d or {}
    return Address(**{f: str(d.get(f) or "") for f in ADDRESS_FIELDS})


def address_problems(prefix: str, d: dict | None) -> dict[str, str]:
    """{field path: message} for an address the warehouse could not ship to."""
    d = d or {}
    problems = {}
    if not (d.get("first_name") or d.get("last_name") or d.get("company")):
        problems[f"{prefix}.last_name"] = "a recipient name or company is required"
    for f in REQUIRED_ADDRESS:
        if not str(d.get(f) or "").strip():
            problems[f"{prefix}.{f}"] = f"{f} is required"
    country = str(d.get("country") or "")
    if country and (len(country) != 2 or not country.isalpha()):
        problems[f"{prefix}.country"] = f"country {country!r} must be an ISO 3166-1 alpha-2 code"
    return problems


def build_warehouse_order(order: Order, lines=None) -> WarehouseOrder:
    """The WarehouseOrder for a validated order. ``lines``: the order's lines with ``item`` and ``parent``
    loaded (pass them to avoid queries). A bundle line is sent as itself, marked ``pickable=False`` (every
    warehouse connector says so in its own wire terms), followed by its component lines, each naming it in
    ``parent_line_id``: the warehouse picks, allocates and ships the components, never the parent.
    Deterministic: the same order always gives the same body (the warehouse deduplicates on the key *and*
    refuses a reused key with a different body)."""
    lines = list(order.lines.select_related("item").all()) if lines is None else lines
    by_id = {ln.pk: ln for ln in lines}
    parents = {ln.parent_id for ln in lines if ln.parent_id}
    out = []
    for ln in sorted(lines, key=lambda x: x.pk):
        parent = by_id.get(ln.parent_id) if ln.parent_id else None
        out.append(
            WarehouseOrderLine(
                line_id=ln.line_id,
                sku=ln.item.sku if ln.item else "",
                quantity=ln.quantity,
                parent_line_id=parent.line_id if parent else "",
                pickable=ln.pk not in parents,
                unit_price_cents=ln.unit_price_cents,
                custom_fields=dict(ln.custom_fields or {}),
            )
        )
    custom = dict(order.custom_fields or {})
    if order.promotion_codes:
        custom.setdefault("promotionCodes", list(order.promotion_codes))
    return WarehouseOrder(
        order_ref=order.idempotency_key,
        order_number=order.order_number or order.external_id,
        channel=order.channel.key,
        lines=out,
        shipping_address=address_from_dict(order.shipping_address),
        shipping_method=order.warehouse_shipping_method,
        carrier=order.warehouse_carrier,
        billing_address=address_from_dict(order.billing_address) if order.billing_address else None,
        customer_email=order.customer_email,
        gift_message=order.gift_message,
        delivery_notes=order.delivery_notes,
        custom_fields=custom,
        placed_at=order.placed_at,
        currency=order.currency,
        total_cents=order.total_cents,
    )
