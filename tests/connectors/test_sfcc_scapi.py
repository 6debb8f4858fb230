"""SFCC on the B2C Commerce API (Admin Orders) + Omnichannel Inventory, against the SFCC emulator over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors import errors
from connectors.base import InventoryTarget, Parcel
from connectors.registry import get_connector
from connectors.sfcc import utc_iso
from connectors.sfcc_scapi import MAX_WINDOW, SFCCScapiConnector

from .conftest import control
from tests.support.sandbox import SandboxClient

ORDERS = "/checkout/orders/v1/organizations/f_ecom_zzxy_prd/orders"
OCI = "/inventory/availability/v1/organizations/f_ecom_zzxy_prd/availability-records/actions"


def _orders(sandbox, n, **extra):
    return control(
        sandbox,
        "create_orders",
        {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}], **extra} for _ in range(n)]},
    )["ids"]


def _raw(scapi, method, path, **kw):
    return scapi.client.request(method, path, ok=range(200, 600), retries=0, **kw)


def test_api_family_picks_the_connector(scapi_conn, sf_conn):
    assert isinstance(get_connector(scapi_conn, fresh=True), SFCCScapiConnector)
    assert type(get_connector(sf_conn, fresh=True)).__name__ == "SFCCConnector"
    scapi_conn.options = {**scapi_conn.options, "api_family": "graphql"}
    with pytest.raises(errors.PermanentError):
        get_connector(scapi_conn, fresh=True)


def test_orders_page_by_moving_the_window_and_map_like_ocapi(scapi, sandbox):
    ids = _orders(sandbox, 7, gift_message="Hi", delivery_notes="Back door", custom_fields={"giftWrap": True})
    seen, cursor, calls = [], "", 0
    while True:
        page = scapi.orders_since(cursor, limit=3)
        seen += page.items
        cursor, calls = page.cursor, calls + 1
        if not page.has_more:
            break
    assert [o.external_id for o in seen] == ids and calls >= 3
    first = seen[0]
    assert first.channel_ref == "inv_uk" and first.lines[0].sku == "SF-001" and first.gift_message == "Hi"
    assert first.delivery_notes == "Back door" and first.custom_fields == {"giftWrap": True}
    assert first.shipping_address.city == "London" and first.capturable and first.awaiting_export
    again = scapi.orders_since(cursor)
    assert again.items == [] and again.cursor == cursor
    scapi.mark_shipped(ids[3], [Parcel("DPD", "TRK-1")])  # a change brings the order back once
    assert [o.external_id for o in scapi.orders_since(cursor).items] == [ids[3]]


def test_orders_sharing_one_instant_are_neither_lost_nor_repeated(scapi, sandbox):
    emu = sandbox.emulators["sfcc"]
    ids = _orders(sandbox, 5)
    with emu.lock:  # five orders modified in the same millisecond
        for no in ids:
            emu.orders[no]["last_modified"] = "2026-01-01T00:00:00.000000Z"
    got, cursor = [], ""
    for _ in range(6):
        page = scapi.orders_since(cursor, limit=2)
        got += [o.external_id for o in page.items]
        cursor = page.cursor
        if not page.has_more and not page.items:
            break
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))


def test_getorders_limits_are_the_specs(scapi, sandbox):
    for params in (
        {"siteId": "RefArch", "limit": 201},
        {"siteId": "RefArch", "limit": 0},
        {"siteId": "RefArch", "limit": 200, "offset": MAX_WINDOW - 199},
        {"limit": 5},
        {"siteId": "RefArch", "exportStatus": "ready,exported,failed,not_exported"},
        {"siteId": "RefArch", "sortBy": "orderNo"},
    ):
        r = _raw(scapi, "GET", ORDERS, params=params)
        assert r.status_code == 400 and {"type", "title", "detail"} <= set(r.json()), (params, r.text)
    assert (
        _raw(scapi, "GET", ORDERS, params={"siteId": "RefArch", "limit": 200, "offset": MAX_WINDOW - 200}).status_code
        == 200
    )
    assert _raw(scapi, "GET", ORDERS + "/nope", params={"siteId": "RefArch"}).status_code == 404


def test_not_exported_orders_are_not_read_and_created_ones_not_capturable(scapi, sandbox):
    ready, created, held = (
        _orders(sandbox, 1) + _orders(sandbox, 1, status="created") + _orders(sandbox, 1, export_status="not_exported")
    )
    by = {o.external_id: o for o in scapi.orders_since("").items}
    assert held not in by and by[ready].capturable and not by[created].capturable


def test_shipped_and_export_status_land(scapi, sandbox):
    a, b = _orders(sandbox, 2)
    scapi.mark_shipped(a, [Parcel("DPD", "TRK-9", "https://t/9")])
    scapi.mark_exported(a, True)
    scapi.mark_exported(b, False)
    state = control(sandbox, "state")["orders"]
    assert (
        state[a]["shipping_status"] == "shipped"
        and state[a]["tracking"] == ["TRK-9"]
        and state[a]["hub_marker"].startswith("hub-")
    )
    assert (state[a]["export_status"], state[b]["export_status"]) == ("exported", "failed")
    r = _raw(scapi, "PATCH", ORDERS + f"/{a}", params={"siteId": "RefArch"}, json={"shippingStatus": "shipped"})
    assert r.status_code == 400  # OrderUpdateRequest takes only c_ properties
    r = _raw(scapi, "PUT", ORDERS + f"/{a}/shipping-status", params={"siteId": "RefArch"}, json={"status": "delivered"})
    assert r.status_code == 400
    with pytest.raises(errors.NotFoundError):
        scapi.mark_exported("99999999", True)


def test_a_malformed_order_is_a_rejected_row_on_scapi_too(scapi, sandbox):
    """The Admin Orders API path reads orders through the same ``read_orders``: an unreadable one is a rejected row,
    the others and the cursor still move."""
    emu = sandbox.emulators["sfcc"]
    ids = _orders(sandbox, 3)
    with emu.lock:
        emu.orders[ids[1]]["product_items"][0]["quantity"] = "two"
    page = scapi.orders_since("")
    assert [o.external_id for o in page.items] == [ids[0], ids[2]]
    assert [(r.ref, r.field) for r in page.items.rejected] == [(ids[1], "order")] and "'two'" in page.items.rejected[
        0
    ].message
    assert ids[2] in page.cursor


def test_admin_scopes_are_checked(scapi_conn, sandbox):
    from django.core.cache import cache

    cache.clear()
    scapi_conn.options = {**scapi_conn.options, "scope": "sfcc.orders.rw"}  # no tenant scope
    c = SFCCScapiConnector(scapi_conn)
    with pytest.raises(errors.PermanentError):
        c.orders_since("")
    cache.clear()
    scapi_conn.options = {**scapi_conn.options, "scope": "SALESFORCE_COMMERCE_API:zzxy_prd sfcc.orders"}  # read only
    c = SFCCScapiConnector(scapi_conn)
    no = _orders(sandbox, 1)[0]
    assert c.get_order(no).external_id == no
    with pytest.raises(errors.PermanentError):
        c.mark_exported(no, True)


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"api_family": "graphql"}, "options.api_family must be one of ocapi, scapi_oci"),
        ({"api_family": "scapi_oci"}, "options.organization_id is required for api_family scapi_oci"),
        (
            {"api_family": "scapi_oci", "organization_id": "zzxy_prd"},
            "options.organization_id must be f_ecom_<realm>_<instance>",
        ),
        (
            {"api_family": "scapi_oci", "organization_id": "f_ecom_zzxy_prd", "oci_tenant_group_id": 7},
            "options.oci_tenant_group_id must be text",
        ),
    ],
)
def test_api_family_options_are_checked_at_save_and_at_use(scapi_conn, options, problem):
    """The admin picks the family in the connection's options: a family the hub does not know, or SCAPI without the
    organization every Admin API path names, is refused when saved (admin form / full_clean) and when used."""
    from django.core.exceptions import ValidationError

    scapi_conn.options = {"site_id": "RefArch", **options}
    with pytest.raises(ValidationError) as saved:
        scapi_conn.full_clean()
    assert problem in " ".join(saved.value.message_dict["options"])
    with pytest.raises(errors.ConfigurationError, match=problem.split(" must")[0].split(" is")[0]):
        get_connector(scapi_conn, fresh=True)


# --- OCI stock --------------------------------------------------------------------------------------------
def test_oci_gets_on_hand_and_computes_atf_with_its_own_reservations(scapi, sandbox):
    now = datetime.now(UTC)
    results = scapi.set_stock([InventoryTarget(s, "inv_uk", 10, as_of=now) for s in ("SF-001", "SF-002")])
    assert all(r.ok for r in results)
    _orders(sandbox, 2)  # the site reserves 2 × SF-001 in OCI
    oci = control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]
    assert (oci["SF-001"]["onHand"], oci["SF-001"]["reserved"], oci["SF-001"]["atf"]) == (10, 2, 8)
    assert {s.sku: s.quantity for s in scapi.get_stock(["SF-001", "SF-002", "NOPE"], "inv_uk")} == {
        "SF-001": 8,
        "SF-002": 10,
    }
    assert control(sandbox, "state")["inventory"]["inv_uk"]["SF-001"] == 8


def test_oci_keeps_the_newest_figure_and_applies_a_record_once(scapi, sandbox):
    now = datetime.now(UTC)
    scapi.set_stock([InventoryTarget("SF-003", "inv_uk", 7, as_of=now)])
    scapi.set_stock([InventoryTarget("SF-003", "inv_uk", 2, as_of=now - timedelta(seconds=5))])  # late and older
    assert control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]["SF-003"]["onHand"] == 7
    path = f"{OCI}/batch-update"
    rec = {
        "id": "req-1",
        "location": "inv_uk",
        "sku": "SF-004",
        "onHand": 5,
        "effectiveDate": utc_iso(now + timedelta(seconds=1)),
    }
    for _ in range(2):  # the same request replayed: applied once
        assert _raw(scapi, "POST", path, json={"records": [rec]}).status_code == 204
    control(sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-004", "quantity": 1}]}]})
    rec2 = {**rec, "onHand": 9}  # same id and sku, new figure: still the first application only
    assert _raw(scapi, "POST", path, json={"records": [rec2]}).status_code == 204
    assert control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]["SF-004"]["onHand"] == 5
    r = _raw(scapi, "POST", path, json={"records": [rec] * 101})
    assert (
        r.status_code == 400
        and r.json()["errorCode"] == "InvalidRequestParameter"
        and r.json()["type"] == "about:blank"
    )


def test_oci_record_errors_are_per_record(scapi, sandbox):
    results = scapi.set_stock(
        [
            InventoryTarget("SF-005", "inv_uk", 3),
            InventoryTarget("SF-005", "nowhere", 3),
            InventoryTarget("SF-006", "inv_uk", -1),
        ]
    )
    by = {(r.sku, r.channel_ref): r for r in results}
    assert by[("SF-005", "inv_uk")].ok
    assert isinstance(by[("SF-005", "nowhere")].error, errors.NotFoundError)
    assert isinstance(by[("SF-006", "inv_uk")].error, errors.BadDataError)


def test_oci_batch_update_is_the_inventory_availability_apis_shape(scapi, sandbox):
    """batchInventoryUpdate (Inventory Availability RAML): records ``{id, location, sku, onHand, effectiveDate}``; 204
    when all landed, 200 ``{"errors": [{"details": {id, sku, locationId}, errorCode, message}]}`` for the rest. The
    Connect API's names for the same fields (actionRequestId / locationIdentifier / stockKeepingUnit) are refused."""
    path = f"{OCI}/batch-update"
    now = utc_iso(datetime.now(UTC))
    ok = _raw(
        scapi,
        "POST",
        path,
        json={"records": [{"id": "r-1", "location": "inv_uk", "sku": "SF-007", "onHand": 4, "effectiveDate": now}]},
    )
    assert ok.status_code == 204 and not ok.content
    connect = {
        "actionRequestId": "r-2",
        "locationIdentifier": "inv_uk",
        "stockKeepingUnit": "SF-008",
        "onHand": 4,
        "effectiveDate": now,
    }
    r = _raw(
        scapi,
        "POST",
        path,
        json={"records": [connect, {"id": "r-3", "location": "nowhere", "sku": "SF-008", "onHand": 1}]},
    )
    assert r.status_code == 200
    [bad_shape, no_location] = r.json()["errors"]
    assert bad_shape["errorCode"] == "InvalidRequestParameter" and no_location["errorCode"] == "LocationDoesNotExist"
    assert no_location["details"] == {"id": "r-3", "sku": "SF-008", "locationId": "nowhere"}
    oci = control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]
    assert oci["SF-007"]["onHand"] == 4 and oci["SF-008"]["onHand"] == 3  # the Connect-shaped record changed nothing
    # the connector's own writes land (all good → 204; one bad → only that record fails, matched on id + sku)
    results = scapi.set_stock(
        [
            InventoryTarget("SF-009", "inv_uk", 6, as_of=datetime.now(UTC)),
            InventoryTarget("SF-009", "nowhere", 6, as_of=datetime.now(UTC)),
        ]
    )
    assert [r.ok for r in results] == [True, False] and isinstance(results[1].error, errors.NotFoundError)
    assert control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]["SF-009"]["onHand"] == 6


