"""CSV import no longer swallows rows: embedded line breaks and short rows are refused with their line
numbers, every problem of a row is reported, rejected rows are listed in file order, and a dry run saves
nothing."""

from __future__ import annotations

import pytest

from integration_hub.catalog.models import SkuMapping
from integration_hub.catalog import mapping_import
from integration_hub.core import tabular
from integration_hub.inventory.models import PendingPush

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def test_unbalanced_quote_does_not_save_a_sku_with_a_newline(w):
    a, b = w.items[0].sku, w.items[1].sku
    text = f'master_sku,storefront_sku,channel\n{a},"A-1,web\n{b},B-1,web\n'
    r = mapping_import.import_sku_mappings(text)
    assert not SkuMapping.objects.filter(storefront_sku__contains="\n").exists()
    assert r.created == 0 and r.error_count == 1
    e = r.errors[0]
    assert e.line == 2 and "line break" in e.reason and "spans lines 2–3" in e.reason


def test_short_row_is_refused_with_its_line_not_made_an_all_channel_mapping(w):
    a, b = w.items[0].sku, w.items[1].sku
    r = mapping_import.import_sku_mappings(f"master_sku,storefront_sku,channel\n{a},A-1,web\n{b},B-1\n")
    assert r.created == 1 and not SkuMapping.objects.filter(channel__isnull=True).exists()
    assert [(e.line, e.reason) for e in r.errors] == [
        (3, "only 2 of 3 values (a short row is not imported: add the missing separators)")
    ]


def test_every_problem_of_a_row_is_reported_and_rows_come_in_file_order(w):
    text = (
        "master_sku,storefront_sku,channel,safety_buffer\n"
        "NOPE,<b>x</b>,mars,-1\n"
        f"{w.items[0].sku},OK-1,web,1\n"
        "NOPE2,A B,,2\n"
    )
    r = mapping_import.import_sku_mappings(text)
    assert [e.line for e in r.errors] == [2, 4]
    first = r.errors[0].reason
    for part in (
        "unknown master SKU 'NOPE'",
        "storefront_sku contains markup",
        "unknown channel 'mars'",
        "safety_buffer '-1' is not a whole number",
    ):
        assert part in first
    assert "storefront_sku contains a space" in r.errors[1].reason


def test_dry_run_saves_nothing_and_says_what_would_change(w, role_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = f"master_sku,storefront_sku,channel\n{w.items[0].sku},A-1,web\nNOPE,B-1,web\n"
    r = mapping_import.import_sku_mappings(text, dry_run=True)
    assert (r.created, r.error_count, r.dry_run) == (1, 1, True)
    assert not SkuMapping.objects.exists() and not PendingPush.objects.exists()
    client = role_client("admin")
    resp = client.post(
        "/rules/sku-mappings/import/",
        {"file": SimpleUploadedFile("m.csv", text.encode()), "dry_run": "on", "format": "html"},
    )
    assert resp.status_code == 200 and "Dry run — nothing was saved." in resp.content.decode()
    assert not SkuMapping.objects.exists()


def test_a_row_the_database_refuses_is_reported_and_the_rest_of_the_chunk_is_kept(w):
    """`write_chunk`'s per-row fallback: one row in the chunk violates a unique constraint (a mapping another
    user created meanwhile), so the bulk insert fails; the good rows are written one savepoint each and only the
    clashing row is handed to ``refused``."""
    SkuMapping.objects.create(item=w.items[0], channel=w.channel, storefront_sku="TAKEN")
    good = [
        SkuMapping(item=w.items[1], channel=w.channel, storefront_sku="FREE-1"),
        SkuMapping(item=w.items[2], channel=w.channel, storefront_sku="FREE-2"),
    ]
    clash = SkuMapping(item=w.items[1], channel=w.channel, storefront_sku="TAKEN")
    refused = []
    new, changed = tabular.write_chunk(
        [good[0], clash, good[1]],
        [],
        mapping_import._bulk,
        lambda row, exc: refused.append((row.storefront_sku, type(exc).__name__)),
    )
    assert [m.storefront_sku for m in new] == ["FREE-1", "FREE-2"] and changed == []
    assert refused == [("TAKEN", "IntegrityError")]
    assert sorted(SkuMapping.objects.values_list("storefront_sku", flat=True)) == ["FREE-1", "FREE-2", "TAKEN"]
