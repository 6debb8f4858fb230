"""Item outbox targets beyond the warehouse (issue 17): WAIR replenishment gets POST /Items in a batch cycle,
Inventory Planner a variants file by SFTP (nothing for URL delivery: its complete products.csv lists the item),
bundles go to no planner; the products.csv carries the new barcode."""

from __future__ import annotations


from integration_hub.catalog import item_import, item_outbox
from integration_hub.catalog.models import PendingItemSync
from tests.connectors.test_inventory_planner import ip_conn, sftp_conn  # noqa: F401  (fixture + helper)
from tests.pairs.conftest import pair  # noqa: F401  (the fixture)
from tests.support.sandbox import control

ITEMS = "sku,name,style,barcode,bundle_components\nTEE-M,Tee M,TEE,5012345678900,\nTEE-L,Tee L,TEE,,\nPACK,Pack,,,TEE-M:1|TEE-L:1\n"


def test_wair_gets_the_items_in_one_batch_cycle(pair):  # noqa: F811
    wair = pair.connection("wair_replenishment")
    r = item_import.import_items(ITEMS)
    assert r.created == 3 and r.components == 2
    assert set(PendingItemSync.objects.filter(connection=wair).values_list("item__sku", flat=True)) == {
        "TEE-M",
        "TEE-L",
    }
    out = item_outbox.drain(wair)
    assert (out.sent, out.error) == (2, "")
    state = pair.control("wair_replenishment", "state")
    assert [c for c in state["calls"] if "Batch" in str(c) or "Items" in str(c)]
    assert {"TEE-M", "TEE-L"} == {s["skuId"] for i in state["items"].values() for s in i["skus"]}
    assert not state["batch_open"] and not PendingItemSync.objects.filter(connection=wair).exists()


def test_inventory_planner_sftp_variants_file_and_url_delivery_sends_nothing(
    ip_conn,  # noqa: F811
    sandbox,
    sftp_server,
    monkeypatch,
):
    item_import.import_items(ITEMS)
    out = item_outbox.drain(ip_conn)  # URL delivery: the planner pulls products.csv, which lists every item
    assert out.sent == 0 and out.error == "" and not PendingItemSync.objects.filter(connection=ip_conn).exists()
    sftp_conn(ip_conn, sftp_server, monkeypatch)
    item_import.import_items("sku,name\nTEE-M,Tee M v2\n")
    assert item_outbox.drain(ip_conn).sent == 1
    [f] = sftp_server.files("variants")
    text = f.read_text()
    assert "TEE-M" in text and "Tee M v2" in text and "5012345678900" in text
    assert control(sandbox, "inventory_planner", "ingest", {"kind": "variants", "text": text})["processed"]


def test_products_csv_carries_the_barcode(db):
    from integration_hub.planning.feeds import _variant

    item_import.import_items(ITEMS)
    from integration_hub.catalog.models import Item

    assert _variant(Item.objects.get(sku="TEE-M"), ({}, {})).barcode == "5012345678900"
