"""Issue 17 end to end against the sandbox emulators over HTTP: a new item imported by CSV reaches the warehouse's
product list and goes on sale without anyone touching the admin; the SKU master pull; pending items from the
stock feed; a changed barcode on one side is one exception naming both values."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from exceptions_app.models import ExceptionRecord
from integration_hub.catalog import item_import, item_outbox, master_drift, master_pull
from integration_hub.catalog.models import Item, PendingItemSync, SkuMapping, WarehouseProduct
from integration_hub.core.models import SyncCursor
from integration_hub.inventory.models import StockLevel
from tests.pairs.conftest import pair  # noqa: F401  (the fixture)
from tests.pairs.flows import storefront_inventory
from tests.support.tasks import trap_tasks

NEW = (
    "sku,name,style,size,colour,barcode,weight,weight_unit,unit_cost,storefront_sku\n"
    "NEW-1,Linen shirt M,SHIRT,M,white,5012345678900,320,g,11.50,SF-NEW-1\n"
)


@pytest.fixture
def run_queued():
    """The catalogue tasks a commit queues run in-process, synchronously, and are recorded (others are trapped)."""
    names = ("catalog.check_storefront_skus", "catalog.pull_master_items")
    ran = []
    with trap_tasks(run=names) as trap:
        trap.on_send(
            lambda s: (
                s.name in names and ran.append((s.name.split(".", 1)[1], s.call.get("args", ()), s.call.get("kwargs")))
            )
        )
        yield ran


@pytest.fixture
def world(pair):  # noqa: F811
    sf, wh = pair.connection("commercetools"), pair.connection("clarus")
    pair.topology(sf, wh, list_id="sc-web")
    return pair, sf, wh


def _message(sf, body):
    sf.set_webhook_secret("ct-hook-secret")
    sf.save()
    return Client().post(
        f"/hooks/orders/{sf.name}/",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer ct-hook-secret",
    )


def test_csv_item_reaches_the_warehouse_and_goes_on_sale_after_the_storefront_publishes_it(
    world, django_capture_on_commit_callbacks, run_queued
):
    pr, sf, wh = world
    r = item_import.import_items(NEW)
    assert (r.created, r.mappings, r.error_count) == (1, 1, 0)
    item = Item.objects.get(sku="NEW-1")
    assert set(PendingItemSync.objects.filter(item=item).values_list("connection__name", flat=True)) == {
        "clarus",
        "commercetools",
    }

    # the outbox: Clarus gets the product (with its barcode); the storefront does not sell it yet → reported
    results = {r["connection"]: r for r in item_outbox.drain_all()}
    assert results["clarus"]["sent"] == 1 and results["commercetools"]["not_on_storefront"] == 1
    state = pr.control("clarus", "state")
    assert "NEW-1" in state["products"] and WarehouseProduct.objects.get(item=item, connection=wh).external_id == str(
        state["products"]["NEW-1"]
    )
    rec = ExceptionRecord.objects.get(dedupe_key="not_on_storefront:commercetools:SF-NEW-1")
    assert rec.kind == "not_on_storefront" and rec.status == "open"
    assert not PendingItemSync.objects.exists()

    # stock arrives; the channel has no product for it yet
    pr.control(
        "clarus", "set_stock", {"rows": [{"sku": "NEW-1", "location": "DC1", "state": "available", "quantity": 9}]}
    )
    pr.stock_sync(wh)
    assert StockLevel.objects.get(item=item).quantity == 9

    # the merchant publishes it; commercetools' ProductPublished Message triggers the check at once
    pr.control(
        "commercetools",
        "seed_catalog",
        {"products": [{"key": "shirt", "skus": ["SF-NEW-1"]}], "channels": ["sc-web"], "quantity": 0},
    )
    msg = {
        "notificationType": "Message",
        "type": "ProductPublished",
        "resource": {"typeId": "product", "id": "p-1"},
        "productProjection": {"masterVariant": {"sku": "SF-NEW-1"}, "variants": []},
    }
    with django_capture_on_commit_callbacks(execute=True):
        resp = _message(sf, msg)
    assert resp.status_code == 200 and resp.json()["products"] == 1
    assert run_queued == [("check_storefront_skus", [sf.pk, ["SF-NEW-1"]], None)]
    rec.refresh_from_db()
    assert rec.status == "resolved"
    pr.push()
    assert storefront_inventory(pr, sf, "sc-web")["SF-NEW-1"] == 9


def test_product_message_parse():
    from connectors.base import ProductChanged
    from connectors.commercetools import CommercetoolsConnector

    class C:
        name, options, pk = "ct", {"project_key": "p"}, 1

    ct = CommercetoolsConnector.__new__(CommercetoolsConnector)
    hints = ct.parse_order_webhook(
        [
            {
                "notificationType": "Message",
                "type": "ProductVariantAdded",
                "resource": {"typeId": "product", "id": "abc"},
                "variant": {"sku": "X-1"},
            },
            {"notificationType": "Message", "type": "OrderCreated", "resource": {"typeId": "order", "id": "o1"}},
        ]
    )
    assert hints == [ProductChanged("abc", "ProductVariantAdded", ("X-1",)), "o1"]
    from connectors import errors

    with pytest.raises(errors.BadDataError):
        ct.parse_order_webhook(
            {"notificationType": "Message", "type": "ProductPublished", "resource": {"typeId": "order", "id": "x"}}
        )


def test_failed_item_sync_backs_off_and_files_one_record(world):
    pr, sf, wh = world
    item_import.import_items("sku,name\nNEW-2,Two\n")
    pr.control("clarus", "faults", {"error_rate": 1.0})
    out = item_outbox.drain(wh)
    assert out.error
    row = PendingItemSync.objects.get(connection=wh)
    assert row.attempts == 1 and row.not_before is not None and row.last_error
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:clarus:item_sync")
    assert rec.status == "open"
    pr.control("clarus", "faults", {"error_rate": 0.0})
    PendingItemSync.objects.update(not_before=None)
    assert item_outbox.drain(wh).sent == 1 and not PendingItemSync.objects.filter(connection=wh).exists()
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_a_change_during_the_send_keeps_the_row(world, monkeypatch):
    pr, sf, wh = world
    item_import.import_items("sku,name\nNEW-3,Three\n")
    real = item_outbox._warehouse_products

    def racing(conn, connector, items):
        item_outbox.enqueue([items[0].pk], reason="changed meanwhile")  # clears the claim token
        return real(conn, connector, items)

    monkeypatch.setattr(item_outbox, "_warehouse_products", racing)
    item_outbox.drain(wh)
    assert PendingItemSync.objects.filter(connection=wh, changes=2).exists()


# --- the SKU master -----------------------------------------------------------------------------------------------
@pytest.fixture
def archean(pair):  # noqa: F811
    conn = pair.connection("archean")
    conn.options = {"item_master": True}
    conn.save()
    return pair, conn


ITEMS = [
    {
        "item_code": "AR-1",
        "description": "Archean one",
        "style_code": "AR",
        "size_code": "S",
        "colour_code": "blue",
        "barcode": "5012345678900",
        "weight": "1.5",
        "weight_uom": "kg",
        "unit_cost": "3.10",
    },
    {"item_code": "AR-2", "description": "Archean two", "barcode": "5012345678901"},  # bad check digit
    {"item_code": "AR-3", "description": "Archean three", "weight": "-1", "weight_uom": "g"},
]


def test_master_pull_writes_items_files_refused_rows_and_advances_the_cursor(archean):
    pr, conn = archean
    pr.control("archean", "seed_items", {"items": ITEMS})
    out = master_pull.pull_master_items(conn)
    assert (out.read, out.created, out.refused, out.error) == (3, 1, 2, "")
    a = Item.objects.get(sku="AR-1")
    assert (a.name, a.parent_sku, a.attributes, a.weight_unit, str(a.unit_cost)) == (
        "Archean one",
        "AR",
        {"size": "S", "colour": "blue"},
        "kg",
        "3.1000",
    )
    assert a.source.startswith("master:archean")
    bad = ExceptionRecord.objects.get(dedupe_key="bad_payload:archean:item:AR-2")
    assert "check digit" in bad.message
    assert SyncCursor.objects.get(connection=conn, stream="items").value
    # the master fixes AR-2: the next (incremental) pull takes it and resolves the record
    pr.control("archean", "seed_items", {"items": [{"item_code": "AR-2", "barcode": "5012345678900"}]})
    again = master_pull.pull_master_items(conn)
    assert again.read == 1 and again.created == 1
    bad.refresh_from_db()
    assert bad.status == "resolved"


def test_emulator_refuses_a_bad_updated_since(archean):
    import requests

    pr, conn = archean
    r = requests.get(
        f"{pr.sandbox.url}/archean/api/v2/items",
        params={"updated_since": "yesterday"},
        headers={"Authorization": "Bearer archean-demo-key"},
        timeout=5,
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_parameter"
    assert requests.get(f"{pr.sandbox.url}/archean/api/v2/items", timeout=5).status_code == 401


def test_stock_for_an_unknown_master_sku_makes_a_pending_item_and_keeps_the_stock(
    archean, django_capture_on_commit_callbacks, run_queued
):
    from integration_hub.core.models import Location
    from integration_hub.inventory.services import poll_master

    pr, conn = archean
    Location.objects.create(code="st1", name="Store 1", connection=conn, external_id="ST1")
    pr.control("archean", "seed_locations", {"locations": [{"id": "ST1", "name": "Store 1"}]})
    pr.control(
        "archean",
        "seed_items",
        {"items": [{"item_code": "BRAND-NEW", "description": "Brand new", "barcode": "96385074"}]},
    )
    pr.control(
        "archean",
        "set_stock",
        {
            "rows": [
                {"sku": "BRAND-NEW", "location": "ST1", "state": "available", "quantity": 4},
                {"sku": "bad sku", "location": "ST1", "state": "available", "quantity": 1},
            ]
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        poll_master(conn)
    item = Item.objects.get(sku="BRAND-NEW")
    assert StockLevel.objects.get(item=item).quantity == 4
    assert run_queued == [("pull_master_items", [conn.pk], {"skus": ["BRAND-NEW"]})]
    # the pull queued after the commit completed it from the master
    assert (item.pending, item.name, item.barcode) == (False, "Brand new", "96385074")
    assert not ExceptionRecord.objects.filter(dedupe_key="unknown_sku:archean:BRAND-NEW").exists()
    assert ExceptionRecord.objects.filter(dedupe_key="unknown_sku:archean:bad sku").exists()  # breaks the SKU rules


def test_unknown_master_sku_from_a_non_master_connection_stays_unknown(pair):  # noqa: F811
    from integration_hub.core.models import Location
    from integration_hub.inventory.services import poll_master

    conn = pair.connection("archean")
    Location.objects.create(code="st1", name="Store 1", connection=conn, external_id="ST1")
    pair.control("archean", "seed_locations", {"locations": [{"id": "ST1", "name": "Store 1"}]})
    pair.control(
        "archean", "set_stock", {"rows": [{"sku": "GHOST", "location": "ST1", "state": "available", "quantity": 4}]}
    )
    poll_master(conn)
    assert not Item.objects.filter(sku="GHOST").exists()
    assert ExceptionRecord.objects.filter(dedupe_key="unknown_sku:archean:GHOST").exists()


# --- master data drift ------------------------------------------------------------------------------------------------
def test_a_changed_barcode_on_one_side_is_one_exception_naming_both_values(world):
    pr, sf, wh = world
    # storefront product names are marketing names here: compare barcode and weight only
    sf.options = {
        **sf.options,
        "barcode_attribute": "ean",
        "weight_attribute": "weight_g",
        "master_data_fields": ["barcode", "weight"],
    }
    sf.save()
    item_import.import_items(
        "sku,barcode,weight,weight_unit,name\nA,5012345678900,250,g,Item A\nB,96385074,1,kg,Item B\n"
    )
    item_outbox.drain_all()  # Clarus now has A and B (with the master's barcodes)
    pr.control("commercetools", "set_variant", {"sku": "SF-A", "attributes": {"ean": "5012345678900", "weight_g": 250}})
    pr.control("commercetools", "set_variant", {"sku": "SF-B", "attributes": {"weight_g": 900}})
    pr.control("clarus", "set_product", {"code": "A", "barcode": "4006381333931"})
    from integration_hub.catalog.tasks import audit_master_data

    audit_master_data()
    open_ = {r.dedupe_key: r for r in ExceptionRecord.objects.filter(kind="master_data_drift", status="open")}
    assert set(open_) == {"master_data_drift:clarus:A:barcode", "master_data_drift:commercetools:B:weight"}, set(open_)
    rec = open_["master_data_drift:clarus:A:barcode"]
    assert (rec.context["master_value"], rec.context["system_value"]) == ("5012345678900", "4006381333931")
    assert "5012345678900" in rec.title and "4006381333931" in rec.title and rec.sku == "A"
    assert "1000" in open_["master_data_drift:commercetools:B:weight"].context["master_value"]
    # again: still one record each (merged), then fixed on the warehouse side → resolved
    audit_master_data()
    assert ExceptionRecord.objects.filter(kind="master_data_drift", status="open").count() == 2
    assert ExceptionRecord.objects.get(dedupe_key="master_data_drift:clarus:A:barcode").count == 2
    pr.control("clarus", "set_product", {"code": "A", "barcode": "5012345678900"})
    audit_master_data()
    assert ExceptionRecord.objects.get(dedupe_key="master_data_drift:clarus:A:barcode").status == "resolved"
    # the console: the exception queue filters by the kind
    from django.contrib.auth.models import Group, User

    u = User.objects.create_user("ops1", password="x")
    u.groups.add(Group.objects.get(name="ops"))
    c = Client()
    c.force_login(u)
    page = c.get("/exceptions/?kind=master_data_drift&status=open").content.decode()
    assert "B: weight differs on commercetools" in page


def test_drift_audit_query_count_is_per_batch(world, django_assert_max_num_queries, monkeypatch):
    pr, sf, wh = world
    monkeypatch.setattr(master_drift, "BATCH", 2)
    from connectors.registry import get_connector

    connector = get_connector(sf)
    calls = []
    monkeypatch.setattr(type(connector), "catalogue_records", lambda self, skus: calls.append(list(skus)) or {})
    for i in range(10):
        it = Item.objects.create(sku=f"Z{i}", barcode="96385074")
        SkuMapping.objects.create(item=it, storefront_sku=f"SF-Z{i}")
    with django_assert_max_num_queries(8):
        out = master_drift.audit_connection(sf, connector)
    assert out.missing == 14 and len(calls) == 7  # A, B, C, KIT + 10, two per call
