"""Dashboard, rule editing with audit history, CSV import of mappings, beat schedules."""

from __future__ import annotations

from types import SimpleNamespace
import re

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from exceptions_app import kinds
from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.catalog.models import SkuMapping
from integration_hub.catalog import mapping_import
from integration_hub.core.audit import history_for
from integration_hub.core.models import AuditEntry
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.models import OrderState

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _fill(w, n, offset):
    its = f.items(n, prefix=f"7{offset}")
    f.pushes(w, its)
    f.sku_exceptions(w, its)
    f.orders(w, n, state=OrderState.HELD, start=offset * 1000)


def test_dashboard_figures_and_fixed_queries(w, role_client):
    client = role_client("ops")
    _fill(w, 5, 1)
    small = f.count_queries(client, "/dashboard/")
    _fill(w, 45, 2)
    big = f.count_queries(client, "/dashboard/")
    assert small == big and big <= 12
    html = client.get("/dashboard/").content.decode()
    assert "Pending stock pushes" in html and ">50<" in html  # 50 pushes, 50 exceptions, 50 orders
    assert "SKU mismatch" in html and "held" in html and "Oldest stuck item" in html
    assert "wair" in html and "never" in html  # connections without a successful sync yet
    assert "no heartbeat yet" in html
    from integration_hub.core.models import Heartbeat

    Heartbeat.objects.create(name="worker", at=f.ago(minutes=10))
    html = client.get("/dashboard/").content.decode()
    assert 'class="value bad" style="font-size:1.1rem">worker: 10' in html


def test_dashboard_hides_sections_a_role_may_not_see(w, role_client):
    _fill(w, 3, 1)
    html = role_client("cx").get("/dashboard/").content.decode()
    assert "Orders by state" in html and "Open exceptions by kind" in html
    assert "Pending stock pushes" not in html and "Connections" not in html


def test_edit_mapping_records_who_and_before_after_and_requeues(w, role_client):
    client = role_client("ops")
    f.stock(w, w.items, 4)
    m = f.mappings(w, w.items[:1])[0]
    data = {
        "item_sku": w.items[1].sku,
        "channel": w.channel.pk,
        "storefront_sku": m.storefront_sku,
        "active": "on",
        "safety_buffer": "2",
    }
    r = client.post(f"/rules/sku-mappings/{m.pk}/", data)  # moves stock: the impact preview comes first
    assert r.status_code == 200 and "Confirm and save" in r.content.decode()
    token = re.search(r'name="confirm" value="([0-9a-f]+)"', r.content.decode()).group(1)
    r = client.post(f"/rules/sku-mappings/{m.pk}/", {**data, "confirm": token})
    assert r.status_code == 302, r.content[:2000]
    m.refresh_from_db()
    assert m.item == w.items[1] and m.safety_buffer == 2
    entry = history_for(m).first()
    assert entry.actor.username == "user-ops" and entry.source == "console"
    assert entry.before["item_id"] == w.items[0].pk and entry.after["item_id"] == w.items[1].pk
    # the storefront SKU now sells item 1: its ATS is queued (item 0 is no longer mapped on the channel)
    assert set(PendingPush.objects.values_list("item_id", flat=True)) == {w.items[1].pk}
    html = client.get(f"/rules/sku-mappings/{m.pk}/").content.decode()
    assert "Audit history" in html and "user-ops" in html and "safety_buffer" in html


def test_mapping_form_rejects_unknown_item_and_duplicates(w, role_client):
    client = role_client("ops")
    m = f.mappings(w, w.items[:1])[0]
    r = client.post("/rules/sku-mappings/new/", {"item_sku": "NOPE", "storefront_sku": "A1", "active": "on"})
    assert r.status_code == 400 and "No master item" in r.content.decode()
    r = client.post(
        "/rules/sku-mappings/new/",
        {"item_sku": w.items[1].sku, "channel": w.channel.pk, "storefront_sku": m.storefront_sku, "active": "on"},
    )
    assert r.status_code == 400 and "already mapped" in r.content.decode()
    assert SkuMapping.objects.count() == 1