def test_oci_get_availability_is_the_inventory_availability_apis_shape(scapi, sandbox):
    """skuAvailabilityByLocationAndOrGroup: ``{"locations": [{"id", "records": [...]}]}``; SKUs × locations ≤ 100; an
    unknown location is refused (400 LocationDoesNotExist), not answered with nothing."""
    scapi.set_stock([InventoryTarget("SF-010", "inv_uk", 7, as_of=datetime.now(UTC))])
    body = _raw(
        scapi, "POST", f"{OCI}/get-availability", json={"skus": ["SF-010", "NOPE"], "locations": ["inv_uk"]}
    ).json()
    [loc] = body["locations"]
    assert loc["id"] == "inv_uk" and [(r["sku"], r["onHand"], r["atf"]) for r in loc["records"]] == [("SF-010", 7, 7)]
    r = _raw(scapi, "POST", f"{OCI}/get-availability", json={"skus": ["SF-010"], "locations": ["nowhere"]})
    assert r.status_code == 400 and r.json()["errorCode"] == "LocationDoesNotExist"
    r = _raw(
        scapi,
        "POST",
        f"{OCI}/get-availability",
        json={"skus": [f"SF-{i:03d}" for i in range(51)], "locations": ["inv_uk", "inv_eu"]},
    )
    assert r.status_code == 400
    assert [(s.sku, s.quantity) for s in scapi.get_stock(["SF-010"], "inv_uk")] == [("SF-010", 7)]


