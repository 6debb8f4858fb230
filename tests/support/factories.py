"""Test data per concept (as django-oscar's per-concept factories), and the one world builder.

- connections: :func:`connection` (any system type, valid options by default), :func:`sandbox_connection` (one that
  talks to the sandbox emulator of its type, with the credentials the emulator accepts);
- topology: :func:`location`, :func:`channel`, :func:`stock_rule`, :func:`pool`;
- catalogue: :func:`item` (a bundle with ``bundle_of``), :func:`mapping`, :func:`shipping_maps`, bulk :func:`items`;
- stock: :func:`stock_level`, :func:`reservation`; orders: :func:`order` (with lines), bulk :func:`orders`;
- :class:`World` — the one builder: a storefront and a master connection plus terse calls that add locations,
  channels with their rules, items with mappings, stock and reservations. The named scenes the suites start from
  (:func:`console_world`, :func:`order_world`, :func:`sandbox_order_world`) are built with it.

Everything here writes rows; nothing patches. Fakes live in :mod:`tests.support.fakes`, the sandbox client in
:mod:`tests.support.sandbox`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

_seq = itertools.count(1)

# --- connections -------------------------------------------------------------------------------------------
# the credentials each sandbox emulator accepts by default
SECRETS = {
    "commercetools": "hub-demo-secret",
    "sfcc": "am-secret",
    "wair": "wair-demo-key",
    "clarus": "clarus-demo-key",
    "archean": "archean-demo-key",
    "inventory_planner": "ip-demo-key",
    "wair_replenishment": "wair-demo-password",
}

CLARUS_OPTIONS = {
    "subdomain": "demo",
    "account_id": "1",
    "warehouse_id": "DC1",
    "webhook_domain": "https://demo.claruswms.co.uk",
    "webhook_api_domain": "https://clarus-api.com",
    "webhook_automation_ids": ["41", "42", "43"],
}

# the options without which a connector of the type cannot be built (connectors/options.py)
VALID_OPTIONS = {
    "commercetools": {"project_key": "demo"},
    "sfcc": {"site_id": "RefArch"},
    "clarus": {"subdomain": "demo"},
    "inventory_planner": {"account": "demo-account"},
    "wair_replenishment": {"tenant": "DEMO"},
    "wair": {},
    "archean": {},
}


def connection(
    system_type: str, name: str | None = None, *, secret: str | None = None, webhook_secret: str | None = None, **fields
):
    """A saved ``Connection`` of ``system_type`` (named after it unless ``name``), at an unreachable local URL unless
    ``base_url``, with valid options for its type unless ``options`` is given. ``secret`` / ``webhook_secret`` are
    stored encrypted; any other ``Connection`` field may be passed."""
    from integration_hub.core.models import Connection

    fields.setdefault("base_url", f"http://127.0.0.1:9/{system_type}")
    fields.setdefault("options", dict(VALID_OPTIONS.get(system_type, {})))
    conn = Connection(name=name or system_type, system_type=system_type, **fields)
    if secret is not None:
        conn.set_secret(secret)
    if webhook_secret is not None:
        conn.set_webhook_secret(webhook_secret)
    conn.save()
    return conn


def sandbox_connection(sandbox, system_type: str, name: str | None = None, **fields):
    """A connection to the sandbox's emulator of ``system_type``: its URL, the client id / options / secret the
    emulator accepts, a fast rate limit and few retries (each overridable). SFCC's Account Manager client is
    configured on the emulator too."""
    from tests.support.sandbox import control

    url = f"{sandbox.url}/{system_type}"
    fields = {
        "base_url": url,
        "rate_limit_per_second": 500,
        "rate_limit_burst": 100,
        "timeout_seconds": 5,
        "max_retries": 2,
        **_sandbox_defaults(system_type, url),
        **fields,
    }
    fields.setdefault("secret", SECRETS[system_type])
    if system_type == "sfcc":
        control(
            sandbox,
            "sfcc",
            "configure_client",
            {"client_id": fields.get("client_id", "am-client"), "client_secret": fields["secret"]},
        )
    return connection(system_type, name, **fields)


def _sandbox_defaults(system_type: str, url: str) -> dict:
    if system_type == "commercetools":
        return {"auth_url": url, "client_id": "hub-demo", "options": {"project_key": "hubtest"}}
    if system_type == "sfcc":  # the Account Manager root, as seed_demo sets it
        return {"auth_url": url, "client_id": "am-client", "options": {"site_id": "RefArch"}}
    if system_type == "inventory_planner":
        return {"client_id": "demo-account", "options": {}}
    if system_type == "clarus":  # OAuth client credentials + the tenant subdomain; webhooks identified by headers
        return {"client_id": "hub-demo", "options": dict(CLARUS_OPTIONS)}
    if system_type == "wair_replenishment":
        return {"client_id": "hub", "options": {"tenant": "DEMO"}}
    return {"options": {}}


# --- topology ----------------------------------------------------------------------------------------------
def location(connection, code: str, *, external_id: str | None = None, name: str | None = None, **fields):
    from integration_hub.core.models import Location

    return Location.objects.create(
        code=code, name=name or code, connection=connection, external_id=external_id or code.upper(), **fields
    )


def channel(connection, key: str, *, external_id: str | None = None, name: str | None = None, warehouse=None, **fields):
    from integration_hub.core.models import Channel

    return Channel.objects.create(
        key=key,
        name=name or key,
        connection=connection,
        external_id=external_id or f"sc-{key}",
        warehouse=warehouse,
        **fields,
    )


def pool(code: str, locations=()):
    from integration_hub.inventory.models import StockPool

    p, _ = StockPool.objects.get_or_create(code=code, defaults={"name": code})
    if locations:
        p.locations.set(list(locations))
    return p


_pool = pool  # World.channel's ``pool`` argument is a code


def stock_rule(channel, *, locations=(), pool=None, safety_buffer: int = 0, add: bool = False):
    """The channel's stock rule: ``shared`` from ``pool`` if given, else ``segregated`` from ``locations``
    (``add``: added one by one, as a form would, instead of set at once)."""
    from integration_hub.inventory.models import ChannelStockRule

    if pool is not None:
        return ChannelStockRule.objects.create(channel=channel, mode="shared", pool=pool, safety_buffer=safety_buffer)
    rule = ChannelStockRule.objects.create(channel=channel, mode="segregated", safety_buffer=safety_buffer)
    if add:
        rule.locations.add(*locations)
    else:
        rule.locations.set(list(locations))
    return rule


# --- catalogue ---------------------------------------------------------------------------------------------
def item(sku: str, *, name: str | None = None, bundle_of: dict | None = None, signals: bool = True, **fields):
    """An ``Item``; ``bundle_of`` {component Item: quantity} makes it a bundle. ``signals=False`` writes the
    components with ``bulk_create`` (no edit signals: the stock outbox stays empty)."""
    from integration_hub.catalog.models import BundleComponent, Item

    if name is not None:
        fields["name"] = name
    it = Item.objects.create(sku=sku, is_bundle=bool(bundle_of) or fields.pop("is_bundle", False), **fields)
    components = [BundleComponent(bundle=it, component=comp, quantity=qty) for comp, qty in (bundle_of or {}).items()]
    if signals:
        for c in components:
            c.save()
    else:
        BundleComponent.objects.bulk_create(components)
    return it


def mapping(item, storefront_sku: str | None = None, *, channel=None, signals: bool = True, **fields):
    """A ``SkuMapping`` (``storefront_sku`` defaults to the item's SKU); ``signals=False``: bulk_create, no signals."""
    from integration_hub.catalog.models import SkuMapping

    m = SkuMapping(item=item, channel=channel, storefront_sku=storefront_sku or item.sku, **fields)
    if signals:
        m.save()
    else:
        SkuMapping.objects.bulk_create([m])
    return m


def shipping_maps(rows=(("standard", "STD48", "royal_mail"), ("express", "EXP24", "dhl")), channel=None):
    """Storefront shipping method → warehouse method + carrier (default: standard → STD48 royal_mail, express → EXP24 dhl)."""
    from integration_hub.orders.models import ShippingMethodMap

    return [
        ShippingMethodMap.objects.create(channel=channel, storefront_method=sf, warehouse_method=wh, carrier=carrier)
        for sf, wh, carrier in rows
    ]


def items(n: int, prefix: str = "00", cost="1.25") -> list:
    """``n`` items in one bulk insert (SKUs ``<prefix>005000`` …), sorted by SKU."""
    from integration_hub.catalog.models import Item

    objs = [
        Item(sku=f"{prefix}{5000 + i:06d}", name=f"bulk {i}", unit_cost=Decimal(cost) if cost else None)
        for i in range(n)
    ]
    Item.objects.bulk_create(objs)
    return list(Item.objects.filter(sku__in=[o.sku for o in objs]).order_by("sku"))


# --- stock -------------------------------------------------------------------------------------------------
def stock_level(item, location, quantity: int, state: str = "available"):
    from integration_hub.inventory.models import StockLevel

    level, _ = StockLevel.objects.update_or_create(
        item=item, location=location, state=state, defaults={"quantity": quantity}
    )
    return level


def reservation(item, channel, quantity: int, *, order_ref: str | None = None, released: bool = False):
    from integration_hub.inventory.models import Reservation

    return Reservation.objects.create(
        item=item,
        channel=channel,
        order_ref=order_ref or f"o-{next(_seq)}",
        quantity=quantity,
        released_at=timezone.now() if released else None,
    )


# --- orders ------------------------------------------------------------------------------------------------
def order(channel, external_id: str, lines=(), *, state="captured", warehouse=None, **fields):
    """An ``Order`` on ``channel`` with ``lines`` [(Item, quantity)] (line ids l1, l2 …, storefront SKU = item SKU)."""
    from integration_hub.orders.models import Order, OrderLine

    fields.setdefault("order_number", external_id)
    fields.setdefault("idempotency_key", f"{channel.key}:{external_id}")
    o = Order.objects.create(
        channel=channel, external_id=external_id, state=state, warehouse=warehouse or channel.warehouse, **fields
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(order=o, line_id=f"l{i}", storefront_sku=it.sku, item=it, quantity=qty)
            for i, (it, qty) in enumerate(lines, 1)
        ]
    )
    return o


