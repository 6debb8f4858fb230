"""Plain data builders shared by the console, API, reconciliation and browser tests."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from exceptions_app import kinds
from exceptions_app import services as exc
from exceptions_app.models import ExceptionRecord, Kind
from integration_hub.catalog.models import Item, SkuMapping
from integration_hub.core.models import Channel, Connection, Location
from integration_hub.inventory.models import ChannelStock, ChannelStockRule, PendingPush, StockLevel
from integration_hub.orders.models import Order, OrderLine, OrderState


class World:
    pass


def world() -> World:
    w = World()
    w.storefront = Connection.objects.create(name="ct", system_type="commercetools", base_url="http://127.0.0.1:1/ct")
    w.master = Connection.objects.create(name="wair", system_type="wair", base_url="http://127.0.0.1:1/wair")
    w.channel = Channel.objects.create(key="web", name="Web shop", connection=w.storefront, external_id="web-sc", warehouse=w.master)
    w.location = Location.objects.create(code="wh1", name="Warehouse 1", connection=w.master, external_id="WH1")
    w.rule = ChannelStockRule.objects.create(channel=w.channel, mode="segregated", safety_buffer=0)
    w.rule.locations.add(w.location)
    w.items = [Item.objects.create(sku=f"00{1000 + i:06d}", name=f"Item {i}", unit_cost=Decimal("2.50")) for i in range(3)]
    return w


def items(n: int, prefix: str = "00", cost="1.25") -> list[Item]:
    objs = [Item(sku=f"{prefix}{5000 + i:06d}", name=f"bulk {i}", unit_cost=Decimal(cost) if cost else None) for i in range(n)]
    Item.objects.bulk_create(objs)
    return list(Item.objects.filter(sku__in=[o.sku for o in objs]).order_by("sku"))


def sku_exceptions(w: World, its: list[Item], kind: str = Kind.SKU_MISMATCH, strip=True) -> list[ExceptionRecord]:
    """A mismatch per item: the storefront lists the SKU without leading zeros."""
    problems = []
    for it in its:
        sf = it.sku.lstrip("0") if strip else f"X{it.sku}"
        problems.append(exc.Problem(kind=kind, key=kinds.key(kind, w.channel.key, sf), title=f"{sf} unmapped on web",
                                    severity="warning", channel_id=w.channel.pk, connection_id=w.storefront.pk, sku=sf,
                                    context={"storefront_sku": sf, "channel": w.channel.key, "action": "map_sku"}))
    exc.raise_many(problems)
    return list(ExceptionRecord.objects.filter(dedupe_key__in=[p.key for p in problems]).order_by("id"))


def orders(w: World, n: int, state=OrderState.SENT, start=0, **fields) -> list[Order]:
    objs = [Order(channel=w.channel, external_id=f"ext-{start + i}", order_number=f"WEB-{start + i}", state=state,
                  idempotency_key=f"web:ext-{start + i}", warehouse=w.master, **fields) for i in range(n)]
    Order.objects.bulk_create(objs)
    out = list(Order.objects.filter(idempotency_key__in=[o.idempotency_key for o in objs]).order_by("id"))
    OrderLine.objects.bulk_create([OrderLine(order=o, line_id="l1", storefront_sku=w.items[0].sku.lstrip("0"), item=w.items[0], quantity=1)
                                   for o in out])
    return out


def pushes(w: World, its: list[Item]) -> None:
    PendingPush.objects.bulk_create([PendingPush(channel=w.channel, item=i, reason="test") for i in its])


def stock(w: World, its: list[Item], qty: int) -> None:
    StockLevel.objects.bulk_create([StockLevel(item=i, location=w.location, state="available", quantity=qty) for i in its])


def mappings(w: World, its: list[Item], channel=True) -> list[SkuMapping]:
    SkuMapping.objects.bulk_create([SkuMapping(item=i, channel=w.channel if channel else None, storefront_sku=i.sku.lstrip("0"))
                                    for i in its])
    return list(SkuMapping.objects.filter(item__in=its))


def channel_stock(w: World, its: list[Item], observed: int | None, confirmed: int | None = None) -> None:
    ChannelStock.objects.bulk_create([ChannelStock(channel=w.channel, item=i, storefront_sku=i.sku.lstrip("0"),
                                                   observed_quantity=observed, confirmed_quantity=confirmed) for i in its])


def grow_rule_tables(w: World, n: int, tag: str) -> None:
    """n more rows in every rules table (with the relations their list pages show) and their audit entries."""
    from integration_hub.catalog.models import IdentifierTransform
    from integration_hub.inventory.models import StockPool
    from integration_hub.orders.models import ShippingMethodMap

    mappings(w, items(n, prefix=tag))
    for i in range(n):
        IdentifierTransform.objects.create(name=f"t{tag}-{i}", connection=w.storefront, channel=w.channel, prefix=f"P{i}")
        ch = Channel.objects.create(key=f"c{tag}-{i}", name=f"Channel {tag}-{i}", connection=w.storefront, external_id=f"x{tag}{i}")
        loc = Location.objects.create(code=f"l{tag}-{i}", name="loc", connection=w.master, external_id=f"L{tag}{i}")
        if i % 2:
            rule = ChannelStockRule.objects.create(channel=ch, mode="segregated")
            rule.locations.add(loc, w.location)
        else:
            pool = StockPool.objects.create(code=f"p{tag}-{i}", name="pool")
            ChannelStockRule.objects.create(channel=ch, mode="shared", pool=pool)
        ShippingMethodMap.objects.create(channel=ch if i % 2 else None, storefront_method=f"m{tag}-{i}", warehouse_method="STD")


def ago(**kw):
    return timezone.now() - timedelta(**kw)


def count_queries(client, url, method="get", **kw) -> int:
    """Queries one request runs, after a warm-up request (per-process caches such as content types)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    getattr(client, method)(url, **kw)
    with CaptureQueriesContext(connection) as ctx:
        r = getattr(client, method)(url, **kw)
    assert r.status_code == 200, (url, r.status_code, r.content[:300])
    return len(ctx.captured_queries)
