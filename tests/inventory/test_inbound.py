"""Inbound stock: apply_stock_changes, the signed webhook view, the cursor poll."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.base import Page, StockChange
from exceptions_app.models import ExceptionRecord
from connectors.signatures import HEADER, sign
from integration_hub.inventory.models import PendingPush, StockLevel
from integration_hub.inventory.services import apply_stock_changes, poll_master


@pytest.fixture
def topo(world):
    world.channel("web", locations=["dc1"])
    world.channel("outlet", locations=["shop"])
    world.location("dc1"), world.location("shop")  # external ids DC1, SHOP
    world.item("A")
    world.item("B")
    world.item("kit", bundle_of={"A": 2})
    return world


def level(world, sku, loc, state="available"):
    return (
        StockLevel.objects.filter(item=world.items[sku], location=world.locations[loc], state=state)
        .values_list("quantity", flat=True)
        .first()
    )


def test_apply_updates_levels_and_enqueues_in_bulk(topo, django_assert_max_num_queries):
    changes = [StockChange("A", "DC1", 5), StockChange("B", "SHOP", 7), StockChange("A", "DC1", 9, state="damaged")]
    with django_assert_max_num_queries(12):
        res = apply_stock_changes(topo.master, changes)
    assert (res.received, res.applied, res.rejected) == (3, 3, 0)
    assert level(topo, "A", "dc1") == 5 and level(topo, "B", "shop") == 7 and level(topo, "A", "dc1", "damaged") == 9
    got = {(p.channel.key, p.item.sku) for p in PendingPush.objects.select_related("channel", "item")}
    assert got == {("web", "A"), ("web", "kit"), ("outlet", "B")}  # damaged does not move ATS; outlet has no A change


def test_unchanged_quantity_enqueues_nothing(topo):
    apply_stock_changes(topo.master, [StockChange("A", "DC1", 5)])
    PendingPush.objects.all().delete()
    res = apply_stock_changes(topo.master, [StockChange("A", "DC1", 5)])
    assert res.unchanged == 1 and res.enqueued == 0 and not PendingPush.objects.exists()


def test_older_changes_are_ignored(topo):
    now = timezone.now()
    apply_stock_changes(topo.master, [StockChange("A", "DC1", 5, changed_at=now)])
    res = apply_stock_changes(topo.master, [StockChange("A", "DC1", 1, changed_at=now - timedelta(minutes=1))])
    assert res.stale == 1 and level(topo, "A", "dc1") == 5
    res = apply_stock_changes(topo.master, [StockChange("A", "DC1", 2, changed_at=now + timedelta(seconds=1))])
    assert res.applied == 1 and level(topo, "A", "dc1") == 2
    # within one batch the newest wins, whatever the order
    apply_stock_changes(
        topo.master,
        [
            StockChange("B", "DC1", 8, changed_at=now + timedelta(seconds=5)),
            StockChange("B", "DC1", 3, changed_at=now + timedelta(seconds=2)),
        ],
    )
    assert level(topo, "B", "dc1") == 8


def test_bad_rows_become_exceptions_and_lose_nothing_else(topo):
    changes = [
        StockChange("A", "DC1", 4),
        StockChange(
            "A", "SHOP", -3, state="reserved", ref="chg-neg"
        ),  # a negative *available* figure is a fact (below)
        {"sku": "B", "location": "DC1", "quantity": "lots", "ref": "chg-str"},
        {"sku": "B", "location": "SHOP", "quantity": 2.5},
        StockChange("kit", "DC1", 6, state="sold"),
        StockChange("NOPE", "DC1", 1),
        StockChange("NOPE", "SHOP", 1),
        StockChange("B", "MARS", 1),
        StockChange("B", "SHOP", "12"),
        {"location": "DC1", "quantity": 1},
    ]
    res = apply_stock_changes(topo.master, changes)
    assert res.received == 10 and res.applied == 2 and res.rejected == 8
    assert level(topo, "A", "dc1") == 4 and level(topo, "B", "shop") == 12
    assert level(topo, "A", "shop") is None
    keys = set(ExceptionRecord.objects.values_list("dedupe_key", flat=True))
    assert {
        "bad_payload:wair:stock:A@SHOP",
        "bad_payload:wair:stock:B@DC1",
        "bad_payload:wair:stock:B@SHOP",
        "bad_payload:wair:stock:kit@DC1",
        "unknown_sku:wair:NOPE",
        "bad_payload:wair:stock-location:MARS",
    } <= keys
    nope = ExceptionRecord.objects.get(dedupe_key="unknown_sku:wair:NOPE")
    assert nope.kind == "unknown_sku" and nope.context["changes"] == 2 and nope.connection == topo.master
    neg = ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:A@SHOP")
    assert "negative" in neg.message and neg.context["change"]["quantity"] == -3 and neg.context["ref"] == "chg-neg"
    assert "sold" in ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:kit@DC1").message
    # the same bad row again (new change id) merges into the same record
    apply_stock_changes(topo.master, [StockChange("A", "SHOP", -3, state="reserved", ref="chg-neg-2")])
    assert ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:A@SHOP").count == 2


def test_rows_the_connector_rejected_are_filed_like_the_validators(topo):
    """A connector's ParsedBatch: its ``rejected`` rows are counted and filed by the same code as the rows the
    validator rejects (one ``bad_payload`` per sku@location, the ref when the row names no pair)."""
    from connectors.parsing import ParsedBatch, RejectedRow

    batch = ParsedBatch(
        [StockChange("A", "DC1", 4)],
        [
            RejectedRow(
                0, "r-1", "quantity", "quantity 'lots' is not a whole number", raw={"sku": "B", "location": "DC1"}
            ),
            RejectedRow(1, "r-2", "row", "not a stock row", raw=["garbage"]),
        ],
    )
    res = apply_stock_changes(topo.master, batch)
    assert res.received == 3 and res.applied == 1 and res.rejected == 2 and level(topo, "A", "dc1") == 4
    rec = ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:B@DC1")
    assert (
        rec.title == "Rejected stock change from wair: quantity 'lots' is not a whole number"
        and rec.context["ref"] == "r-1"
    )
    assert ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:r-2").message == "not a stock row (×1)"


def test_unknown_sku_clears_when_item_appears(topo):
    from integration_hub.catalog.models import Item

    apply_stock_changes(topo.master, [StockChange("NEW", "DC1", 1)])
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:wair:NEW").status == "open"
    Item.objects.create(sku="NEW")
    apply_stock_changes(topo.master, [StockChange("NEW", "DC1", 1)])
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:wair:NEW").status == "resolved"


class FakeMaster:
    """Minimal master: HMAC webhook verification as the base Connector does, a paged change feed."""

    def __init__(self, connection, pages=()):
        self.connection, self.pages = connection, list(pages)
        self.cursors_seen = []

    def verify_webhook(self, body, headers):
        from connectors.signatures import verify_hmac

        return verify_hmac(self.connection.get_webhook_secret(), body, headers, connection=self.connection)

    def parse_stock_webhook(self, payload):
        return [
            StockChange(r["sku"], r["location"], r["quantity"], r.get("state", "available")) for r in payload["changes"]
        ]

    def stock_changes(self, cursor):
        self.cursors_seen.append(cursor)
        return self.pages.pop(0)


@pytest.fixture
def fake_master(topo, fake_connectors):
    return fake_connectors.install(FakeMaster(topo.master))


def post(client, body: bytes, secret="wair-hook-secret", name="wair"):
    return client.post(
        f"/hooks/stock/{name}/", data=body, content_type="application/json", headers={HEADER: sign(secret, body)}
    )


def test_webhook_view(topo, fake_master, client):
    body = json.dumps(
        {
            "changes": [
                {"sku": "A", "location": "DC1", "quantity": 11},
                {"sku": "A", "location": "DC1", "quantity": "lots"},
            ]
        }
    ).encode()
    r = post(client, body)
    assert r.status_code == 200, r.content
    assert r.json()["applied"] == 1 and r.json()["rejected"] == 1
    assert level(topo, "A", "dc1") == 11
    assert post(client, body, secret="wrong").status_code == 401
    assert client.post("/hooks/stock/wair/", data=body, content_type="application/json").status_code == 401
    assert post(client, b"{not json").status_code == 400
    assert ExceptionRecord.objects.filter(dedupe_key__startswith="bad_payload:wair:stock-webhook").exists()
    assert post(client, json.dumps({"no": "changes"}).encode()).status_code == 400
    assert post(client, body, name="nosuch").status_code == 404
    assert client.get("/hooks/stock/wair/").status_code == 405


def test_poll_advances_cursor_with_each_page(topo, fake_master):
    from integration_hub.core.models import SyncCursor

    fake_master.pages = [
        Page([StockChange("A", "DC1", 3)], "c1", has_more=True),
        Page([StockChange("B", "DC1", 4), StockChange("A", "DC1", -2, state="reserved")], "c2", has_more=False),
    ]
    res = poll_master(topo.master)
    assert fake_master.cursors_seen == ["", "c1"]
    assert res.pages == 2 and res.changes == 3 and res.applied.applied == 2 and res.applied.rejected == 1
    assert SyncCursor.objects.get(connection=topo.master, stream="stock").value == "c2"
    fake_master.pages = [Page([], "c2")]
    poll_master(topo.master)
    assert fake_master.cursors_seen[-1] == "c2"


def test_poll_failure_keeps_cursor(topo, fake_master):
    from connectors import errors
    from integration_hub.core.models import SyncCursor
    from integration_hub.inventory.tasks import poll_stock

    fake_master.pages = [Page([StockChange("A", "DC1", 3)], "c1", has_more=True)]

    def boom(cursor):
        if cursor == "c1":
            raise errors.TimeoutError_("master timed out")
        return fake_master.pages.pop(0)

    fake_master.stock_changes = boom
    out = poll_stock(topo.master.pk)
    assert "timed out" in out["error"]
    assert SyncCursor.objects.get(connection=topo.master, stream="stock").value == "c1"  # first page kept
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:wair:stock_changes")
    fake_master.stock_changes = lambda cursor: Page([], "c1")
    poll_stock(topo.master.pk)
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_thousand_master_changes_to_one_sku_leave_one_push_row(topo):
    changes = [StockChange("A", "DC1", n % 37) for n in range(1000)]
    for start in range(0, 1000, 100):  # ten webhook batches
        apply_stock_changes(topo.master, changes[start : start + 100])
    rows = PendingPush.objects.filter(item=topo.items["A"])
    assert rows.count() == 1 and rows[0].changes == 1000
    assert level(topo, "A", "dc1") == 999 % 37  # the last change wins


def test_webhook_is_csrf_exempt(topo, fake_master):
    from django.test import Client

    body = json.dumps({"changes": [{"sku": "B", "location": "DC1", "quantity": 2}]}).encode()
    r = Client(enforce_csrf_checks=True).post(
        "/hooks/stock/wair/",
        data=body,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", body)},
    )
    assert r.status_code == 200 and level(topo, "B", "dc1") == 2


def test_apply_runs_a_fixed_number_of_queries(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integration_hub.catalog.models import Item, SkuMapping

    world.channel("web", locations=["dc1", "dc2"])
    world.location("dc1"), world.location("dc2")
    Item.objects.bulk_create([Item(sku=f"Q{n:04d}") for n in range(600)])
    SkuMapping.objects.bulk_create([SkuMapping(item=i, storefront_sku=f"SF-{i.sku}") for i in Item.objects.all()])
    counts = []
    for start, n in ((0, 3), (3, 300)):  # two locations each time; fresh SKUs so every row is new
        changes = [StockChange(f"Q{i:04d}", loc, 5) for i in range(start, start + n) for loc in ("DC1", "DC2")]
        with CaptureQueriesContext(connection) as ctx:
            res = apply_stock_changes(world.master, changes)
        assert res.applied == 2 * n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def _hold_poll_lock(name, held, release):
    from integration_hub.core.locks import exclusive

    with exclusive(name) as got:
        held.put(got)
        release.wait(20)


def test_one_poller_per_master_across_worker_processes(topo, fake_master, settings, tmp_path):
    """Embedded mode (no Redis, per-process cache): a worker process polling a master makes the poll task
    in another process skip it; once it is done (or dead) the next poll runs."""
    import multiprocessing

    from integration_hub.inventory.tasks import poll_stock

    settings.REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    fake_master.pages = [Page([StockChange("A", "DC1", 3)], "c1"), Page([StockChange("A", "DC1", 4)], "c2")]
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Queue(), ctx.Event()
    other = ctx.Process(target=_hold_poll_lock, args=(f"stock-poll-{topo.master.pk}", held, release))
    other.start()
    try:
        assert held.get(timeout=20) is True  # the other worker process is polling this master
        assert poll_stock(topo.master.pk) == {"skipped": "already polling"}
        assert len(fake_master.pages) == 2  # nothing fetched twice
    finally:
        release.set()
        other.join(20)
    assert poll_stock(topo.master.pk).get("changes") == 1


def test_negative_available_figure_is_a_fact_zero_for_ats_one_record_per_pair(topo):
    """Issue 20, item 6 (uk-web 00057201 kept selling 26 while the master had -7 at DC1): the real figure is
    kept, ATS counts it as 0 (not as -7 against the other shelves), one record names SKU and location."""
    from integration_hub.inventory import ats

    topo.channel("both", locations=["dc1", "shop"])
    apply_stock_changes(topo.master, [StockChange("A", "DC1", 26), StockChange("A", "SHOP", 5)])
    res = apply_stock_changes(topo.master, [StockChange("A", "DC1", -7, ref="oversold")])
    assert res.applied == 1 and res.rejected == 0 and res.enqueued >= 1
    assert level(topo, "A", "dc1") == -7  # the real figure, for drift and reports
    got = {
        pair: a.quantity
        for pair, a in ats.for_pairs([(c.pk, topo.items["A"].pk) for c in topo.channels.values()]).items()
    }
    a_id = topo.items["A"].pk
    assert got[(topo.channels["web"].pk, a_id)] == 0  # nothing to sell at DC1 (it was 26)
    assert got[(topo.channels["both"].pk, a_id)] == 5  # SHOP's 5 still sell: -7 is not taken from them
    for (channel_id, item_id), qty in got.items():
        assert qty == ats.naive_for_pair(channel_id, item_id)
    rec = ExceptionRecord.objects.get(dedupe_key="stock_drift:wair:negative:A@DC1")
    assert rec.kind == "stock_drift" and rec.status == "open" and "-7" in rec.title and rec.context["location"] == "DC1"
    assert not ExceptionRecord.objects.filter(kind="bad_payload").exists()
    apply_stock_changes(topo.master, [StockChange("A", "DC1", 3)])  # counted again: the record clears
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_two_different_bad_rows_on_one_pair_keep_both_messages(topo):
    """Issue 20, item 9: one record per sku@location, but each distinct problem listed with its count —
    in one batch and across batches."""
    apply_stock_changes(
        topo.master, [{"sku": "B", "location": "DC1", "quantity": "lots"}, StockChange("B", "DC1", 1, state="sold")]
    )
    apply_stock_changes(topo.master, [{"sku": "B", "location": "DC1", "quantity": "lots"}])
    rec = ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:B@DC1")
    by_message = {e["message"]: e["count"] for e in rec.context["problems"]}
    assert len(by_message) == 2, by_message
    assert any("lots" in m and n == 2 for m, n in by_message.items())
    assert any("sold" in m and n == 1 for m, n in by_message.items())
    assert "sold" in rec.message and "lots" in rec.message