# --- the world builder -------------------------------------------------------------------------------------
@dataclass
class World:
    """A storefront and a master connection, and terse calls that add the rest; what was built is kept by key."""

    storefront: object = None
    master: object = None
    locations: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)

    def location(self, code):
        if code not in self.locations:
            self.locations[code] = location(self.master, code)
        return self.locations[code]

    def channel(self, key, *, locations=(), pool=None, buffer=0, external_id=None, connection=None):
        ch = channel(connection or self.storefront, key, external_id=external_id)
        if pool is not None:
            stock_rule(ch, pool=_pool(pool), safety_buffer=buffer)
        else:
            stock_rule(ch, locations=[self.location(c) for c in locations], safety_buffer=buffer)
        self.channels[key] = ch
        return ch

    def pool(self, code, locations):
        p = pool(code)
        p.locations.set([self.location(c) for c in locations])
        return p

    def item(self, sku, *, mapped=True, storefront_sku=None, channel=None, buffer=None, bundle_of=None):
        # seeded with bulk_create: no edit signals, so the outbox starts empty (tests of the signals that
        # re-queue stock after mapping / bundle edits use save() and delete() themselves)
        it = item(sku, bundle_of={self.items[comp]: qty for comp, qty in (bundle_of or {}).items()}, signals=False)
        if mapped:
            mapping(
                it,
                storefront_sku or f"SF-{sku}",
                channel=self.channels[channel] if channel else None,
                safety_buffer=buffer,
                signals=False,
            )
        self.items[sku] = it
        return it

    def stock(self, sku, loc, qty, state="available"):
        stock_level(self.items[sku], self.location(loc), qty, state)

    def reserve(self, sku, channel, qty, released=False):
        return reservation(self.items[sku], self.channels[channel], qty, released=released)


