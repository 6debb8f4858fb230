"""CSV import limits: unreadable rows are error rows (never a 500), every row counts toward the cap, only the
first rejected rows are kept (with a count), and the upload is read as a stream in bounded memory."""

from __future__ import annotations

import csv
import io
import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from integration_hub.catalog.models import SkuMapping
from integration_hub.catalog import mapping_import
from integration_hub.core import tabular

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def test_a_value_over_the_field_limit_is_an_error_row_and_the_good_rows_are_kept(w):
    a, b, _ = (i.sku for i in w.items)
    body = (
        f"master_sku,storefront_sku,channel,storefront_product\n{a},K-1,web,p1\n"
        f"{b},K-2,web,{'x' * 200_000}\n"
        f"{b},K-3,web,p3\n"
    )
    result = mapping_import.import_sku_mappings(body.encode())
    assert result.fatal == "" and result.created == 2
    assert [(e.line, e.reason) for e in result.errors] == [
        (3, f"a value is longer than {csv.field_size_limit():,} characters")
    ]
    assert set(SkuMapping.objects.values_list("storefront_sku", flat=True)) == {"K-1", "K-3"}


def test_a_nul_byte_is_an_error_row(w):
    """Python 3.11's reader passes NUL through; PostgreSQL (and psycopg, with a ValueError) refuse it."""
    a, b, _ = (i.sku for i in w.items)
    body = f"master_sku,storefront_sku\n{a},N-1\n{b},N\x00-2\n{b},N-3\n".encode()
    result = mapping_import.import_sku_mappings(body)
    assert result.created == 2 and result.error_count == 1
    assert (result.errors[0].line, result.errors[0].reason) == (3, "storefront_sku contains a NUL character")


def test_an_unreadable_header_is_fatal_not_a_crash(w):
    result = mapping_import.import_sku_mappings(("master_sku," + "h" * 200_000 + "\n1,2\n").encode())
    assert "header row cannot be read" in result.fatal


def test_the_page_answers_400_for_a_huge_field_in_the_header_and_200_for_one_in_a_row(w, role_client):
    client = role_client("ops")
    up = SimpleUploadedFile("m.csv", ("master_sku," + "h" * 200_000 + "\n").encode(), content_type="text/csv")
    r = client.post("/rules/sku-mappings/import/", {"file": up, "format": "html"})
    assert r.status_code == 400 and "header row cannot be read" in r.content.decode()
    a = w.items[0].sku
    up = SimpleUploadedFile(
        "m.csv", f"master_sku,storefront_sku,storefront_product\n{a},P-1,\n{a},P-2,{'y' * 200_000}\n".encode()
    )
    r = client.post("/rules/sku-mappings/import/", {"file": up, "format": "html"})
    assert r.status_code == 200 and "a value is longer than" in r.content.decode()
    assert SkuMapping.objects.filter(storefront_sku="P-1").exists()


def test_bad_rows_count_toward_the_row_cap(w, monkeypatch):
    """Rows with one extra column used to be set aside without counting, so any number got past the cap."""
    monkeypatch.setattr(mapping_import, "MAX_ROWS", 100)
    a = w.items[0].sku
    body = "master_sku,storefront_sku\n" + "".join(f"{a},X-{i},extra\n" for i in range(100)) + f"{a},OK-1\n"
    result = mapping_import.import_sku_mappings(body)
    assert result.fatal == "more than 100 rows: split the file"
    assert not SkuMapping.objects.exists()
    body = "master_sku,storefront_sku\n" + "".join(f"{a},X-{i},extra\n" for i in range(99)) + f"{a},OK-1\n"
    result = mapping_import.import_sku_mappings(body)
    assert result.fatal == "" and result.created == 1 and result.error_count == 99