def test_oci_routes_name_the_tenant_group_not_the_organization(scapi_conn, sandbox):
    """OCI takes the tenant group id in place of the organization id: with the site's OCI on tenant group ``tg-zzxy``
    the f_ecom_ organization is refused (403 TenantNotProvisioned); option ``oci_tenant_group_id`` names the group."""
    control(sandbox, "configure_site", {"inventory": "oci", "tenant_group_id": "tg-zzxy"})
    target = [InventoryTarget("SF-011", "inv_uk", 2, as_of=datetime.now(UTC))]
    with pytest.raises(errors.ConnectorError) as refused:
        SFCCScapiConnector(scapi_conn).set_stock(target)
    assert refused.value.status == 403
    scapi_conn.options = {**scapi_conn.options, "oci_tenant_group_id": "tg-zzxy"}
    c = SFCCScapiConnector(scapi_conn)
    assert all(r.ok for r in c.set_stock(target))
    assert [(s.sku, s.quantity) for s in c.get_stock(["SF-011"], "inv_uk")] == [("SF-011", 2)]
    assert c.get_order(_orders(sandbox, 1)[0]).status == "new"  # the orders still go to the organization


def test_oci_batches_are_at_most_100_records(scapi, sandbox):
    sb = SandboxClient.of(sandbox)
    before = sum(v for k, v in sb.stats("sfcc").by_route.items() if "batch-update" in k)
    targets = [InventoryTarget(f"SF-{i:03d}", "inv_uk", i) for i in range(1, 121)]
    assert all(r.ok for r in scapi.set_stock(targets))
    assert sum(v for k, v in sb.stats("sfcc").by_route.items() if "batch-update" in k) - before == 2