class Scene:
    """What a named scene built, as attributes (``w.channel``, ``w.location``, ``w.items`` …)."""

    def __init__(self, **built):
        self.__dict__.update(built)


def console_world() -> Scene:
    """The console / API / reconciliation / browser tests' start: storefront ``ct`` and master ``wair`` (no options:
    never connected), channel ``web`` fulfilled from ``wh1``, three priced items (``items``: a list)."""
    storefront = connection("commercetools", "ct", base_url="http://127.0.0.1:1/ct", options={})
    master = connection("wair", "wair", base_url="http://127.0.0.1:1/wair", options={})
    ch = channel(storefront, "web", name="Web shop", external_id="web-sc", warehouse=master)
    loc = location(master, "wh1", name="Warehouse 1", external_id="WH1")
    rule = stock_rule(ch, locations=[loc], add=True)
    its = [item(f"00{1000 + i:06d}", name=f"Item {i}", unit_cost=Decimal("2.50")) for i in range(3)]
    return Scene(storefront=storefront, master=master, channel=ch, location=loc, rule=rule, items=its)


def order_world() -> Scene:
    """The order tests' start: storefront ``ct`` and warehouse ``wair`` (own webhook secrets), channel ``uk-web``
    from ``dc1``, items SKU-1…3 and 000123, bundle BUNDLE-1 = 2×SKU-1 + SKU-2, mappings for SKU-1, SKU-2, BUNDLE-1,
    the standard / express shipping maps. ``ct`` / ``wh``, ``channel``, ``location``, ``items`` (by SKU)."""
    ct = connection(
        "commercetools", "ct", base_url="http://127.0.0.1:9/commercetools", webhook_secret="ct-hook-secret"
    )  # each connection its own secret: there is no default
    wh = connection("wair", "wair", base_url="http://127.0.0.1:9/wair", webhook_secret="wair-hook-secret")
    ch = channel(ct, "uk-web", name="UK web", external_id="uk-web", warehouse=wh)
    loc = location(wh, "dc1", name="DC1", external_id="DC1")
    stock_rule(ch, locations=[loc], add=True)
    its = {s: item(s, name=s) for s in ("SKU-1", "SKU-2", "SKU-3", "000123")}
    its["BUNDLE-1"] = item("BUNDLE-1", name="gift set", bundle_of={its["SKU-1"]: 2, its["SKU-2"]: 1})
    for s in ("SKU-1", "SKU-2", "BUNDLE-1"):
        mapping(its[s], s)
    shipping_maps()
    return Scene(ct=ct, wh=wh, channel=ch, items=its, location=loc)


