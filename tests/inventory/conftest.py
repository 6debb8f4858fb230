"""Stock-engine fixtures: a small topology builder and an in-memory storefront fake."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from connectors import errors
from connectors.base import InventoryResult, StorefrontStock

_seq = itertools.count(1)


@dataclass
class World:
    """Builds connections, channels, locations, items and mappings with terse calls."""

    storefront: object = None
    master: object = None
    locations: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)

    def location(self, code):
        from integration_hub.core.models import Location

        if code not in self.locations:
            self.locations[code] = Location.objects.create(code=code, name=code, connection=self.master, external_id=code.upper())
        return self.locations[code]

    def channel(self, key, *, locations=(), pool=None, buffer=0, external_id=None, connection=None):
        from integration_hub.core.models import Channel
        from integration_hub.inventory.models import ChannelStockRule, StockPool

        ch = Channel.objects.create(key=key, name=key, connection=connection or self.storefront, external_id=external_id or f"sc-{key}")
        if pool is not None:
            p, _ = StockPool.objects.get_or_create(code=pool, defaults={"name": pool})
            rule = ChannelStockRule.objects.create(channel=ch, mode="shared", pool=p, safety_buffer=buffer)
        else:
            rule = ChannelStockRule.objects.create(channel=ch, mode="segregated", safety_buffer=buffer)
            rule.locations.set([self.location(c) for c in locations])
        self.channels[key] = ch
        return ch

    def pool(self, code, locations):
        from integration_hub.inventory.models import StockPool

        p, _ = StockPool.objects.get_or_create(code=code, defaults={"name": code})
        p.locations.set([self.location(c) for c in locations])
        return p

    def item(self, sku, *, mapped=True, storefront_sku=None, channel=None, buffer=None, bundle_of=None):
        from integration_hub.catalog.models import BundleComponent, Item, SkuMapping

        # seeded with bulk_create: no edit signals, so the outbox starts empty (tests of the signals that
        # re-queue stock after mapping / bundle edits use save() and delete() themselves)
        it = Item.objects.create(sku=sku, is_bundle=bool(bundle_of))
        BundleComponent.objects.bulk_create([BundleComponent(bundle=it, component=self.items[comp], quantity=qty)
                                             for comp, qty in (bundle_of or {}).items()])
        if mapped:
            SkuMapping.objects.bulk_create([SkuMapping(item=it, channel=self.channels[channel] if channel else None,
                                                       storefront_sku=storefront_sku or f"SF-{sku}", safety_buffer=buffer)])
        self.items[sku] = it
        return it

    def stock(self, sku, loc, qty, state="available"):
        from integration_hub.inventory.models import StockLevel

        StockLevel.objects.update_or_create(item=self.items[sku], location=self.location(loc), state=state,
                                            defaults={"quantity": qty})

    def reserve(self, sku, channel, qty, released=False):
        from django.utils import timezone

        from integration_hub.inventory.models import Reservation

        return Reservation.objects.create(item=self.items[sku], channel=self.channels[channel], order_ref=f"o-{next(_seq)}",
                                          quantity=qty, released_at=timezone.now() if released else None)


@pytest.fixture
def world(db, settings):
    from integration_hub.core.models import Connection

    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": False}
    w = World()
    w.storefront = Connection.objects.create(name="shop", system_type="commercetools", base_url="http://127.0.0.1:9/commercetools",
                                             options={"project_key": "p"})
    w.master = Connection(name="wair", system_type="wair", base_url="http://127.0.0.1:9/wair")
    w.master.set_webhook_secret("wair-hook-secret")  # each connection its own secret: there is no default
    w.master.save()
    return w


class FakeStorefront:
    """Records set_stock calls; per-SKU or whole-call failures on demand."""

    def __init__(self):
        self.calls: list[list] = []
        self.quantities: dict[tuple[str, str], int] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.raise_next: list[Exception] = []
        self.item_errors: dict[str, Exception] = {}
        self.on_call = None

    def set_stock(self, targets):
        self.calls.append(list(targets))
        if self.on_call:
            self.on_call(targets)
        if self.raise_next:
            raise self.raise_next.pop(0)
        out = []
        for t in targets:
            if t.sku in self.item_errors:
                out.append(InventoryResult(t.sku, t.channel_ref, t.quantity, ok=False, error=self.item_errors[t.sku]))
                continue
            key = (t.channel_ref, t.sku)
            self.quantities[key] = t.quantity
            self.versions[key] = self.versions.get(key, 0) + 1
            out.append(InventoryResult(t.sku, t.channel_ref, t.quantity, version=self.versions[key], ref=f"ie-{t.sku}"))
        return out

    def get_stock(self, skus, channel_ref):
        return [StorefrontStock(s, channel_ref, self.quantities[(channel_ref, s)], self.versions.get((channel_ref, s)))
                for s in skus if (channel_ref, s) in self.quantities]

    def list_skus(self):
        return sorted({s for _, s in self.quantities})

    @property
    def sent(self):
        return [t for call in self.calls for t in call]


@pytest.fixture
def fake_storefront(monkeypatch):
    fake = FakeStorefront()
    import connectors.registry as registry

    real = registry.get_connector

    def get(connection, fresh=False):
        if connection.system_type in ("commercetools", "sfcc"):
            return fake
        return real(connection, fresh)

    monkeypatch.setattr(registry, "get_connector", get)
    return fake


__all__ = ["World", "FakeStorefront", "errors"]


# --- over HTTP against the sandbox -----------------------------------------------------------------
def sandbox_control(sandbox, prefix, action, payload=None, method="POST"):
    import requests

    r = requests.request(method, f"{sandbox.url}/_sandbox/{prefix}/{action}", json=payload, timeout=30)
    r.raise_for_status()
    return r.json()


@pytest.fixture
def ct_world(world, sandbox):
    """``world`` whose storefront is the commercetools sandbox (real connector, real HTTP)."""
    import connectors.registry as registry

    registry.clear_cache()  # a reset sandbox has new channel ids: no connector cached from another test
    shop = world.storefront
    shop.base_url = shop.auth_url = f"{sandbox.url}/commercetools"
    shop.client_id = "hub-demo"
    shop.options = {"project_key": "hubtest"}
    shop.rate_limit_per_second, shop.rate_limit_burst, shop.max_retries = 500, 50, 2
    shop.set_secret("hub-demo-secret")
    shop.save()
    world.sandbox = sandbox
    world.control = lambda action, payload=None, method="POST": sandbox_control(sandbox, "commercetools", action, payload, method)
    yield world
    registry.clear_cache()