def test_channel_rule_edit_audits_locations(w, role_client):
    from integration_hub.core.models import Location

    client = role_client("admin")
    loc2 = Location.objects.create(code="wh2", name="Warehouse 2", connection=w.master, external_id="WH2")
    r = client.post(
        f"/rules/channel-rules/{w.rule.pk}/",
        {"channel": w.channel.pk, "mode": "segregated", "locations": [w.location.pk, loc2.pk], "safety_buffer": "3"},
    )
    assert r.status_code == 302, r.content[:3000]
    entries = list(history_for(w.rule))
    assert any(e.after == {"locations": ["wh1", "wh2"]} for e in entries)
    assert any(e.before and e.before.get("safety_buffer") == 0 and e.after.get("safety_buffer") == 3 for e in entries)
    r = client.post(
        f"/rules/channel-rules/{w.rule.pk}/", {"channel": w.channel.pk, "mode": "shared", "safety_buffer": "3"}
    )
    assert r.status_code == 400 and "needs a stock pool" in r.content.decode()


RULE_SLUGS = ("sku-mappings", "channel-rules", "transforms", "shipping-methods")


def test_rule_list_pages_run_fixed_queries(w, role_client):
    from integration_hub.catalog.models import IdentifierTransform
    from integration_hub.inventory.models import ChannelStockRule
    from integration_hub.orders.models import ShippingMethodMap

    client = role_client("admin")
    f.grow_rule_tables(w, 3, "81")
    small = {slug: f.count_queries(client, f"/rules/{slug}/") for slug in RULE_SLUGS}
    sizes = [m.objects.count() for m in (SkuMapping, IdentifierTransform, ChannelStockRule, ShippingMethodMap)]
    f.grow_rule_tables(w, 30, "82")
    assert [m.objects.count() for m in (SkuMapping, IdentifierTransform, ChannelStockRule, ShippingMethodMap)] == [
        s + 30 for s in sizes
    ]
    big = {slug: f.count_queries(client, f"/rules/{slug}/") for slug in RULE_SLUGS}
    assert small == big


def test_rule_list_shows_recent_changes_including_deletions(w, role_client):
    client = role_client("admin")
    m = f.mappings(w, w.items[:1])[0]
    r = client.post(
        f"/rules/sku-mappings/{m.pk}/",
        {
            "item_sku": w.items[0].sku,
            "channel": w.channel.pk,
            "storefront_sku": m.storefront_sku,
            "active": "on",
            "safety_buffer": "4",
        },
    )
    assert r.status_code == 302
    label = str(m)
    preview = client.post(f"/rules/sku-mappings/{m.pk}/delete/")  # the impact preview first
    assert preview.status_code == 200 and SkuMapping.objects.exists()
    assert (
        client.post(f"/rules/sku-mappings/{m.pk}/delete/", {"confirm": preview.context["confirm"]}).status_code == 302
    )
    assert not SkuMapping.objects.exists()
    html = client.get("/rules/sku-mappings/").content.decode()
    panel = html[html.index('id="recent-changes"') :]
    assert "Recent changes" in panel and label.replace(">", "&gt;") in panel
    assert panel.index(">delete<") < panel.index(">update<")  # newest first; the deleted row is still listed
    assert "user-admin" in panel and "safety buffer" in panel  # field names in words
    # each table shows its own changes only
    other = client.get("/rules/transforms/").content.decode()
    assert label.replace(">", "&gt;") not in other and "No changes recorded yet." in other


