"""End-to-end pair fixtures: real connectors against the sandbox emulators over HTTP, the stock and order
engines' services run eagerly in-process (no broker), topology rows as the demo would create them."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import requests

# sandbox credentials each emulator accepts by default
SECRETS = {"commercetools": "hub-demo-secret", "sfcc": "am-secret", "wair": "wair-demo-key", "clarus": "clarus-demo-key",
           "archean": "archean-demo-key", "inventory_planner": "ip-demo-key", "wair_replenishment": "wair-demo-password"}


CLARUS_OPTIONS = {"subdomain": "demo", "account_id": "1", "warehouse_id": "DC1", "webhook_domain": "https://demo.claruswms.co.uk",
                  "webhook_api_domain": "https://clarus-api.com", "webhook_automation_ids": ["41", "42", "43"]}


@dataclass
class Pair:
    sandbox: object
    conns: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)

    def control(self, prefix, action, payload=None):
        r = requests.post(f"{self.sandbox.url}/_sandbox/{prefix}/{action}", json=payload or {}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def connection(self, system_type, name=None):
        from integration_hub.core.models import Connection

        url = f"{self.sandbox.url}/{system_type}"
        conn = Connection(name=name or system_type, system_type=system_type, base_url=url,
                          rate_limit_per_second=500, rate_limit_burst=100, timeout_seconds=5, max_retries=2)
        if system_type == "commercetools":
            conn.auth_url, conn.client_id, conn.options = url, "hub-demo", {"project_key": "hubtest"}
        elif system_type == "sfcc":
            conn.auth_url, conn.client_id = url, "am-client"  # the Account Manager root, as seed_demo sets it
            conn.options = {"site_id": "RefArch"}
            self.control("sfcc", "configure_client", {"client_id": "am-client", "client_secret": SECRETS["sfcc"]})
        elif system_type == "inventory_planner":
            conn.client_id = "demo-account"
        elif system_type == "clarus":  # OAuth client credentials + the tenant subdomain; webhooks identified by headers
            conn.client_id, conn.options = "hub-demo", dict(CLARUS_OPTIONS)
        elif system_type == "wair_replenishment":
            conn.client_id, conn.options = "hub", {"tenant": "DEMO"}
        conn.set_secret(SECRETS[system_type])
        conn.save()
        self.conns[conn.name] = conn
        return conn

    def topology(self, storefront, master, *, channel_key="web", list_id="web-stock", locations=("DC1",), skus=("A", "B", "C")):
        """Channel ``channel_key`` on ``storefront`` (external id ``list_id``) fulfilled by ``master``, stock from
        ``locations`` of ``master``; items A, B, C (storefront SKUs SF-A …) and a bundle KIT = A + 2×B."""
        from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
        from integration_hub.core.models import Channel, Location
        from integration_hub.inventory.models import ChannelStockRule
        from integration_hub.orders.models import ShippingMethodMap

        locs = [Location.objects.create(code=l.lower(), name=l, connection=master, external_id=l) for l in locations]
        ch = Channel.objects.create(key=channel_key, name=channel_key, connection=storefront, external_id=list_id, warehouse=master)
        rule = ChannelStockRule.objects.create(channel=ch, mode="segregated", safety_buffer=0)
        rule.locations.set(locs)
        for sku in skus:
            self.items[sku] = Item.objects.create(sku=sku, name=f"Item {sku}")
            SkuMapping.objects.create(item=self.items[sku], storefront_sku=f"SF-{sku}")
        kit = self.items["KIT"] = Item.objects.create(sku="KIT", name="Kit", is_bundle=True)
        BundleComponent.objects.create(bundle=kit, component=self.items["A"], quantity=1)
        BundleComponent.objects.create(bundle=kit, component=self.items["B"], quantity=2)
        SkuMapping.objects.create(item=kit, storefront_sku="SF-KIT")
        ShippingMethodMap.objects.create(channel=None, storefront_method="standard", warehouse_method="STD48", carrier="DPD")
        self.channels[channel_key] = ch
        self.control(master.system_type, "seed_locations", {"locations": [{"id": l, "name": l} for l in locations]})
        self.control(storefront.system_type, "seed_catalog",
                     {"channels": [list_id], "skus": [f"SF-{s}" for s in (*skus, "KIT")], "quantity": 0})
        return ch

    # --- the three flows, as the engines' tasks would run them ----------------------------------------
    def stock_sync(self, master):
        from integration_hub.inventory import push
        from integration_hub.inventory.services import poll_master

        polled = poll_master(master)
        totals, _ = push.drain(time_budget=20)
        return polled, totals

    def push(self):
        """Drain the stock outbox only (no master poll): what the storefront shows from the hub's own state."""
        from integration_hub.inventory import push

        return push.drain(time_budget=20)[0]

    def orders_out(self, storefront):
        from integration_hub.orders import polls, processing

        polled = polls.poll_orders(storefront)
        return polled, processing.process_due()

    def dispatch_back(self, master):
        from integration_hub.orders import polls, processing

        polled = polls.poll_dispatches(master)
        return polled, processing.process_due()


@pytest.fixture
def pair(db, sandbox):
    import connectors.registry as registry
    from django.core.cache import cache

    registry.clear_cache()
    cache.clear()  # OAuth tokens of an earlier test's emulator state
    yield Pair(sandbox)
    registry.clear_cache()
