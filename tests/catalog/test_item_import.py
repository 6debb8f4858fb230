"""Item master import (issue 17): streaming CSV / XLSX, every problem of a row with its line, good rows kept,
dry run, bulk writes with a fixed number of queries per chunk, propagation rows in the same transaction."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integration_hub.catalog import item_import, item_validation
from integration_hub.catalog.models import BundleComponent, IdentifierTransform, Item, PendingItemSync
from integration_hub.core.models import AuditEntry
from tests.support import factories

HEADER = "sku,name,style,size,colour,barcode,weight,weight_unit,unit_cost,bundle_components\n"


@pytest.fixture
def clarus(db):
    return factories.connection("clarus", "clarus-wh", base_url="https://clarus.example.com")


def test_gtin_check_digits():
    assert item_validation.gtin_problem("5012345678900") is None  # GTIN-13
    assert item_validation.gtin_problem("96385074") is None  # GTIN-8
    assert item_validation.gtin_problem("036000291452") is None  # GTIN-12 (UPC-A)
    assert item_validation.gtin_problem("10012345678902") is None  # GTIN-14
    assert "check digit 1, expected 0" in item_validation.gtin_problem("5012345678901")
    assert "8, 12, 13 or 14" in item_validation.gtin_problem("123456789")
    assert "digits only" in item_validation.gtin_problem("50123A5678900")


def test_weight_and_cost_rules():
    assert item_validation.weight_problems("250", "g")[2] == []
    assert "more than 0" in item_validation.weight_problems("0", "kg")[2][0]
    assert "no weight_unit" in item_validation.weight_problems("1", "")[2][0]
    assert "not one of g, kg, lb, oz" in item_validation.weight_problems("1", "stone")[2][0]
    assert "without a weight" in item_validation.weight_problems("", "kg")[2][0]
    assert item_validation.parse_decimal("-1", "unit_cost", positive=False)[1] == "unit_cost '-1' must not be negative"
    assert item_validation.parse_decimal("0", "unit_cost", positive=False) == (Decimal("0"), None)
    assert item_validation.grams(Decimal("1"), "lb") == Decimal("453.59")


def test_import_creates_items_with_every_field_and_queues_propagation(clarus):
    text = HEADER + (
        "TEE-RED-M,Tee red M,TEE,M,red,5012345678900,180,g,4.25,\n"
        "TEE-RED-L,Tee red L,TEE,L,red,,0.2,kg,4.50,\n"
        "TEE-PACK,Two tees,,,,,,,,TEE-RED-M:1|TEE-RED-L:1\n"
    )
    r = item_import.import_items(text)
    assert (r.created, r.error_count, r.fatal) == (3, 0, "")
    m = Item.objects.get(sku="TEE-RED-M")
    assert (m.name, m.parent_sku, m.attributes, m.barcode, m.weight, m.weight_unit, m.unit_cost) == (
        "Tee red M",
        "TEE",
        {"size": "M", "colour": "red"},
        "5012345678900",
        Decimal("180"),
        "g",
        Decimal("4.25"),
    )
    pack = Item.objects.get(sku="TEE-PACK")
    assert pack.is_bundle and set(
        BundleComponent.objects.filter(bundle=pack).values_list("component__sku", "quantity")
    ) == {("TEE-RED-M", 1), ("TEE-RED-L", 1)}
    # the warehouse gets a product record for the two variants (not the bundle), in the import's transaction
    assert set(PendingItemSync.objects.filter(connection=clarus).values_list("item__sku", flat=True)) == {
        "TEE-RED-M",
        "TEE-RED-L",
    }
    assert AuditEntry.objects.filter(source="csv-import", action="create").count() == 3


def test_every_problem_of_a_row_in_file_order_and_good_rows_kept(db):
    text = HEADER + (
        "BAD SKU,x,,,,5012345678901,-1,stone,-2,\n"
        "GOOD-1,Good,,,,,,,,\n"
        "GOOD-1,Again,,,,,,,,\n"
        "KIT,Kit,,,,,,,,NOPE:2|GOOD-1:x\n"
    )
    r = item_import.import_items(text)
    assert r.created == 1 and Item.objects.filter(sku="GOOD-1").exists()
    assert [e.line for e in r.errors] == [2, 4, 5]
    first = r.errors[0].reason
    for part in (
        "sku contains a space",
        "check digit 1, expected 0",
        "weight '-1' must be more than 0",
        "weight_unit 'stone' is not one of",
        "unit_cost '-2' must not be negative",
    ):
        assert part in first
    assert "duplicate of line 3" in r.errors[1].reason
    assert "quantity 'x' of 'GOOD-1'" in r.errors[2].reason
    report = item_import.error_report_csv(r)
    assert report.splitlines()[1].startswith("2,")


def test_unknown_component_and_nested_bundle_are_refused(db):
    item_import.import_items(HEADER + "A,,,,,,,,,\nB,,,,,,,,,\nKIT1,,,,,,,,,A:1|B:2\n")
    r = item_import.import_items(HEADER + "KIT2,,,,,,,,,KIT1:1\nKIT3,,,,,,,,,ZZZ:1\n")
    assert r.created == 0
    assert "'KIT1' is itself a bundle" in r.errors[0].reason
    assert "'ZZZ' is not in the item master" in r.errors[1].reason


def test_dry_run_saves_nothing_but_counts(db):
    r = item_import.import_items(HEADER + "A,,,,,,,,,\nB,,,,,,,,,\n", dry_run=True)
    assert r.dry_run and r.created == 2 and not Item.objects.exists() and not AuditEntry.objects.exists()


def test_reimport_updates_only_changed_and_missing_column_keeps_field(db):
    item_import.import_items(HEADER + "A,Alpha,,S,blue,5012345678900,1,kg,2,\n")
    r = item_import.import_items("sku,name\nA,Alpha\n")
    assert (r.created, r.updated, r.unchanged) == (0, 0, 1)
    r = item_import.import_items("sku,name,colour\nA,Alpha 2,\n")
    assert r.updated == 1
    a = Item.objects.get(sku="A")
    assert a.name == "Alpha 2" and a.attributes == {"size": "S"} and a.barcode == "5012345678900"
    assert AuditEntry.objects.filter(action="update", source="csv-import").count() == 1


def test_sku_rules_of_the_connection(db):
    conn = factories.connection(
        "commercetools",
        "ct",
        base_url="https://api.example.com",
        options={"sku_rules": {"allowed_characters": "A-Z0-9-", "keep_leading_zeros": False}},
    )
    IdentifierTransform.objects.create(name="eight", connection=conn, fixed_length=8)
    r = item_import.import_items("sku\nAB-12345\nab-12345\n00012345\nAB-1\n", connection=conn)
    assert r.created == 1
    reasons = {e.line: e.reason for e in r.errors}
    assert "outside [A-Z0-9-]" in reasons[3]
    assert "starts with 0" in reasons[4]
    assert "exactly 8 characters" in reasons[5]


def test_fatal_header_imports_nothing(db):
    r = item_import.import_items("name,barcode\nx,1\n")
    assert "missing column(s): sku" in r.fatal and not Item.objects.exists()


def test_xlsx_import_streams_the_first_sheet(db):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["SKU", "Name", "GTIN", "Weight", "Weight_Unit", "Unit_Cost"])
    ws.append(["X-1", "Ex one", 5012345678900, 1.5, "kg", 3])
    ws.append([None, None, None, None, None, None])
    ws.append(["X-2", "Ex two", 5012345678901, 0, "kg", None])
    buf = io.BytesIO()
    wb.save(buf)
    r = item_import.import_items(buf.getvalue(), filename="items.xlsx")
    assert r.created == 1 and r.error_count == 1
    x = Item.objects.get(sku="X-1")
    assert (x.barcode, x.weight, x.unit_cost) == ("5012345678900", Decimal("1.5"), Decimal("3"))
    assert r.errors[0].line == 4 and "check digit" in r.errors[0].reason and "more than 0" in r.errors[0].reason


def _big_csv(n: int, start: int = 0) -> bytes:
    lines = [HEADER.strip()]
    lines += [f"SKU-{i:06d},Item {i},STYLE-{i // 10},M,red,,{100 + i % 7},g,1.25," for i in range(start, start + n)]
    return ("\n".join(lines) + "\n").encode()


def _queries(data) -> tuple[int, item_import.ItemImportResult]:
    with CaptureQueriesContext(connection) as ctx:
        r = item_import.import_items(io.BytesIO(data))
    return len(ctx.captured_queries), r


def test_thousands_of_rows_stream_in_chunks_with_a_fixed_query_count_per_chunk(db, clarus, monkeypatch):
    monkeypatch.setattr(item_import, "CHUNK", 500)
    q1, r1 = _queries(_big_csv(1000, start=0))
    q3, r3 = _queries(_big_csv(3000, start=1000))
    assert (r1.created, r1.chunks, r3.created, r3.chunks, r3.error_count) == (1000, 2, 3000, 6, 0)
    per_chunk = (q3 - q1) / 4
    assert per_chunk == int(per_chunk) and q1 - 2 * per_chunk <= 3  # the same queries for every chunk, a few per file
    # a chunk's writes are batched (bulk insert in batches the backend allows, one audit insert per batch, one
    # outbox upsert), never one per row
    assert per_chunk <= 25, per_chunk
    assert PendingItemSync.objects.filter(connection=clarus).count() == 4000
    # the same file again: every row unchanged, duplicates across chunks still found, same bound
    q, r = _queries(_big_csv(3000, start=1000) + b"SKU-001001,dup,,,,,,,,\n")
    assert (r.unchanged, r.error_count) == (3000, 1) and "duplicate SKU" in r.errors[0].reason
    assert q / r.chunks <= 25


def test_one_drain_nudge_per_import_however_many_chunks(db, clarus, monkeypatch, django_capture_on_commit_callbacks):
    from integration_hub.catalog import item_outbox

    monkeypatch.setattr(item_import, "CHUNK", 500)
    with django_capture_on_commit_callbacks() as callbacks:
        r = item_import.import_items(io.BytesIO(_big_csv(2000)))
    assert r.chunks == 4
    assert [c for c in callbacks if c is item_outbox._nudge] == [item_outbox._nudge]


def test_drain_all_runs_batch_after_batch_until_the_outbox_is_empty(db, monkeypatch):
    from integration_hub.catalog import item_outbox

    conn = factories.connection(
        "inventory_planner", "ip", base_url="https://api.example.com", client_id="acct", options={"delivery": "url"}
    )
    conn.set_secret("k")
    conn.save()
    item_import.import_items(io.BytesIO(_big_csv(1200)))
    assert PendingItemSync.objects.filter(connection=conn).count() == 1200
    [out] = item_outbox.drain_all(limit=500)  # URL delivery sends nothing: every batch just completes
    assert out["error"] == "" and not PendingItemSync.objects.exists()