def test_only_the_first_rejected_rows_are_kept_with_the_total_count(w, role_client):
    a, b, _ = (i.sku for i in w.items)
    n_bad = 3_000
    body = (
        f"master_sku,storefront_sku,channel\n{a},G-1,web\n"
        + "".join(f"{b},B-{i},web,extra\n" for i in range(n_bad))  # lines 3 … 3002: one value too many
        + f"NOPE,G-2,web\n{b},G-3,web\n"
    )  # line 3003 unknown SKU (a later phase), line 3004 good
    result = mapping_import.import_sku_mappings(body.encode())
    assert result.created == 2 and result.error_count == n_bad + 1
    assert (
        len(result.errors) == tabular.MAX_KEPT_ERRORS and result.errors_truncated == n_bad + 1 - tabular.MAX_KEPT_ERRORS
    )
    assert [e.line for e in result.errors] == list(range(3, 3 + tabular.MAX_KEPT_ERRORS))  # lowest lines, in order
    report = list(csv.reader(io.StringIO(mapping_import.error_report_csv(result))))
    assert len(report) == 1 + tabular.MAX_KEPT_ERRORS + 1
    assert report[-1][1].startswith(f"… and {n_bad + 1 - tabular.MAX_KEPT_ERRORS:,} more rejected rows not listed")
    up = SimpleUploadedFile("m.csv", body.encode(), content_type="text/csv")
    html = role_client("ops").post("/rules/sku-mappings/import/", {"file": up, "format": "html"}).content.decode()
    assert f"The first 1000 of {n_bad + 1} rejected rows are listed" in html


ROWS = 1_500_000
LIMIT_MB = 30  # the old import held the decoded file plus a dict per bad row: hundreds of MB for this file


def test_one_and_a_half_million_bad_rows_stream_in_bounded_memory(w, tmp_path):
    """1.5M rows with one extra column, uploaded as Django spools a big upload (a temporary file): the import
    reads it as a stream, stops at the row cap (bad rows count) and keeps 1,000 error rows with the count."""
    a = w.items[0].sku
    path = tmp_path / "bad.csv"
    with path.open("w") as out:
        out.write("master_sku,storefront_sku,channel\n")
        for start in range(0, ROWS, 100_000):
            out.write("".join(f"{a},S{i},web,extra\n" for i in range(start, start + 100_000)))
    size = path.stat().st_size
    assert size > 35 * 2**20
    upload = TemporaryUploadedFile("bad.csv", "text/csv", size, None)
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            upload.write(chunk)
    upload.seek(0)
    tracemalloc.start()
    try:
        result = mapping_import.import_sku_mappings(upload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        upload.close()
    assert result.fatal == f"more than {mapping_import.MAX_ROWS:,} rows: split the file"
    assert result.error_count == mapping_import.MAX_ROWS and len(result.errors) == tabular.MAX_KEPT_ERRORS
    assert result.errors[0].reason == "more values than columns"
    assert peak / 2**20 < LIMIT_MB, f"peak {peak / 2**20:.0f} MB importing a {size / 2**20:.0f} MB file"
    assert not SkuMapping.objects.exists()
    # the same measurement holding the file's text (what reading the upload whole does) is over the bound
    tracemalloc.start()
    try:
        text = path.read_bytes().decode("utf-8")
        _, held = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(text) == size and held / 2**20 > LIMIT_MB


def test_encodings_are_still_detected_when_streaming(w):
    a, b, _ = (i.sku for i in w.items)
    bom = "\ufeffmaster_sku;storefront_sku;storefront_product\n".encode() + f"{a};E-1;caf\u00e9\n".encode()
    result = mapping_import.import_sku_mappings(io.BytesIO(bom))
    assert result.created == 1 and SkuMapping.objects.get(storefront_sku="E-1").storefront_product == "caf\u00e9"
    cp = f"master_sku,storefront_sku,storefront_product\n{b},E-2,\u201cq\u201d\n".encode("cp1252")
    assert mapping_import.import_sku_mappings(cp).created == 1
    assert SkuMapping.objects.get(storefront_sku="E-2").storefront_product == "\u201cq\u201d"
