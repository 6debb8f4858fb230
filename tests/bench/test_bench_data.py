"""The benches' own data builders write raw SQL for speed; a schema change (a new NOT NULL column) must break a test,
not the next bench run (it broke stock_sync and memory once: the item master's columns). Tiny sizes, the test
database, no timing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import memory  # noqa: E402
import stock_sync  # noqa: E402

pytestmark = pytest.mark.django_db


def test_stock_sync_builds_a_catalogue_the_ats_statement_reads():
    from integration_hub.inventory import ats, on_hand

    master, shop, channels, locs, ids = stock_sync.build_catalogue(300, 4)
    assert len(ids) == 300 and len(channels) == 4
    rows = ats.compute([c.pk for c in channels])
    assert len(rows) == 300 * 4
    assert on_hand.verify() == []  # the bench's multi-row stock insert went through the on-hand triggers
    loop = stock_sync.PreloadedLoop()  # the bench's per-row reference agrees with the statement
    assert all(loop.ats(a.channel_id, a.item_id) == a.quantity for a in rows[:: len(rows) // 40])


def test_memory_builds_its_items_and_report():
    from integration_hub.catalog.models import Item
    from integration_hub.reconciliation.models import ReportRow

    master, locs, n_items = memory.build_items(400)
    assert Item.objects.filter(sku__startswith="M").count() == n_items == 100
    memory.build_report(50)
    assert ReportRow.objects.count() >= 50
