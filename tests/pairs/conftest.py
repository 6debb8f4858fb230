"""End-to-end pair fixtures: real connectors against the sandbox emulators over HTTP, the stock and order
engines' services run eagerly in-process (no broker), topology rows as the demo would create them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.support import factories as f
from tests.support.sandbox import control


@dataclass
class Pair:
    sandbox: object
    conns: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)

    def control(self, prefix, action, payload=None):
        return control(self.sandbox, prefix, action, payload)

    def connection(self, system_type, name=None):
        conn = f.sandbox_connection(self.sandbox, system_type, name)
        self.conns[conn.name] = conn
        return conn

    def topology(
        self, storefront, master, *, channel_key="web", list_id="web-stock", locations=("DC1",), skus=("A", "B", "C")
    ):
        """Channel ``channel_key`` on ``storefront`` (external id ``list_id``) fulfilled by ``master``, stock from
        ``locations`` of ``master``; items A, B, C (storefront SKUs SF-A …) and a bundle KIT = A + 2×B."""
        locs = [f.location(master, l.lower(), name=l, external_id=l) for l in locations]
        ch = f.channel(storefront, channel_key, external_id=list_id, warehouse=master)
        f.stock_rule(ch, locations=locs)
        for sku in skus:
            self.items[sku] = f.item(sku, name=f"Item {sku}")
            f.mapping(self.items[sku], f"SF-{sku}")
        kit = self.items["KIT"] = f.item("KIT", name="Kit", bundle_of={self.items["A"]: 1, self.items["B"]: 2})
        f.mapping(kit, "SF-KIT")
        f.shipping_maps([("standard", "STD48", "DPD")])
        self.channels[channel_key] = ch
        self.control(master.system_type, "seed_locations", {"locations": [{"id": l, "name": l} for l in locations]})
        self.control(
            storefront.system_type,
            "seed_catalog",
            {"channels": [list_id], "skus": [f"SF-{s}" for s in (*skus, "KIT")], "quantity": 0},
        )
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
