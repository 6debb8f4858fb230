"""Contract: Salesforce's own B2C Commerce client — the ``commerce-sdk`` npm package (its ``Orders`` class is the
SCAPI Admin Orders API, generated from ``apis/orders-oas-1.5.2``) — against the SFCC sandbox, for the SCAPI
routes the connector uses: getOrders (lastModifiedDateFrom, sortBy/sortOrder, exportStatus, limit/offset),
getOrder, updateOrder (c_ attributes), updateOrderShippingStatus, updateOrderExportStatus, createOmsStatusEvent (the
optional shipped fulfillment event; one without trackingUrl is refused), and the spec's limits
(limit ≤ 200, offset + limit ≤ 10,000, 404 for an unknown order); and its ``Products`` class (Admin Products,
``apis/products-oas-1.2.0``) for searchProducts, the catalogue audit's route. The package is installed by ``./hub test``
from ``tests/contract/package-lock.json`` (``npm ci``) when node is on the machine; without it the test is skipped
and says why."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.sandbox import controller

HERE = Path(__file__).parent
SCRIPT = HERE / "sfcc_orders_client.js"
ORG, SITE = "f_ecom_zzxy_prd", "RefArch"

pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not (HERE / "node_modules" / "commerce-sdk").is_dir(),
    reason="node or tests/contract/node_modules/commerce-sdk missing (./hub test runs npm ci)",
)


control = controller("sfcc")


def test_commerce_sdk_orders_client_against_the_sandbox(sandbox):
    control(sandbox, "configure_client", {"client_id": "sdk-client", "client_secret": "sdk-secret"})
    control(sandbox, "seed_catalog", {"channels": ["inv_uk"], "skus": ["SF-001"], "quantity": 5})
    no = control(
        sandbox,
        "create_orders",
        {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 2}], "gift_message": "Hi"}]},
    )["ids"][0]
    token = requests.post(
        f"{sandbox.url}/sfcc/dwsso/oauth2/access_token",
        auth=("sdk-client", "sdk-secret"),
        timeout=5,
        data={"grant_type": "client_credentials", "scope": "SALESFORCE_COMMERCE_API:zzxy_prd sfcc.orders.rw"},
    ).json()["access_token"]
    args = {
        "baseUri": f"{sandbox.url}/sfcc/checkout/orders/v1",
        "token": token,
        "organizationId": ORG,
        "siteId": SITE,
        "since": "2000-01-01T00:00:00.000Z",
        "orderNo": no,
        "omsEvent": {
            "id": "hub-evt-1",
            "occurredAt": "2026-01-02T03:04:05.000Z",
            "type": "shipped",
            "lineItems": [{"id": f"{no}-1", "quantity": 2}],
            "trackingNumber": "SDK-TRK-1",
            "trackingUrl": "https://carrier.example/SDK-TRK-1",
            "carrier": "DPD",
        },
    }
    proc = subprocess.run(
        ["node", str(SCRIPT), json.dumps(args)], cwd=HERE, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    res = {r["call"]: r for r in json.loads(proc.stdout)}

    got = res["getOrders"]
    assert got["ok"], got
    [order] = [o for o in got["data"]["data"] if o["orderNo"] == no]
    assert set(got["data"]) == {"data"}  # OrdersResponse: additionalProperties false
    assert order["status"] == "new" and order["exportStatus"] == "ready" and order["siteId"] == SITE
    item = order["productItems"][0]
    assert (item["productId"], item["quantity"], item["shipmentId"]) == ("SF-001", 2, "me")
    assert order["shipments"][0]["shippingAddress"]["postalCode"] and order["lastModified"].endswith("Z")
    assert res["getOrder"]["ok"], {k: v.get("error") for k, v in res.items() if not v["ok"]}
    assert res["getOrder"]["data"]["orderNo"] == no
    for call in ("updateOrder", "updateOrderShippingStatus", "updateOrderExportStatus", "createOmsStatusEvent"):
        assert res[call]["ok"], res[call]  # 204 / 202, no body
    events = control(sandbox, "oms_events")[no]
    assert [e["fulfillmentEvent"]["id"] for e in events] == ["hub-evt-1"]  # the refused one below was not kept
    after = res["getOrder:after"]["data"]
    assert after["shippingStatus"] == "shipped" and after["exportStatus"] == "exported"
    assert after["c_trackingNumbers"] == "SDK-TRK-1" and after["c_carrier"] == "DPD"
    for call, status in (
        ("getOrders:limit201", 400),
        ("getOrders:window", 400),
        ("getOrder:missing", 404),
        ("createOmsStatusEvent:noTrackingUrl", 400),
    ):
        r = res[call]
        assert not r["ok"] and r["status"] == status, r
        assert {"type", "title", "detail"} <= set(r["body"] or {}), r  # RFC 7807 ErrorResponse


def test_commerce_sdk_products_client_against_the_sandbox(sandbox):
    """commerce-sdk ``Products.searchProducts`` (generated from ``apis/products-oas-1.2.0``) — the catalogue audit's
    route on ``scapi_oci`` — against the sandbox: items and variants, never the master; limit ≤ 200."""
    control(sandbox, "configure_client", {"client_id": "sdk-client", "client_secret": "sdk-secret"})
    control(
        sandbox,
        "seed_catalog",
        {
            "channels": ["inv_uk"],
            "skus": ["SF-001", "SF-002"],
            "quantity": 5,
            "products": [{"key": "TEE", "skus": ["TEE-S", "TEE-M"]}],
        },
    )
    token = requests.post(
        f"{sandbox.url}/sfcc/dwsso/oauth2/access_token",
        auth=("sdk-client", "sdk-secret"),
        timeout=5,
        data={"grant_type": "client_credentials", "scope": "SALESFORCE_COMMERCE_API:zzxy_prd sfcc.products"},
    ).json()["access_token"]
    args = {"baseUri": f"{sandbox.url}/sfcc/product/products/v1", "token": token, "organizationId": ORG, "siteId": SITE}
    proc = subprocess.run(
        ["node", str(HERE / "sfcc_products_client.js"), json.dumps(args)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res = {r["call"]: r for r in json.loads(proc.stdout)}
    got = res["searchProducts"]
    assert got["ok"], got
    assert [h["id"] for h in got["data"]["hits"]] == ["SF-001", "SF-002", "TEE-M", "TEE-S"]  # no master TEE
    assert got["data"]["total"] == 4 and got["data"]["limit"] == 200 and got["data"]["offset"] == 0
    page2 = res["searchProducts:page2"]
    assert page2["ok"] and [h["id"] for h in page2["data"]["hits"]] == ["TEE-M", "TEE-S"]
    refused = res["searchProducts:limit201"]
    assert not refused["ok"] and refused["status"] == 400 and {"type", "title", "detail"} <= set(refused["body"] or {})
