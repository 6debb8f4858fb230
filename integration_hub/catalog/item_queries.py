"""Read side of the Items page: the filtered item list and, for one page of it, which channels sell each item,
which systems know it, its stock by location and state, and its open exceptions — a fixed number of queries per
page (one per column group), whatever the page holds."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Q

from exceptions_app.models import ACTIVE_STATUSES, ExceptionRecord

from .models import Item, PendingItemSync, SkuMapping, WarehouseProduct

ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STATES = {
    "pending": Q(pending=True),
    "active": Q(active=True, pending=False),
    "inactive": Q(active=False),
    "bundle": Q(is_bundle=True),
}
EXCEPTION_FILTERS = [
    ("master_data_drift", "master data drift"),
    ("not_on_storefront", "not on the storefront"),
    ("unknown_sku", "unknown SKU"),
    ("any", "any open exception"),
]


@dataclass
class ItemFilters:
    q: str = ""
    attribute: str = ""
    value: str = ""
    state: str = ""
    exception: str = ""

    def querystring(self) -> str:
        return urlencode({k: v for k, v in vars(self).items() if v})


def items(f: ItemFilters):
    qs = Item.objects.all()
    if f.q:
        qs = qs.filter(Q(sku__icontains=f.q) | Q(name__icontains=f.q) | Q(parent_sku__icontains=f.q) | Q(barcode=f.q))
    if f.attribute and ATTRIBUTE.match(f.attribute):
        qs = (
            qs.filter(**{f"attributes__{f.attribute}": f.value})
            if f.value
            else qs.filter(attributes__has_key=f.attribute)
        )
    if f.state in STATES:
        qs = qs.filter(STATES[f.state])
    if f.exception in {k for k, _ in EXCEPTION_FILTERS}:
        open_ = ExceptionRecord.objects.filter(status__in=ACTIVE_STATUSES).exclude(sku="")
        if f.exception != "any":
            open_ = open_.filter(kind=f.exception)
        qs = qs.filter(sku__in=open_.values("sku"))
    return qs.order_by("sku")


@dataclass
class ItemRow:
    item: Item
    channels: list
    systems: list
    waiting: list
    stock: list
    exceptions: list


def decorate(page_items: list[Item]) -> list[ItemRow]:
    """Five queries for the whole page."""
    ids = [i.pk for i in page_items]
    skus = [i.sku for i in page_items]
    channels, systems, waiting, stock, exc = (defaultdict(list) for _ in range(5))
    for item_id, sf_sku, ch in (
        SkuMapping.objects.filter(item_id__in=ids, active=True)
        .values_list("item_id", "storefront_sku", "channel__key")
        .order_by("storefront_sku")
    ):
        channels[item_id].append(f"{ch or 'every channel'}: {sf_sku}")
    for item_id, conn in (
        WarehouseProduct.objects.filter(item_id__in=ids)
        .values_list("item_id", "connection__name")
        .order_by("connection__name")
    ):
        systems[item_id].append(conn)
    for item_id, conn, attempts in (
        PendingItemSync.objects.filter(item_id__in=ids)
        .values_list("item_id", "connection__name", "attempts")
        .order_by("connection__name")
    ):
        waiting[item_id].append(f"{conn}{f' (failed {attempts}×)' if attempts else ''}")
    from integration_hub.inventory.models import StockLevel

    for item_id, loc, state, qty in (
        StockLevel.objects.filter(item_id__in=ids)
        .values_list("item_id", "location__code", "state", "quantity")
        .order_by("location__code", "state")
    ):
        stock[item_id].append(f"{loc} {state} {qty}")
    by_sku = {i.sku: i.pk for i in page_items}
    for sku, pk, kind, title in (
        ExceptionRecord.objects.filter(sku__in=skus, status__in=ACTIVE_STATUSES)
        .values_list("sku", "pk", "kind", "title")
        .order_by("-last_seen")[:500]
    ):
        exc[by_sku[sku]].append({"pk": pk, "kind": kind, "title": title})
    return [ItemRow(i, channels[i.pk], systems[i.pk], waiting[i.pk], stock[i.pk], exc[i.pk]) for i in page_items]
