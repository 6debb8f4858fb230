"""REST API: filtering, pagination, actions, writes with re-queue, schema, fixed query counts."""

from __future__ import annotations

from types import SimpleNamespace
import pytest
from rest_framework.test import APIClient

from exceptions_app import kinds
from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.catalog.models import SkuMapping
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.models import OrderState
from integration_hub.reconciliation.models import Report
from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


@pytest.fixture
def api(make_user):
    def as_role(role):
        c = APIClient()
        c.force_authenticate(make_user(role))
        return c

    return as_role


def test_exceptions_filter_paginate_and_act(w, api):
    recs = f.sku_exceptions(w, f.items(60))
    f.sku_exceptions(w, w.items[:1], kind=Kind.UNKNOWN_SKU, strip=False)
    c = api("ops")
    body = c.get("/api/exceptions/").json()
    assert body["count"] == 61 and len(body["results"]) == 50 and body["next"]
    assert c.get("/api/exceptions/?kind=unknown_sku").json()["count"] == 1
    assert c.get(f"/api/exceptions/?q={recs[3].sku}").json()["count"] == 1
    assert c.get(f"/api/exceptions/?channel={w.channel.pk}&severity=warning").json()["count"] == 61
    r = c.post(f"/api/exceptions/{recs[0].pk}/ignore/", {"reason": ""}, format="json")
    assert r.status_code == 400
    r = c.post(f"/api/exceptions/{recs[0].pk}/ignore/", {"reason": "test SKU"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert c.get("/api/exceptions/").json()["count"] == 60
    assert c.get("/api/exceptions/?status=ignored").json()["count"] == 1
    assert c.get(f"/api/exceptions/{recs[0].pk}/").status_code == 200  # detail reachable whatever the status


def test_orders_read_and_actions(w, api, monkeypatch):
    from exceptions_app import triage

    orders = f.orders(w, 3, state=OrderState.HELD)
    f.orders(w, 2, state=OrderState.SENT, start=100)
    c = api("cx")
    body = c.get("/api/orders/?state=held").json()
    assert body["count"] == 3 and body["results"][0]["lines"][0]["item_sku"] == w.items[0].sku
    calls = []
    monkeypatch.setattr(
        triage,
        "order_flow",
        SimpleNamespace(
            **{
                "retry_send": lambda o, actor=None: calls.append(("retry", o.pk)),
                "cancel": lambda o, reason, actor=None: calls.append(("cancel", reason)),
            }
        ),
    )
    assert c.post(f"/api/orders/{orders[0].pk}/retry/").status_code == 202
    assert c.post(f"/api/orders/{orders[0].pk}/cancel/", {}, format="json").status_code == 400
    assert c.post(f"/api/orders/{orders[1].pk}/cancel/", {"reason": "duplicate"}, format="json").status_code == 200
    assert calls == [("retry", orders[0].pk), ("cancel", "duplicate")]
    fin = api("finance")
    assert fin.get("/api/orders/").status_code == 200
    assert fin.post(f"/api/orders/{orders[0].pk}/retry/").status_code == 403


def test_sku_mapping_crud_requeues_and_resolves(w, api):
    from exceptions_app import services as exc

    f.stock(w, w.items, 3)
    rec = exc.raise_exception(
        Kind.UNKNOWN_SKU, kinds.key(Kind.UNKNOWN_SKU, "web", "NEW-1"), "unknown", sku="NEW-1", channel=w.channel
    )
    c = api("ops")
    r = c.post(
        "/api/sku-mappings/", {"item": w.items[0].sku, "channel": "web", "storefront_sku": "NEW-1"}, format="json"
    )
    assert r.status_code == 201, r.content
    assert PendingPush.objects.filter(item=w.items[0], channel=w.channel).exists()
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED  # the confirmed push resolves it
    assert rec.status_changed_by.username == "user-ops"
    r = c.post(
        "/api/sku-mappings/", {"item": w.items[1].sku, "channel": "web", "storefront_sku": "NEW-1"}, format="json"
    )
    assert r.status_code == 400 and "already mapped" in r.content.decode()
    r = c.post("/api/sku-mappings/", {"item": "nope", "storefront_sku": "X"}, format="json")
    assert r.status_code == 400
    pk = SkuMapping.objects.get().pk
    assert c.patch(f"/api/sku-mappings/{pk}/", {"safety_buffer": 4}, format="json").status_code == 200
    assert c.delete(f"/api/sku-mappings/{pk}/").status_code == 403  # ops may not delete
    assert api("admin").delete(f"/api/sku-mappings/{pk}/?confirm=true").status_code == 204
    assert c.get("/api/sku-mappings/?channel__key=web").json()["count"] == 0


def test_channel_rules_and_stock_and_pushes(w, api):
    f.stock(w, w.items, 9)
    f.pushes(w, w.items[:2])
    c = api("admin")
    r = c.get("/api/channel-rules/").json()
    assert r["results"][0]["locations"] == ["wh1"] and r["results"][0]["channel"] == "web"
    r = c.patch(f"/api/channel-rules/{w.rule.pk}/", {"mode": "shared"}, format="json")
    assert r.status_code == 400 and "pool" in r.content.decode()
    assert c.get(f"/api/stock-levels/?item__sku={w.items[0].sku}").json()["count"] == 1
    assert c.get("/api/pending-pushes/?channel__key=web").json()["count"] == 2


def test_channel_rule_locations_edit_is_audited_and_segregated_needs_locations(w, api):
    from integration_hub.core.audit import history_for
    from integration_hub.core.models import Location

    Location.objects.create(code="wh2", name="Warehouse 2", connection=w.master, external_id="WH2")
    c = api("admin")
    r = c.patch(f"/api/channel-rules/{w.rule.pk}/", {"locations": ["wh1", "wh2"]}, format="json")
    assert r.status_code == 200, r.content
    entry = history_for(w.rule).get(after={"locations": ["wh1", "wh2"]})
    assert entry.before == {"locations": ["wh1"]} and entry.source == "api" and entry.actor.username == "user-admin"
    # the same rule as the console form: a segregated channel sells from at least one location
    r = c.patch(f"/api/channel-rules/{w.rule.pk}/", {"locations": []}, format="json")
    assert r.status_code == 400 and "at least one location" in r.json()["locations"][0]
    w.rule.refresh_from_db()
    assert sorted(w.rule.locations.values_list("code", flat=True)) == ["wh1", "wh2"]
    other = f.channel(w.storefront, "app", name="App", external_id="app-sc", warehouse=w.master)
    r = c.post("/api/channel-rules/", {"channel": other.key, "mode": "segregated"}, format="json")
    assert r.status_code == 400 and "locations" in r.json()
    r = c.post("/api/channel-rules/", {"channel": other.key, "mode": "segregated", "locations": ["wh2"]}, format="json")
    assert r.status_code == 201
    assert history_for(other.stock_rule).filter(after={"locations": ["wh2"]}, source="api").exists()


def test_shipping_map_duplicate_is_400_and_writes_revalidate_held_orders(w, api, monkeypatch):
    from integration_hub.orders import shipping_rules

    calls = []
    monkeypatch.setattr(shipping_rules, "revalidate_held", lambda sku=None, channel=None: calls.append(channel) or 0)
    c = api("admin")
    r = c.post(
        "/api/shipping-methods/",
        {"channel": "web", "storefront_method": "express", "warehouse_method": "NDD"},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert calls == [w.channel]
    r = c.post(
        "/api/shipping-methods/",
        {"channel": "web", "storefront_method": "express", "warehouse_method": "X"},
        format="json",
    )
    assert r.status_code == 400 and "already mapped" in r.json()["storefront_method"][0]
    pk = c.post(
        "/api/shipping-methods/", {"storefront_method": "express", "warehouse_method": "STD"}, format="json"
    ).json()["id"]
    assert calls == [w.channel, None]  # a map for every channel: every channel's held orders
    r = c.patch(f"/api/shipping-methods/{pk}/", {"channel": "web"}, format="json")
    assert r.status_code == 400 and "already mapped" in r.content.decode()
    r = c.patch(f"/api/shipping-methods/{pk}/", {"carrier": "DPD"}, format="json")
    assert r.status_code == 200 and len(calls) == 3


def test_schedules_api_enable_interval_crontab_audited(w, api):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from integration_hub.core.audit import history_for

    task = PeriodicTask.objects.create(
        name="stock: sweep",
        task="inventory.sweep",
        interval=IntervalSchedule.objects.create(every=60, period="seconds"),
    )
    c = api("admin")
    body = c.get("/api/schedules/").json()
    first = body["results"][0]
    assert first.pop("runs") == "every 60 seconds" and first.pop("next_run_at")  # in words, and when beat sends it next
    assert body["count"] == 1 and first == {
        "id": task.pk,
        "name": "stock: sweep",
        "task": "inventory.sweep",
        "description": "",
        "enabled": True,
        "every": 60,
        "period": "seconds",
        "cron": None,
        "queue": None,
        "last_run_at": None,
        "total_run_count": 0,
    }
    r = c.patch(f"/api/schedules/{task.pk}/", {"enabled": False}, format="json")
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["every"] == 60
    r = c.patch(f"/api/schedules/{task.pk}/", {"every": 5}, format="json")  # keeps the period
    assert r.status_code == 200 and (r.json()["every"], r.json()["period"]) == (5, "seconds")
    r = c.patch(f"/api/schedules/{task.pk}/", {"cron": "30 5 * * 1-5"}, format="json")
    assert r.status_code == 200 and r.json()["cron"] == "30 5 * * 1-5" and r.json()["every"] is None
    # the console's validation: a crontab beat cannot run is refused, on the field, and nothing changes
    r = c.patch(f"/api/schedules/{task.pk}/", {"cron": "61 5 * * *"}, format="json")
    assert r.status_code == 400 and "Not a valid crontab" in r.json()["cron"][0]
    task.refresh_from_db()
    assert task.crontab.minute == "30" and not task.enabled
    entries = list(history_for(task).filter(action="update").order_by("id"))
    assert [(e.before["enabled"], e.after["enabled"]) for e in entries][:1] == [(True, False)]
    assert [e.after["crontab"] for e in entries] == [None, None, "30 5 * * 1-5"]
    assert {(e.source, e.actor.username) for e in entries} == {("api", "user-admin")}
    # reading needs the view permission, writing the change permission (admins)
    assert api("ops").patch(f"/api/schedules/{task.pk}/", {"enabled": True}, format="json").status_code == 403
    assert api("finance").get("/api/schedules/").status_code == 403
    assert c.post("/api/schedules/", {"name": "x"}, format="json").status_code == 405
    assert c.delete(f"/api/schedules/{task.pk}/").status_code == 405


@pytest.fixture
def eager_tasks():
    """Celery runs a task in-process as soon as it is sent (as a worker would, without one)."""
    from integration_hub.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def test_reports_api_run_rows_csv(w, api, eager_tasks, django_capture_on_commit_callbacks):
    f.stock(w, w.items, 2)
    f.mappings(w, w.items)
    c = api("finance")
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/api/reports/run/", {"kind": "stock_drift"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "running"  # answered before the work ran
    pk = r.json()["id"]
    body = c.get(f"/api/reports/{pk}/").json()
    assert body["status"] == "done" and body["row_count"] == 3
    rows = c.get(f"/api/reports/{pk}/rows/").json()
    assert rows["count"] == 3 and rows["results"][0]["master_quantity"] == 2
    resp = c.get(f"/api/reports/{pk}/csv/")
    assert resp.status_code == 200 and b"".join(resp.streaming_content).count(b"\n") == 4
    assert c.get("/api/reports/?kind=stock_drift").json()["count"] == 1
    assert Report.objects.get().requested_by.username == "user-finance"


def test_report_rows_page_uses_the_stored_row_count(w, api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integration_hub.reconciliation import services as recon

    f.stock(w, w.items, 2)
    f.mappings(w, w.items)
    report = recon.generate("stock_drift")
    assert report.row_count == 3
    c = api("finance")
    with CaptureQueriesContext(connection) as ctx:
        body = c.get(f"/api/reports/{report.pk}/rows/").json()
    assert body["count"] == 3 and len(body["results"]) == 3
    assert not [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    Report.objects.filter(pk=report.pk).update(row_count=120)  # the stored figure is what pages are cut from
    body = c.get(f"/api/reports/{report.pk}/rows/?page=2").json()
    assert body["count"] == 120 and body["previous"] and body["next"]


def test_schema_and_docs(w, api):
    c = api("ops")
    r = c.get("/api/schema/?format=json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in (
        "/api/exceptions/",
        "/api/orders/{id}/retry/",
        "/api/orders/{id}/cancel/",
        "/api/sku-mappings/",
        "/api/channel-rules/",
        "/api/stock-levels/",
        "/api/pending-pushes/",
        "/api/reports/{id}/csv/",
        "/api/schedules/",
        "/api/schedules/{id}/",
    ):
        assert p in paths
    assert c.get("/api/docs/").status_code == 200


def test_list_endpoints_run_fixed_queries(w, make_user):
    from django.test import Client
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from integration_hub.reconciliation import services as recon

    client = Client()
    client.force_login(make_user("admin"))

    def fill(n, off):
        its = f.items(n, prefix=f"6{off}")
        f.sku_exceptions(w, its)
        f.orders(w, n, start=off * 1000)
        f.stock(w, its, 1)
        f.pushes(w, its)
        f.grow_rule_tables(
            w, n, f"5{off}"
        )  # sku mappings, transforms, channel rules (+ locations/pools), shipping maps
        every = IntervalSchedule.objects.create(every=off, period="minutes")
        PeriodicTask.objects.bulk_create(
            [PeriodicTask(name=f"job {off}-{i}", task="x", interval=every) for i in range(n)]
        )
        for _ in range(2):
            recon.generate("stock_drift")

    urls = [
        "/api/exceptions/",
        "/api/orders/",
        "/api/sku-mappings/",
        "/api/transforms/",
        "/api/channel-rules/",
        "/api/shipping-methods/",
        "/api/stock-levels/",
        "/api/pending-pushes/",
        "/api/reports/",
        "/api/schedules/",
    ]
    fill(3, 1)
    small = {u: f.count_queries(client, u, HTTP_ACCEPT="application/json") for u in urls}
    counts = {u: client.get(u, HTTP_ACCEPT="application/json").json()["count"] for u in urls}
    fill(30, 2)
    grown = {u: client.get(u, HTTP_ACCEPT="application/json").json()["count"] for u in urls}
    assert all(grown[u] > counts[u] for u in urls), (counts, grown)  # every table grew between the two measurements
    big = {u: f.count_queries(client, u, HTTP_ACCEPT="application/json") for u in urls}
    assert small == big


def test_map_sku_action_suggested_chosen_and_bulk(w, api):
    recs = f.sku_exceptions(w, f.items(6))
    c = api("ops")
    r = c.post(f"/api/exceptions/{recs[0].pk}/map-sku/", {}, format="json")
    assert r.status_code == 200 and r.json()["acknowledged"] == 1 and r.json()["mappings_created"] == 1
    r = c.post(f"/api/exceptions/{recs[1].pk}/map-sku/", {"item": "nope"}, format="json")
    assert r.status_code == 400 and "no master item" in r.content.decode()
    r = c.post(f"/api/exceptions/{recs[1].pk}/map-sku/", {"bulk": True}, format="json")
    # the five others, and the first one again (still active until its push confirms)
    assert r.status_code == 200 and r.json()["acknowledged"] == 6
    assert ExceptionRecord.objects.filter(status=Status.ACKNOWLEDGED).count() == 6
    assert api("cx").post(f"/api/exceptions/{recs[1].pk}/map-sku/", {}, format="json").status_code == 403


def test_openapi_schema_validates_without_warnings(db, tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/exceptions/{id}/map-sku/" in out.read_text()
