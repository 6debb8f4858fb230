"""Order-flow fixtures: a small catalogue + channel, fakes for unit tests, sandbox connections for HTTP tests."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest
import requests

from connectors.base import Acknowledgement, Address, OrderLineData, StorefrontOrder

_seq = itertools.count(1)


def make_so(external_id=None, lines=(("SKU-1", 1),), channel_ref="uk-web", **kw) -> StorefrontOrder:
    n = next(_seq)
    external_id = external_id or f"ct-{n}"
    addr = kw.pop("shipping_address", None) or Address(first_name="Alex", last_name="Morgan", street="12 High Street",
                                                       postal_code="SW1A 1AA", city="London", country="GB", email="a@example.com")
    return StorefrontOrder(
        external_id=external_id, order_number=kw.pop("order_number", f"N{n}"), channel_ref=channel_ref,
        lines=[OrderLineData(line_id=f"{external_id}-L{i}", sku=s, quantity=q, unit_price_cents=1000)
               for i, (s, q) in enumerate(lines, 1)],
        version=1, placed_at=datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc), currency="GBP", total_cents=2000,
        customer_email="a@example.com", shipping_address=addr, billing_address=addr,
        shipping_method=kw.pop("shipping_method", "standard"), **kw)


@pytest.fixture
def world(db):
    """Storefront + warehouse connections, channel uk-web, items, a bundle, mappings, a shipping map."""
    from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
    from integration_hub.core.models import Channel, Connection, Location
    from integration_hub.inventory.models import ChannelStockRule
    from integration_hub.orders.models import ShippingMethodMap

    ct = Connection(name="ct", system_type="commercetools", base_url="http://127.0.0.1:9/commercetools",
                    options={"project_key": "demo"})
    ct.set_webhook_secret("ct-hook-secret")  # each connection its own secret: there is no default
    ct.save()
    wh = Connection(name="wair", system_type="wair", base_url="http://127.0.0.1:9/wair")
    wh.set_webhook_secret("wair-hook-secret")
    wh.save()
    channel = Channel.objects.create(key="uk-web", name="UK web", connection=ct, external_id="uk-web", warehouse=wh)
    loc = Location.objects.create(code="dc1", name="DC1", connection=wh, external_id="DC1")
    rule = ChannelStockRule.objects.create(channel=channel, mode="segregated")
    rule.locations.add(loc)
    items = {s: Item.objects.create(sku=s, name=s) for s in ("SKU-1", "SKU-2", "SKU-3", "000123")}
    bundle = Item.objects.create(sku="BUNDLE-1", name="gift set", is_bundle=True)
    BundleComponent.objects.create(bundle=bundle, component=items["SKU-1"], quantity=2)
    BundleComponent.objects.create(bundle=bundle, component=items["SKU-2"], quantity=1)
    items["BUNDLE-1"] = bundle
    for s in ("SKU-1", "SKU-2", "BUNDLE-1"):
        SkuMapping.objects.create(item=items[s], storefront_sku=s)
    ShippingMethodMap.objects.create(storefront_method="standard", warehouse_method="STD48", carrier="royal_mail")
    ShippingMethodMap.objects.create(storefront_method="express", warehouse_method="EXP24", carrier="dhl")

    class W:
        pass

    w = W()
    w.ct, w.wh, w.channel, w.items, w.location = ct, wh, channel, items, loc
    return w


class FakeWarehouse:
    """Records every send; ``script`` maps order_ref → list of outcomes (exception instances or "ack") used in turn."""

    def __init__(self):
        self.sent = []
        self.script: dict[str, list] = {}
        self.ids: dict[str, str] = {}
        self.fulfilments = []
        self.status: dict[str, str | None] = {}
        self.allocations: dict[str, dict[str, str]] = {}  # order_ref → {sku: location id} the ack names
        self.received_at = None  # the master's time of receipt the ack names (None: the hub's clock)

    def send_order(self, wo):
        self.sent.append(wo)
        todo = self.script.get(wo.order_ref)
        if todo:
            outcome = todo.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
        dup = wo.order_ref in self.ids
        self.ids.setdefault(wo.order_ref, f"WO-{len(self.ids) + 1}")
        return Acknowledgement(order_ref=wo.order_ref, warehouse_ref=self.ids[wo.order_ref], duplicate=dup,
                               received_at=self.received_at, allocations=dict(self.allocations.get(wo.order_ref, {})))

    def order_status(self, ref):
        return self.status.get(ref, "accepted" if ref in self.ids else None)

    def cancel_order(self, ref):
        """``script["C:<ref>"]``: outcomes in turn (exceptions raised); else cancelled if known, 404 if not."""
        from connectors import errors

        self.cancelled = getattr(self, "cancelled", []) + [ref]
        todo = self.script.get(f"C:{ref}")
        if todo:
            raise todo.pop(0)
        if ref not in self.ids:
            raise errors.NotFoundError(f"{ref} not found")
        self.status[ref] = "cancelled"
        return "cancelled"

    def dispatches_for(self, ref):
        """``dispatches[ref]``: what the warehouse holds for the order (lost confirmations)."""
        from connectors import errors

        if ref not in self.ids:
            raise errors.NotFoundError(f"{ref} not found")
        return list(getattr(self, "dispatches", {}).get(ref, []))

    def send_fulfilment(self, f):
        self.fulfilments.append(f)
        todo = self.script.get(f"F:{f.fulfilment_ref}")
        if todo:
            raise todo.pop(0)
        return f"FA-{len(self.fulfilments)}"


class FakeStorefront:
    def __init__(self):
        self.shipped = []
        self.fail: list[Exception] = []
        self.orders = []

    def mark_shipped(self, external_id, parcels, known_version=None, known_order=None):
        if self.fail:
            raise self.fail.pop(0)
        self.shipped.append((external_id, parcels))
        return (known_version or 0) + 1

    def orders_since(self, cursor, limit=100):
        from connectors.base import Page

        return Page(items=list(self.orders), cursor="c1", has_more=False)


@pytest.fixture
def fakes(world, monkeypatch):
    from integration_hub.orders import remote

    wh, sf = FakeWarehouse(), FakeStorefront()

    def connector(conn):
        return wh if conn.system_type == "wair" else sf

    monkeypatch.setattr(remote, "connector", connector)
    return wh, sf


# --- sandbox ----------------------------------------------------------------------------------------
def control(sandbox, prefix, action, payload=None):
    r = requests.post(f"{sandbox.url}/_sandbox/{prefix}/{action}", json=payload or {}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def faults(sandbox, prefix, **switches):
    r = requests.post(f"{sandbox.url}/_sandbox/{prefix}/faults", json=switches, timeout=5)
    assert r.status_code == 200, r.text


def sandbox_world(sandbox, *, rate=1000.0, retries=4, timeout=5.0):
    """World whose connections point at the sandbox (call inside a db-enabled test)."""
    from django.core.cache import cache

    from connectors.registry import clear_cache
    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Channel, Connection
    from integration_hub.orders.models import ShippingMethodMap

    cache.clear()
    clear_cache()
    ct = Connection(name="ct-sbx", system_type="commercetools", base_url=f"{sandbox.url}/commercetools",
                    auth_url=f"{sandbox.url}/commercetools", client_id="hub-demo", options={"project_key": "demo"},
                    rate_limit_per_second=rate, rate_limit_burst=int(rate), timeout_seconds=timeout, max_retries=retries)
    ct.set_secret("hub-demo-secret")
    ct.set_webhook_secret("ct-hook-secret")
    ct.save()
    wh = Connection(name="wair-sbx", system_type="wair", base_url=f"{sandbox.url}/wair", rate_limit_per_second=rate,
                    rate_limit_burst=int(rate), timeout_seconds=timeout, max_retries=retries, options={"page_size": 500})
    wh.set_secret("wair-demo-key")
    wh.set_webhook_secret("wair-hook-secret")
    wh.save()
    channel = Channel.objects.create(key="uk-web", name="UK web", connection=ct, external_id="uk-web", warehouse=wh)
    skus = ["SKU-1", "SKU-2", "SKU-3"]
    for s in skus:
        SkuMapping.objects.create(item=Item.objects.create(sku=s), storefront_sku=s)
    ShippingMethodMap.objects.create(storefront_method="standard", warehouse_method="STD48", carrier="royal_mail")
    ShippingMethodMap.objects.create(storefront_method="express", warehouse_method="EXP24", carrier="dhl")
    control(sandbox, "commercetools", "seed_catalog", {"channels": ["uk-web"], "skus": skus, "quantity": 100000})
    return ct, wh, channel