def sandbox_order_world(sandbox, *, rate=1000.0, retries=4, timeout=5.0):
    """``(ct, wh, channel)``: commercetools + WAIR connections to the sandbox, channel ``uk-web``, SKU-1…3 mapped and
    seeded on the storefront (100,000 each), the standard / express shipping maps (call inside a db-enabled test)."""
    from django.core.cache import cache

    from connectors.registry import clear_cache
    from tests.support.sandbox import control

    cache.clear()
    clear_cache()
    limits = {
        "rate_limit_per_second": rate,
        "rate_limit_burst": int(rate),
        "timeout_seconds": timeout,
        "max_retries": retries,
    }
    ct = connection(
        "commercetools",
        "ct-sbx",
        base_url=f"{sandbox.url}/commercetools",
        auth_url=f"{sandbox.url}/commercetools",
        client_id="hub-demo",
        options={"project_key": "demo"},
        secret="hub-demo-secret",
        webhook_secret="ct-hook-secret",
        **limits,
    )
    wh = connection(
        "wair",
        "wair-sbx",
        base_url=f"{sandbox.url}/wair",
        options={"page_size": 500},
        secret="wair-demo-key",
        webhook_secret="wair-hook-secret",
        **limits,
    )
    ch = channel(ct, "uk-web", name="UK web", external_id="uk-web", warehouse=wh)
    skus = ["SKU-1", "SKU-2", "SKU-3"]
    for s in skus:
        mapping(item(s), s)
    shipping_maps()
    control(sandbox, "commercetools", "seed_catalog", {"channels": ["uk-web"], "skus": skus, "quantity": 100000})
    return ct, wh, ch


# --- bulk rows for the console / API / reconciliation tests (take a Scene from console_world) ---------------------
def sku_exceptions(w, its, kind=None, strip=True):
    """A mismatch per item: the storefront lists the SKU without leading zeros."""
    from exceptions_app import kinds, services as exc
    from exceptions_app.models import ExceptionRecord, Kind

    kind = kind or Kind.SKU_MISMATCH
    problems = []
    for it in its:
        sf = it.sku.lstrip("0") if strip else f"X{it.sku}"
        problems.append(
            exc.Problem(
                kind=kind,
                key=kinds.key(kind, w.channel.key, sf),
                title=f"{sf} unmapped on web",
                severity="warning",
                channel_id=w.channel.pk,
                connection_id=w.storefront.pk,
                sku=sf,
                context={"storefront_sku": sf, "channel": w.channel.key, "action": "map_sku"},
            )
        )
    exc.raise_many(problems)
    return list(ExceptionRecord.objects.filter(dedupe_key__in=[p.key for p in problems]).order_by("id"))