def test_schedule_enable_and_interval_with_history(w, role_client):
    client = role_client("admin")
    task = PeriodicTask.objects.create(
        name="stock: sweep",
        task="inventory.sweep",
        interval=IntervalSchedule.objects.create(every=60, period="seconds"),
    )
    r = client.post(f"/schedules/{task.pk}/", {"every": "5", "period": "minutes"})  # enabled unticked → disabled
    assert r.status_code == 302
    task.refresh_from_db()
    assert not task.enabled and task.interval.every == 5 and task.interval.period == "minutes"
    e = history_for(task).get(action="update")
    assert e.before["enabled"] is True and e.after["enabled"] is False and e.actor.username == "user-admin"
    r = client.post(f"/schedules/{task.pk}/", {"enabled": "on", "cron": "30 5 * * *"})
    task.refresh_from_db()
    assert task.enabled and task.crontab.hour == "5" and task.interval is None
    html = client.get(f"/schedules/{task.pk}/").content.decode()
    assert "Audit history" in html and "user-admin" in html
    r = client.post(f"/schedules/{task.pk}/", {"enabled": "on", "cron": "30 5 *"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "cron,why",
    [
        ("61 * * * *", "minute"),
        ("0 25 * * *", "hour"),
        ("0 5 32 * *", "day of month"),
        ("0 5 * 13 *", "month of year"),
        ("0 5 * * funday", "day of week"),
        ("*/0 * * * *", "minute"),
    ],
)
def test_schedule_invalid_crontab_is_refused_on_the_field(w, role_client, cron, why):
    client = role_client("admin")
    task = PeriodicTask.objects.create(
        name="stock: sweep",
        task="inventory.sweep",
        interval=IntervalSchedule.objects.create(every=60, period="seconds"),
    )
    r = client.post(f"/schedules/{task.pk}/", {"enabled": "on", "cron": cron})
    assert r.status_code == 400
    form = r.context["form"]
    assert (
        list(form.errors) == ["cron"]
        and "Not a valid crontab" in form.errors["cron"][0]
        and why in form.errors["cron"][0]
    )
    task.refresh_from_db()
    assert task.crontab is None and task.interval.every == 60
    assert not history_for(task).filter(action="update").exists()


def test_schedule_changes_are_audited_whatever_the_path(w, role_client):
    """setup_beat --reset, a plain ORM save (what the Django admin's change form does) and the admin's bulk
    enable/disable actions all leave before/after history."""
    from django.core.management import call_command

    call_command("setup_beat")
    task = PeriodicTask.objects.get(name="core: worker heartbeat")
    created = history_for(task).get()
    assert (
        created.action == "create"
        and created.source == "setup_beat"
        and created.after["interval"] == "every 60 seconds"
    )
    task.interval = IntervalSchedule.objects.create(every=5, period="minutes")
    task.save()
    call_command("setup_beat", reset=True)
    reset = history_for(task).filter(source="setup_beat", action="update").get()
    assert reset.before["interval"] == "every 5 minutes" and reset.after["interval"] == "every 60 seconds"
    call_command("setup_beat", reset=True)  # nothing to change: no new entry
    assert history_for(task).filter(source="setup_beat", action="update").count() == 1
    # beat's own bookkeeping (last run, run count) is not a change anyone made
    task.refresh_from_db()
    task.total_run_count += 1
    task.save()
    assert history_for(task).count() == 3

    client = role_client("admin")
    r = client.post(
        "/admin/django_celery_beat/periodictask/", {"action": "disable_tasks", "_selected_action": [task.pk]}
    )
    assert r.status_code == 302
    entry = history_for(task).filter(source="admin").get()
    assert entry.before["enabled"] is True and entry.after["enabled"] is False and entry.actor.username == "user-admin"
    r = client.post(f"/admin/django_celery_beat/periodictask/{task.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert AuditEntry.objects.filter(object_id=str(task.pk), action="delete", source="admin").exists()


CSV = """master_sku,storefront_sku,channel,safety_buffer,active
{a},A-1,web,2,yes
{b},B-1,,,
NOPE,C-1,web,,
{a},,web,,
{b},D-1,nochannel,,
{a},E-1,web,-3,
{b},A-1,web,,
{c},F-1,web,,maybe
"""


def test_csv_import_keeps_good_rows_and_reports_bad_ones(w):
    from exceptions_app import services as exc

    exc.raise_exception(Kind.UNKNOWN_SKU, kinds.key(Kind.UNKNOWN_SKU, "web", "A-1"), "A-1 unknown", sku="A-1")
    a, b, c = (i.sku for i in w.items)
    result = mapping_import.import_sku_mappings(CSV.format(a=a, b=b, c=c).encode())
    assert result.fatal == ""
    assert (result.created, result.updated) == (2, 0)
    reasons = {e.line: e.reason for e in result.errors}
    assert reasons == {
        4: "unknown master SKU 'NOPE'",
        5: "storefront_sku is empty",
        6: "unknown channel 'nochannel'",
        7: "safety_buffer '-3' is not a whole number from 0 to 1000000",
        8: "duplicate of line 2 (same channel and storefront SKU)",
        9: "active 'maybe' is not yes/no",
    }
    a1 = SkuMapping.objects.get(storefront_sku="A-1")
    assert a1.channel == w.channel and a1.safety_buffer == 2
    assert SkuMapping.objects.get(storefront_sku="B-1").channel is None
    assert AuditEntry.objects.filter(source="csv-import", action="create").count() == 2
    assert ExceptionRecord.objects.get(sku="A-1").status == Status.ACKNOWLEDGED  # the confirmed push resolves it
    assert result.exceptions_acknowledged == 1
    # re-import updates in place
    again = mapping_import.import_sku_mappings(f"master_sku,storefront_sku,channel,safety_buffer\n{b},A-1,web,5\n")
    assert (again.created, again.updated) == (0, 1)
    entry = AuditEntry.objects.filter(source="csv-import", action="update", content_type__model="skumapping").get()
    assert entry.before["item_id"] == w.items[0].pk and entry.after["item_id"] == w.items[1].pk


def test_csv_import_refuses_bad_numbers_and_long_text_but_keeps_good_rows(w):
    a, b, c = (i.sku for i in w.items)
    body = (
        "master_sku,storefront_sku,channel,safety_buffer,storefront_product\n"
        f"{a},G-1,web,\u00b2,\n"  # a superscript two: str.isdigit() says yes, int() says no
        f"{a},G-2,web,99999999999999999999,\n"  # would overflow the column at insert
        f"{b},G-3,web,4,{'p' * 201}\n"  # longer than storefront_product allows: refused, not cut
        f"{b},G-4,web,1000001,\n"
        f"{c},G-5,web,7,prod-5\n"
    )
    result = mapping_import.import_sku_mappings(body.encode())
    assert result.fatal == "" and result.created == 1
    reasons = {e.line: e.reason for e in result.errors}
    assert reasons == {
        2: "safety_buffer '\u00b2' is not a whole number from 0 to 1000000",
        3: "safety_buffer '99999999999999999999' is not a whole number from 0 to 1000000",
        4: "storefront_product is longer than 200 characters",
        5: "safety_buffer '1000001' is not a whole number from 0 to 1000000",
    }
    assert list(SkuMapping.objects.values_list("storefront_sku", "safety_buffer", "storefront_product")) == [
        ("G-5", 7, "prod-5")
    ]


def test_csv_import_row_the_database_refuses_is_reported_and_the_rest_kept(w, monkeypatch):
    """A mapping created by someone else between the import's look-up and its write makes the bulk insert
    fail: that row becomes a RowError and the other rows are still written and audited."""
    a, b, c = (i.sku for i in w.items)
    f.mappings(w, w.items[:1])  # storefront SKU a.lstrip("0") already mapped on web
    taken = a.lstrip("0")
    monkeypatch.setattr(mapping_import, "_existing", lambda skus: {})  # the look-up ran before the other writer
    body = f"master_sku,storefront_sku,channel\n{b},H-1,web\n{b},{taken},web\n{c},H-3,web\n"
    result = mapping_import.import_sku_mappings(body)
    assert result.created == 2
    assert [(e.line, e.reason.split(" (")[0]) for e in result.errors] == [(3, "already mapped")]
    assert set(SkuMapping.objects.values_list("storefront_sku", flat=True)) == {taken, "H-1", "H-3"}
    assert SkuMapping.objects.get(storefront_sku=taken).item == w.items[0]
    assert AuditEntry.objects.filter(source="csv-import", action="create").count() == 2


def test_csv_import_bulk_is_set_based(w, django_assert_max_num_queries):
    its = f.items(2000, prefix="9")
    body = "master_sku,storefront_sku,channel\n" + "".join(f"{i.sku},SF{i.sku},web\n" for i in its)
    # batched writes (SQLite caps bind variables per statement, so ~20 INSERT batches), never one per row
    with django_assert_max_num_queries(60):
        result = mapping_import.import_sku_mappings(body)
    assert result.created == 2000 and not result.errors


def test_csv_import_missing_columns_is_fatal(w):
    result = mapping_import.import_sku_mappings("sku,foo\n1,2\n")
    assert "missing column(s): master_sku, storefront_sku" in result.fatal
    assert not SkuMapping.objects.exists()


def test_csv_import_page(w, role_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = role_client("ops")
    a, b, c = (i.sku for i in w.items)
    up = SimpleUploadedFile("m.csv", CSV.format(a=a, b=b, c=c).encode(), content_type="text/csv")
    r = client.post("/rules/sku-mappings/import/", {"file": up, "format": "html"})
    html = r.content.decode()
    assert r.status_code == 200 and "Rejected rows" in html and "unknown master SKU" in html
    up = SimpleUploadedFile("m.csv", CSV.format(a=a, b=b, c=c).encode(), content_type="text/csv")
    r = client.post("/rules/sku-mappings/import/", {"file": up, "format": "csv"})
    assert r["Content-Type"] == "text/csv" and b"unknown channel" in r.content


def test_order_pages_fixed_queries_and_actions(w, role_client, monkeypatch):
    from exceptions_app import triage

    client = role_client("cx")
    orders = f.orders(w, 5, state=OrderState.HELD)
    small = f.count_queries(client, "/orders/"), f.count_queries(client, f"/orders/{orders[0].pk}/")
    f.orders(w, 45, state=OrderState.SENT, start=500)
    big = f.count_queries(client, "/orders/"), f.count_queries(client, f"/orders/{orders[0].pk}/")
    assert small == big
    assert "1 row" in client.get("/orders/?q=WEB-3").content.decode()
    assert "5 rows" in client.get("/orders/?state=held").content.decode()
    calls = []
    monkeypatch.setattr(
        triage, "order_flow", SimpleNamespace(**{"retry_send": lambda o, actor=None: calls.append(o.pk)})
    )
    r = client.post(f"/orders/{orders[0].pk}/", {"action": "retry"})
    assert r.status_code == 302 and calls == [orders[0].pk]
    assert (
        client.post(f"/orders/{orders[0].pk}/", {"action": "edit", "field": "gift_message", "value": "x"}).status_code
        == 403
    )


def test_edit_pages_and_schedules_run_fixed_queries(w, role_client):
    client = role_client("admin")
    m = f.mappings(w, w.items[:1])[0]
    for n in range(5):
        m.safety_buffer = n
        m.save()
    tasks = [
        PeriodicTask(
            name=f"job {i}",
            task="x",
            interval=IntervalSchedule.objects.get_or_create(every=60 + i, period="seconds")[0],
        )
        for i in range(5)
    ]
    PeriodicTask.objects.bulk_create(tasks)
    small = f.count_queries(client, f"/rules/sku-mappings/{m.pk}/"), f.count_queries(client, "/schedules/")
    for n in range(45):
        m.safety_buffer = 100 + n
        m.save()
    PeriodicTask.objects.bulk_create(
        [PeriodicTask(name=f"more {i}", task="x", interval=tasks[0].interval) for i in range(45)]
    )
    big = f.count_queries(client, f"/rules/sku-mappings/{m.pk}/"), f.count_queries(client, "/schedules/")
    assert small == big


def test_push_queue_page_and_retry_now(w, role_client):
    client = role_client("ops")
    f.pushes(w, f.items(5, prefix="31"))
    PendingPush.objects.filter(pk=PendingPush.objects.first().pk).update(
        attempts=3, not_before=f.ago(minutes=-30), last_error="429 Too Many"
    )
    small = f.count_queries(client, "/pushes/")
    f.pushes(w, f.items(45, prefix="32"))
    assert f.count_queries(client, "/pushes/") == small
    html = client.get("/pushes/?failing=1").content.decode()
    assert "429 Too Many" in html and "1 row" in html
    stuck = PendingPush.objects.get(attempts=3)
    assert client.post("/pushes/retry/", {"ids": [stuck.pk]}).status_code == 302
    stuck.refresh_from_db()
    assert stuck.not_before is None
