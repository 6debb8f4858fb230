"""commercetools mismatches with the API reference (issue 12, part 3): ShippingMode Multiple deliveries, the
auth host, least scopes enforced per endpoint, a Canceled shipment state, inventory entry keys."""

from __future__ import annotations

import pytest

from connectors import errors
from connectors.base import InventoryTarget, Parcel
from connectors.commercetools import LEAST_SCOPES, CommercetoolsConnector
from tests.support.sandbox import controller


control = controller("commercetools")


def connection(sandbox, **options):
    from integration_hub.core.models import Connection

    conn = Connection(
        name=f"ct-mm-{len(options)}-{abs(hash(str(options))) % 10000}",
        system_type="commercetools",
        base_url=f"{sandbox.url}/commercetools",
        auth_url=f"{sandbox.url}/commercetools",
        client_id="hub-demo",
        options={"project_key": "demo", **options},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=1,
    )
    conn.set_secret("hub-demo-secret")
    conn.save()
    CommercetoolsConnector.auth_for(conn).invalidate()
    return conn


@pytest.fixture
def ct(db, sandbox):
    c = CommercetoolsConnector(connection(sandbox))
    c.client = c.build_client(backoff_base=0.01)
    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": ["SKU-001", "SKU-002"], "quantity": 5})
    return c


MULTI = {
    "channel": "uk-web",
    "shipping_mode": "Multiple",
    "shipping_key": "home",
    "lines": [{"sku": "SKU-001", "quantity": 2}, {"sku": "SKU-002", "quantity": 1}],
}


# --- ShippingMode Multiple ---------------------------------------------------------------------------
def test_multiple_mode_delivery_names_its_shipping_key_and_is_idempotent(ct, sandbox, emu_ct):
    [oid] = control(sandbox, "create_orders", {"orders": [MULTI]})["ids"]
    assert "shippingInfo" not in emu_ct.orders[oid] and emu_ct.orders[oid]["shipping"][0]["shippingKey"] == "home"
    ct.mark_shipped(oid, [Parcel("DPD", "TRK-1", lines=[("SKU-001", 2), ("SKU-002", 1)])])
    order = emu_ct.orders[oid]
    [delivery] = order["shipping"][0]["shippingInfo"]["deliveries"]
    assert delivery["key"].startswith("hub-") and order["shipmentState"] == "Shipped"
    version = order["version"]
    assert (
        ct.mark_shipped(oid, [Parcel("DPD", "TRK-1", lines=[("SKU-001", 2), ("SKU-002", 1)])]) == version
    )  # replay: nothing
    assert len(emu_ct.orders[oid]["shipping"][0]["shippingInfo"]["deliveries"]) == 1


def test_sandbox_refuses_add_delivery_without_shipping_key_in_multiple_mode(ct, sandbox):
    [oid] = control(sandbox, "create_orders", {"orders": [MULTI]})["ids"]
    with pytest.raises(errors.BadDataError) as exc:
        ct.client.post(
            ct.path(f"orders/{oid}"), json={"version": 1, "actions": [{"action": "addDelivery", "items": []}]}
        )
    assert "shippingKey is required" in str(exc.value.body)


def test_storefront_fulfilments_read_multiple_mode_deliveries(ct, sandbox):
    [oid] = control(sandbox, "create_orders", {"orders": [MULTI]})["ids"]
    control(sandbox, "store_fulfil", {"order": oid, "lines": [["SKU-002", 1]], "tracking": "STORE-1"})
    order = ct.get_order(oid)
    [f] = ct.storefront_fulfilments(order)
    assert f.lines == [("SKU-002", 1)] and order.shipping_method == "standard"  # the Shipping's method


# --- Canceled ---------------------------------------------------------------------------------------
def test_a_canceled_shipment_is_never_made_shipped(ct, sandbox, emu_ct):
    [oid] = control(
        sandbox, "create_orders", {"orders": [{"channel": "uk-web", "lines": [{"sku": "SKU-001", "quantity": 1}]}]}
    )["ids"]
    ct.client.post(
        ct.path(f"orders/{oid}"),
        json={"version": 1, "actions": [{"action": "changeShipmentState", "shipmentState": "Canceled"}]},
    )
    ct.mark_shipped(oid, [Parcel("DPD", "TRK-9")])
    order = emu_ct.orders[oid]
    assert order["shipmentState"] == "Canceled"
    assert [p["trackingData"]["trackingId"] for d in order["shippingInfo"]["deliveries"] for p in d["parcels"]] == [
        "TRK-9"
    ]


# --- auth host and scopes ------------------------------------------------------------------------------
def test_token_host_is_derived_from_the_api_host():
    from integration_hub.core.models import Connection

    conn = Connection(
        name="x",
        system_type="commercetools",
        base_url="https://api.europe-west1.gcp.commercetools.com",
        auth_url="",
        client_id="c",
        options={"project_key": "shop"},
    )
    assert CommercetoolsConnector.token_root(conn) == "https://auth.europe-west1.gcp.commercetools.com"
    auth = CommercetoolsConnector.auth_for(conn)
    assert auth.token_url == "https://auth.europe-west1.gcp.commercetools.com/oauth/token"
    assert "manage_project" not in auth.scope and set(auth.scope.split()) == {f"{s}:shop" for s in LEAST_SCOPES}
    conn.auth_url = "https://auth.us-central1.gcp.commercetools.com/oauth/token"
    assert CommercetoolsConnector.token_root(conn) == "https://auth.us-central1.gcp.commercetools.com"


def test_least_scopes_cover_every_call(ct, sandbox):
    """The default (least) scopes: ping, stock read/write (with the ledger Type), orders, shipping, subscriptions."""
    ct.ping()
    assert all(r.ok for r in ct.set_stock([InventoryTarget("SKU-001", "uk-web", 3, ledger=3)]))
    [oid] = control(
        sandbox,
        "create_orders",
        {
            "orders": [
                {"channel": "uk-web", "lines": [{"sku": "SKU-001", "quantity": 1}], "discount_codes": ["SPRING10"]}
            ]
        },
    )["ids"]
    assert ct.get_order(oid).promotion_codes == ["SPRING10"]
    ct.mark_shipped(oid, [Parcel("DPD", "TRK-2")])
    assert ct.client.get(ct.path("subscriptions")).status_code == 200


def test_sandbox_enforces_scopes_per_endpoint(db, sandbox):
    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": ["SKU-001"], "quantity": 5})
    c = CommercetoolsConnector(connection(sandbox, scopes=["view_orders:demo", "view_products:demo"]))
    c.client = c.build_client(backoff_base=0.01)
    assert c.get_stock(["SKU-001"], "uk-web")[0].quantity == 5  # view_products reads inventory and channels
    [res] = c.set_stock([InventoryTarget("SKU-001", "uk-web", 9)])
    assert not res.ok and isinstance(res.error, errors.PermanentError) and res.error.status == 403
    assert "manage_products:demo" in str(res.error.body)
    with pytest.raises(errors.PermanentError):
        c.ping()  # view_project_settings missing


@pytest.fixture
def emu_ct(sandbox):
    return sandbox.emulators["commercetools"]