def orders(w, n: int, state=None, start=0, **fields) -> list:
    """``n`` orders on the scene's channel in one bulk insert (``ext-<i>``, ``WEB-<i>``), a line of the first item each."""
    from integration_hub.orders.models import Order, OrderLine, OrderState

    state = state or OrderState.SENT
    objs = [
        Order(
            channel=w.channel,
            external_id=f"ext-{start + i}",
            order_number=f"WEB-{start + i}",
            state=state,
            idempotency_key=f"web:ext-{start + i}",
            warehouse=w.master,
            **fields,
        )
        for i in range(n)
    ]
    Order.objects.bulk_create(objs)
    out = list(Order.objects.filter(idempotency_key__in=[o.idempotency_key for o in objs]).order_by("id"))
    OrderLine.objects.bulk_create(
        [
            OrderLine(order=o, line_id="l1", storefront_sku=w.items[0].sku.lstrip("0"), item=w.items[0], quantity=1)
            for o in out
        ]
    )
    return out


def pushes(w, its) -> None:
    from integration_hub.inventory.models import PendingPush

    PendingPush.objects.bulk_create([PendingPush(channel=w.channel, item=i, reason="test") for i in its])


def stock(w, its, qty: int) -> None:
    from integration_hub.inventory.models import StockLevel

    StockLevel.objects.bulk_create(
        [StockLevel(item=i, location=w.location, state="available", quantity=qty) for i in its]
    )


def mappings(w, its, channel=True) -> list:
    from integration_hub.catalog.models import SkuMapping

    SkuMapping.objects.bulk_create(
        [SkuMapping(item=i, channel=w.channel if channel else None, storefront_sku=i.sku.lstrip("0")) for i in its]
    )
    return list(SkuMapping.objects.filter(item__in=its))


def channel_stock(w, its, observed: int | None, confirmed: int | None = None) -> None:
    from integration_hub.inventory.models import ChannelStock

    ChannelStock.objects.bulk_create(
        [
            ChannelStock(
                channel=w.channel,
                item=i,
                storefront_sku=i.sku.lstrip("0"),
                observed_quantity=observed,
                confirmed_quantity=confirmed,
            )
            for i in its
        ]
    )


def grow_rule_tables(w, n: int, tag: str) -> None:
    """n more rows in every rules table (with the relations their list pages show) and their audit entries."""
    from integration_hub.catalog.models import IdentifierTransform
    from integration_hub.inventory.models import StockPool
    from integration_hub.orders.models import ShippingMethodMap

    mappings(w, items(n, prefix=tag))
    for i in range(n):
        IdentifierTransform.objects.create(
            name=f"t{tag}-{i}", connection=w.storefront, channel=w.channel, prefix=f"P{i}"
        )
        ch = channel(w.storefront, f"c{tag}-{i}", name=f"Channel {tag}-{i}", external_id=f"x{tag}{i}")
        loc = location(w.master, f"l{tag}-{i}", name="loc", external_id=f"L{tag}{i}")
        if i % 2:
            stock_rule(ch, locations=[loc, w.location], add=True)
        else:
            stock_rule(ch, pool=StockPool.objects.create(code=f"p{tag}-{i}", name="pool"))
        ShippingMethodMap.objects.create(
            channel=ch if i % 2 else None, storefront_method=f"m{tag}-{i}", warehouse_method="STD"
        )


def ago(**kw):
    return timezone.now() - timedelta(**kw)


def count_queries(client, url, method="get", **kw) -> int:
    """Queries one request runs, after a warm-up request (per-process caches such as content types)."""
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    getattr(client, method)(url, **kw)
    with CaptureQueriesContext(db) as ctx:
        r = getattr(client, method)(url, **kw)
    assert r.status_code == 200, (url, r.status_code, r.content[:300])
    return len(ctx.captured_queries)
