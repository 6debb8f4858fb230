"""Stock-engine fixtures: a small topology (the support World builder) and an in-memory storefront fake."""

from __future__ import annotations

import pytest

from connectors import errors
from connectors.base import InventoryResult, StorefrontStock
from tests.support.factories import World, connection
from tests.support.sandbox import control


@pytest.fixture
def world(db, settings):
    """A :class:`tests.support.factories.World` on storefront ``shop`` (commercetools) and master ``wair``."""
    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": False}
    return World(
        storefront=connection(
            "commercetools", "shop", base_url="http://127.0.0.1:9/commercetools", options={"project_key": "p"}
        ),
        master=connection("wair", webhook_secret="wair-hook-secret"),
    )  # each connection its own secret: there is no default


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
        return [
            StorefrontStock(s, channel_ref, self.quantities[(channel_ref, s)], self.versions.get((channel_ref, s)))
            for s in skus
            if (channel_ref, s) in self.quantities
        ]

    def list_skus(self):
        return sorted({s for _, s in self.quantities})

    @property
    def sent(self):
        return [t for call in self.calls for t in call]


@pytest.fixture
def fake_storefront(fake_connectors):
    """Answers for every commercetools / SFCC connection; other systems get their real connector."""
    return fake_connectors.install(FakeStorefront(), system_type=("commercetools", "sfcc"))


__all__ = ["FakeStorefront", "errors"]


# --- over HTTP against the sandbox -----------------------------------------------------------------
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
    world.control = lambda action, payload=None, method="POST": control(
        sandbox, "commercetools", action, payload, method=method
    )
    yield world
    registry.clear_cache()
