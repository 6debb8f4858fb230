"""Inbound from the WAIR sandbox over real HTTP: poll since cursor, snapshot resync, signed webhook."""

from __future__ import annotations

import json

import pytest

from exceptions_app.models import ExceptionRecord
from connectors.signatures import HEADER, sign
from integration_hub.inventory.models import PendingPush, StockLevel
from integration_hub.inventory.services import poll_master, resync_master

from tests.support.sandbox import control


@pytest.fixture
def wair(world, sandbox):
    import connectors.registry as registry

    registry.clear_cache()
    m = world.master
    m.base_url = f"{sandbox.url}/wair"
    m.options = {"page_size": 3}  # force paging
    m.set_secret("wair-demo-key")
    m.set_webhook_secret("wair-hook-secret")  # a URL change clears stored secrets unless the same save sets them
    m.save()
    world.channel("web", locations=["dc1", "dc2"])
    world.location("dc1"), world.location("dc2")  # external ids DC1, DC2
    for sku in ("A", "B", "C"):
        world.item(sku)
    world.wair = lambda action, payload=None: control(sandbox, "wair", action, payload)
    world.wair("seed_locations", {"locations": [{"id": "DC1"}, {"id": "DC2"}, {"id": "DC9"}]})
    yield world
    registry.clear_cache()


def qty(world, sku, loc, state="available"):
    return (
        StockLevel.objects.filter(item=world.items[sku], location=world.locations[loc], state=state)
        .values_list("quantity", flat=True)
        .first()
    )


def test_poll_pages_through_the_feed_and_resumes_from_the_cursor(wair):
    wair.wair(
        "set_stock",
        {
            "rows": [{"sku": s, "location": "DC1", "quantity": n} for n, s in enumerate("ABC", 1)]
            + [
                {"sku": "A", "location": "DC2", "state": "inTransit", "quantity": 9},
                {"sku": "A", "location": "DC9", "quantity": 1},
                {"sku": "ZZZ", "location": "DC1", "quantity": 1},
            ]
        },
    )
    res = poll_master(wair.master)
    assert res.pages == 2 and res.changes == 6 and res.applied.applied == 4 and res.applied.rejected == 2
    assert (qty(wair, "A", "dc1"), qty(wair, "C", "dc1"), qty(wair, "A", "dc2", "in_transit")) == (1, 3, 9)
    assert ExceptionRecord.objects.filter(dedupe_key="bad_payload:wair:stock-location:DC9").exists()
    assert ExceptionRecord.objects.filter(dedupe_key="unknown_sku:wair:ZZZ").exists()
    assert PendingPush.objects.count() == 3  # in-transit moves no ATS
    wair.wair("set_stock", {"rows": [{"sku": "B", "location": "DC2", "quantity": 4}]})
    res = poll_master(wair.master)
    assert res.changes == 1 and qty(wair, "B", "dc2") == 4  # only what is new since the cursor


def test_snapshot_resync_catches_what_the_feed_never_carried(wair):
    wair.wair(
        "seed_stock",
        {
            "rows": [
                {"sku": "A", "location": "DC1", "quantity": 7},
                {"sku": "B", "location": "DC2", "state": "damaged", "quantity": 2},
            ]
        },
    )  # no feed entries
    assert poll_master(wair.master).changes == 0
    res = resync_master(wair.master)
    assert res.applied == 2 and qty(wair, "A", "dc1") == 7 and qty(wair, "B", "dc2", "damaged") == 2
    assert resync_master(wair.master).unchanged == 2  # idempotent


def test_signed_webhook_from_the_sandbox_format(wair, client):
    body = json.dumps(
        {
            "type": "stock.changed",
            "batchId": "b1",
            "changes": [
                {
                    "id": 1,
                    "skuId": "A",
                    "locationId": "DC1",
                    "state": "available",
                    "quantity": 5,
                    "changedAt": "2026-01-01T10:00:00Z",
                },
                {
                    "id": 2,
                    "skuId": "B",
                    "locationId": "DC1",
                    "state": "available",
                    "quantity": "lots",
                    "changedAt": "2026-01-01T10:00:00Z",
                },
            ],
        }
    ).encode()
    r = client.post(
        "/hooks/stock/wair/",
        data=body,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", body)},
    )
    assert r.status_code == 200 and r.json()["applied"] == 1 and r.json()["rejected"] == 1
    older = json.dumps(
        {
            "type": "stock.changed",
            "changes": [
                {"id": 3, "skuId": "A", "locationId": "DC1", "quantity": 1, "changedAt": "2025-12-31T10:00:00Z"}
            ],
        }
    ).encode()
    r = client.post(
        "/hooks/stock/wair/",
        data=older,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", older)},
    )
    assert r.json()["stale"] == 1 and qty(wair, "A", "dc1") == 5
    wrong_type = json.dumps({"type": "dispatch.confirmed", "changes": []}).encode()
    r = client.post(
        "/hooks/stock/wair/",
        data=wrong_type,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", wrong_type)},
    )
    assert r.status_code == 400


def test_resync_task_records_a_master_that_is_down(wair):
    from integration_hub.inventory.tasks import resync_masters

    wair.wair("set_api_key", {"key": "rotated"})  # our key is refused now: 401
    out = resync_masters()
    assert out[0]["connection"] == "wair" and "error" in out[0]
    rec = ExceptionRecord.objects.get(
        dedupe_key="auth_failure:wair"
    )  # refused credentials: one record on the connection
    wair.wair("set_api_key", {"key": "wair-demo-key"})
    resync_masters()
    rec.refresh_from_db()
    assert rec.status == "resolved"