def test_list_skus_reads_items_and_variants_through_the_products_api(scapi, sandbox):
    """Catalogue audit on scapi_oci: Admin Products ``searchProducts`` on type item / variant, paged by 200."""
    control(
        sandbox,
        "seed_catalog",
        {
            "channels": [],
            "skus": [],
            "products": [
                {"key": "TEE", "skus": ["TEE-S", "TEE-M"]},
                {"key": "BIG", "skus": [f"BIG-{i:03d}" for i in range(300)]},
            ],
        },
    )
    before = SandboxClient.of(sandbox).stats("sfcc")["by_route"]
    skus = list(scapi.list_skus())
    after = SandboxClient.of(sandbox).stats("sfcc")["by_route"]
    searches = sum(v - before.get(k, 0) for k, v in after.items() if "product-search" in k)
    assert len(skus) == 120 + 2 + 300 == len(set(skus)) and "TEE" not in skus and "BIG" not in skus  # no masters
    assert {"SF-001", "TEE-M", "BIG-299"} <= set(skus) and skus == sorted(skus) and searches == 3  # 422 / 200


def test_products_search_follows_the_spec(scapi, sandbox):
    path = "/product/products/v1/organizations/f_ecom_zzxy_prd/product-search"
    for body in (
        {},
        {"query": {"matchAllQuery": {}}, "limit": 201},
        {"query": {"matchAllQuery": {}}, "expand": ["all"]},
        {"query": {"termQuery": {"fields": ["type"], "operator": "one_of", "values": ["shoe"]}}},
        {"query": {"matchAllQuery": {}}, "sorts": [{"field": "ats"}]},
    ):
        r = _raw(scapi, "POST", path, params={"siteId": "RefArch"}, json=body)
        assert r.status_code == 400 and {"type", "title", "detail"} <= set(r.json()), (body, r.text)
    r = _raw(
        scapi,
        "POST",
        "/product/products/v1/organizations/f_ecom_other_prd/product-search",
        json={"query": {"matchAllQuery": {}}},
    )
    assert r.status_code == 403  # the token's tenant scope is another organization's
    page = _raw(scapi, "POST", path, json={"query": {"matchAllQuery": {}}, "limit": 5, "offset": 2}).json()
    assert (
        {"limit", "offset", "total", "hits", "query"} <= set(page) and page["total"] == 120 and len(page["hits"]) == 5
    )
    assert page["hits"][0]["id"] == "SF-003" and page["hits"][0]["type"] == {"item": True}


