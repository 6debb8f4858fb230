"""Products a warehouse must know before orders name them (Clarus): synced from the item master, ids stored,
put on the lines of warehouse orders about to be sent."""

from __future__ import annotations

import pytest

from integration_hub.catalog import warehouse_products as wp
from integration_hub.catalog.models import Item, WarehouseProduct
from tests.support.sandbox import SandboxClient, faults
from tests.support import factories


@pytest.fixture
def clarus(db, sandbox):
    from integration_hub.core.models import Connection

    from tests.support.factories import CLARUS_OPTIONS

    conn = Connection(
        name="clarus",
        system_type="clarus",
        base_url=f"{sandbox.url}/clarus",
        client_id="hub-demo",
        options=dict(CLARUS_OPTIONS),
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=1,
    )
    conn.set_secret("clarus-demo-key")
    conn.save()
    Item.objects.create(sku="A", name="Mug")
    Item.objects.create(sku="B", name="Spoon")
    Item.objects.create(sku="KIT", name="Kit", is_bundle=True)
    return conn


def test_sync_creates_once_and_stores_the_ids(clarus, sandbox):
    res = wp.sync_warehouse_products(clarus)
    assert (res.considered, res.stored, res.error) == (2, 2, "")  # bundles are not products the warehouse picks
    state = SandboxClient.of(sandbox).state("clarus")
    stored = dict(WarehouseProduct.objects.values_list("item__sku", "external_id"))
    assert stored == state["products"]
    assert wp.sync_warehouse_products(clarus).considered == 0  # nothing new
    Item.objects.create(sku="C", name="Bowl")
    assert wp.sync_warehouse_products(clarus).stored == 1


def test_stored_ids_go_on_the_order_lines(clarus):
    from types import SimpleNamespace

    from connectors.base import Address, WarehouseOrder, WarehouseOrderLine

    wp.sync_warehouse_products(clarus)
    wo = WarehouseOrder(
        "R", "1", "web", [WarehouseOrderLine("1", "A", 1), WarehouseOrderLine("2", "GHOST", 1)], Address(), "STD"
    )
    wp.attach_ids([(SimpleNamespace(warehouse_id=clarus.pk), wo)])
    assert wo.lines[0].warehouse_product_id == WarehouseProduct.objects.get(item__sku="A").external_id
    assert wo.lines[1].warehouse_product_id == ""


def test_a_failed_sync_is_an_exception_and_a_sku_warehouse_is_skipped(clarus, sandbox):
    from exceptions_app.models import ExceptionRecord

    faults(sandbox, "clarus", error_rate=1.0)
    res = wp.sync_warehouse_products(clarus)
    assert res.error and ExceptionRecord.objects.get(dedupe_key="sync_timeout:clarus:product_sync").status == "open"
    faults(sandbox, "clarus", error_rate=0.0)
    assert wp.sync_warehouse_products(clarus).stored == 2
    assert ExceptionRecord.objects.get(dedupe_key="sync_timeout:clarus:product_sync").status == "resolved"
    archean = factories.connection("archean", "r247", base_url="http://127.0.0.1:9/archean")
    assert wp.sync_warehouse_products(archean).stored == 0  # names SKUs: nothing to sync


def test_beat_job_and_task(clarus):
    from integration_hub.catalog import tasks
    from integration_hub.catalog.beat import SCHEDULE

    assert any(j.task == "catalog.sync_warehouse_products" for j in SCHEDULE)
    assert tasks.sync_warehouse_products()["clarus"]["stored"] == 2