def test_catalogue_audit_runs_for_a_scapi_oci_connection(scapi_conn, sandbox):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.catalog import audit
    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Channel

    Channel.objects.create(key="uk", name="uk", connection=scapi_conn, external_id="inv_uk")
    for sku in ("SF-001", "sf-002"):
        Item.objects.create(sku=sku)
    SkuMapping.objects.create(item=Item.objects.get(sku="SF-001"), storefront_sku="SF-001")
    res = audit.audit_connection(scapi_conn)
    assert res.storefront_skus == 120 and res.per_channel["uk"]["mapped"] == 1
    assert res.per_channel["uk"]["unknown"] + res.per_channel["uk"]["mismatch"] == 119
    assert ExceptionRecord.objects.filter(dedupe_key="sku_mismatch:uk:SF-002").exists()  # sf-002 upper-cased


def test_oms_status_events_carry_each_parcels_tracking(scapi, sandbox):
    """Option oms_status_events: after the shipped update, one createOmsStatusEvent per tracked parcel, naming the
    order's product items; a retry repeats the same event id; a parcel without tracking URL sends none."""
    [no] = control(
        sandbox,
        "create_orders",
        {
            "orders": [
                {"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 2}, {"sku": "SF-002", "quantity": 1}]}
            ]
        },
    )["ids"]
    scapi.oms_events = True
    parcels = [
        Parcel("UPS", "1Z1", "https://ups.example/1Z1", lines=[("SF-001", 2)]),
        Parcel("UPS", "1Z2", "https://ups.example/1Z2", lines=[("SF-002", 1)]),
        Parcel("DPD", "NOURL"),
    ]
    scapi.mark_shipped(no, parcels)
    scapi.mark_shipped(no, parcels)  # a retry
    events = [e["fulfillmentEvent"] for e in control(sandbox, "oms_events")[no]]
    assert len(events) == 4 and events[0]["id"] == events[2]["id"] != events[1]["id"]
    assert events[0]["lineItems"] == [{"id": f"{no}-1", "quantity": 2}] and events[1]["lineItems"] == [
        {"id": f"{no}-2", "quantity": 1}
    ]
    assert (
        events[0]["type"] == "shipped"
        and events[0]["trackingUrl"] == "https://ups.example/1Z1"
        and events[0]["carrier"] == "UPS"
    )
    path = f"{ORDERS}/{no}/oms-status-events"
    for body in (
        {},
        {"fulfillmentEvent": {**events[0], "trackingUrl": None}},
        {"fulfillmentEvent": events[0], "adjustment": {}},
        {"fulfillmentEvent": {**events[0], "lineItems": [{"id": "nope", "quantity": 1}]}},
    ):
        r = _raw(scapi, "POST", path, params={"siteId": "RefArch"}, json=body)
        assert r.status_code == 400 and {"type", "title", "detail"} <= set(r.json()), (body, r.text)
