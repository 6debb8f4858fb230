"""Finance reconciliation: the three reports (set-based), CSV streaming, pages, beat job."""

from __future__ import annotations

import csv
import io
import tracemalloc
from decimal import Decimal

import pytest
from django.utils import timezone

from integration_hub.core.beat import collect
from integration_hub.orders.models import OrderState
from integration_hub.reconciliation import services, tasks
from integration_hub.reconciliation.models import Report, ReportKind, ReportRow
from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")  # the Excel download starts with a BOM
    return list(csv.reader(io.StringIO(body)))


def test_shipped_in_storefront_but_open_in_warehouse(w):
    now = timezone.now()
    f.orders(
        w, 2, state=OrderState.ACKNOWLEDGED, start=0, raw={"shipmentState": "Shipped"}
    )  # storefront shipped it itself
    f.orders(w, 1, state=OrderState.SENT, start=10, raw={"shipmentState": "Pending"})  # not shipped anywhere
    f.orders(w, 1, state=OrderState.STOREFRONT_NOTIFIED, start=20, dispatched_at=now, notified_at=now)  # consistent
    f.orders(
        w, 1, state=OrderState.CANCELLED, start=30, raw={"shipmentState": "Shipped"}
    )  # cancelled: not finance's problem
    f.orders(w, 1, state=OrderState.SENT, start=40, raw={"shipping_status": "shipped"})  # SFCC shape
    from integration_hub.orders.models import StorefrontFulfilment

    ship_from_store = f.orders(w, 2, state=OrderState.VALIDATED, start=50)
    StorefrontFulfilment.objects.create(
        order=ship_from_store[0], fulfilment_ref="F1", warehouse=w.master, fulfilled_at=f.ago(hours=2)
    )
    StorefrontFulfilment.objects.create(
        order=ship_from_store[1],
        fulfilment_ref="F2",
        warehouse=w.master,
        fulfilled_at=f.ago(hours=2),
        ack_id="A2",
        acknowledged_at=f.ago(hours=1),
    )
    report = services.generate(ReportKind.SHIPPED_NOT_DISPATCHED)
    assert report.status == Report.Status.DONE, report.error
    rows = {r.order_ref: r for r in ReportRow.objects.filter(report=report)}
    # WEB-50: fulfilled by a store, the master has not acknowledged it; WEB-51's fulfilment is acknowledged
    assert sorted(rows) == ["WEB-0", "WEB-1", "WEB-40", "WEB-50"]
    assert report.row_count == 4
    assert abs((rows["WEB-50"].event_at - f.ago(hours=2)).total_seconds()) < 60


def test_dispatched_but_not_shipped_after_agreed_time(w, settings):
    settings.HUB = {**settings.HUB, "DISPATCH_NOTIFY_MINUTES": 60}
    f.orders(w, 1, state=OrderState.DISPATCHED, start=0, dispatched_at=f.ago(minutes=90))  # overdue
    f.orders(w, 1, state=OrderState.DISPATCHED, start=1, dispatched_at=f.ago(minutes=30))  # still within the window
    f.orders(
        w, 1, state=OrderState.STOREFRONT_NOTIFIED, start=2, dispatched_at=f.ago(hours=5), notified_at=f.ago(hours=4)
    )
    f.orders(
        w, 1, state=OrderState.DISPATCHED, start=3, dispatched_at=f.ago(hours=3), raw={"shipmentState": "Delivered"}
    )
    report = services.generate(ReportKind.DISPATCHED_NOT_SHIPPED)
    rows = list(ReportRow.objects.filter(report=report))
    assert [r.order_ref for r in rows] == ["WEB-0"]
    assert rows[0].event_at is not None and report.params["dispatch_notify_minutes"] == 60
    data = _csv(_download(report))
    assert data[0][-3:] == ["minutes overdue", "order total", "currency"] and 29 <= int(data[1][-3]) <= 31


def _download(report, query=""):
    from django.test import Client
    from django.contrib.auth.models import Group, User

    user, created = User.objects.get_or_create(username=f"fin-{report.pk}")
    if created:
        user.groups.add(Group.objects.get(name="finance"))
    c = Client()
    c.force_login(user)
    r = c.get(f"/reports/{report.pk}/csv/{query}")
    assert r.status_code == 200 and r.streaming
    return r


def test_stock_drift_uses_master_ats_and_values_at_cost(w):
    its = w.items
    f.stock(w, its, 10)
    f.mappings(w, its)
    f.channel_stock(w, its[:1], observed=10)  # in step
    f.channel_stock(w, its[1:2], observed=14)  # storefront shows 4 too many
    # its[2]: never pushed, master has 10 -> drift (storefront shows nothing)
    report = services.generate(ReportKind.STOCK_DRIFT)
    assert report.status == Report.Status.DONE, report.error
    rows = {r.sku: r for r in ReportRow.objects.filter(report=report)}
    assert set(rows) == {its[1].sku, its[2].sku}
    over = rows[its[1].sku]
    assert (over.master_quantity, over.storefront_quantity, over.difference) == (10, 14, 4)
    assert over.value == Decimal("10.0000") and over.channel_key == "web"
    never = rows[its[2].sku]
    assert never.storefront_quantity is None and never.difference == -10 and never.value == Decimal("-25.0000")
    assert report.total_value == Decimal("-15.0000")
    assert report.params["ats_source"] == "inventory.ats"


def test_unknown_cost_leaves_value_empty(w):
    it = f.items(1, cost=None)
    f.stock(w, it, 3)
    f.mappings(w, it)
    f.channel_stock(w, it, observed=5)
    report = services.generate(ReportKind.STOCK_DRIFT)
    row = ReportRow.objects.get(report=report)
    assert row.difference == 2 and row.unit_cost is None and row.value is None


def test_reports_are_set_based(w, django_assert_max_num_queries):
    its = f.items(300)
    f.stock(w, its, 5)
    f.mappings(w, its)
    f.channel_stock(w, its, observed=6)
    f.orders(w, 300, state=OrderState.DISPATCHED, dispatched_at=f.ago(days=1))
    for kind in ReportKind.values:
        with django_assert_max_num_queries(8):
            report = services.generate(kind)
        assert report.status == Report.Status.DONE
    assert Report.objects.get(kind=ReportKind.STOCK_DRIFT).row_count == 300
    assert Report.objects.get(kind=ReportKind.DISPATCHED_NOT_SHIPPED).row_count == 300


def test_failed_report_keeps_no_rows(w, monkeypatch):
    def boom(report):
        ReportRow.objects.create(report=report, order_ref="half")
        raise RuntimeError("database went away")

    monkeypatch.setitem(services.BUILDERS, ReportKind.STOCK_DRIFT, boom)
    report = services.generate(ReportKind.STOCK_DRIFT)
    assert report.status == Report.Status.FAILED and "went away" in report.error
    assert not ReportRow.objects.filter(report=report).exists()


def test_csv_download_streams_in_chunks_without_loading_all_rows(w):
    report = Report.objects.create(
        kind=ReportKind.STOCK_DRIFT,
        run_date=timezone.localdate(),
        status=Report.Status.DONE,
        started_at=timezone.now(),
        row_count=60_000,
    )
    ReportRow.objects.bulk_create(
        [
            ReportRow(
                report=report,
                channel_key="web",
                sku=f"S{i}",
                storefront_sku=f"s{i}",
                master_quantity=i,
                storefront_quantity=i + 1,
                difference=1,
                unit_cost=Decimal("1.5"),
                value=Decimal("1.5"),
            )
            for i in range(60_000)
        ],
        batch_size=5000,
    )
    response = _download(report)
    tracemalloc.start()
    lines = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines == 60_001
    # 60k model rows in memory would take tens of MB; streaming keeps only one chunk
    assert peak < 8 * 1024 * 1024, peak


def test_csv_content_and_header(w):
    f.stock(w, w.items[:1], 2)
    f.mappings(w, w.items[:1])
    f.channel_stock(w, w.items[:1], observed=5)
    report = services.generate(ReportKind.STOCK_DRIFT)
    data = _csv(_download(report))
    assert data[0] == [
        "channel",
        "channel name",
        "master sku",
        "storefront sku",
        "master ATS",
        "storefront quantity",
        "difference (storefront - master)",
        "unit cost",
        "value at cost",
        "currency",
    ]
    # SKUs as text cells for Excel (leading zeros kept), money with two decimals, the cost currency
    assert data[1] == [
        "web",
        "Web shop",
        f'="{w.items[0].sku}"',
        f'="{w.items[0].sku.lstrip("0")}"',
        "2",
        "5",
        "3",
        "2.50",
        "7.50",
        "GBP",
    ]


def test_report_pages_run_fixed_queries(w, role_client):
    client = role_client("finance")
    report = services.generate(ReportKind.STOCK_DRIFT)
    ReportRow.objects.bulk_create([ReportRow(report=report, sku=f"S{i}") for i in range(5)])
    Report.objects.filter(pk=report.pk).update(row_count=5)
    small = f.count_queries(client, f"/reports/{report.pk}/"), f.count_queries(client, "/reports/")
    ReportRow.objects.bulk_create([ReportRow(report=report, sku=f"T{i}") for i in range(45)])
    Report.objects.filter(pk=report.pk).update(row_count=50)
    for _ in range(45):
        Report.objects.create(
            kind=ReportKind.STOCK_DRIFT, run_date=timezone.localdate(), started_at=timezone.now(), status="done"
        )
    big = f.count_queries(client, f"/reports/{report.pk}/"), f.count_queries(client, "/reports/")
    assert small == big


def test_run_on_demand_is_queued_to_a_worker_and_listed_when_done(
    w, role_client, task_trap, django_capture_on_commit_callbacks
):
    from integration_hub.reconciliation import tasks as recon_tasks

    sent = []
    task_trap.on_send(lambda s: s.name == recon_tasks.run_report.name and sent.append((s.args, s.kwargs)))
    client = role_client("finance")
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/reports/run/", {"kind": "dispatched_unshipped"})
    report = Report.objects.get()
    # the request only records the report and queues the work
    assert r.status_code == 302 and r["Location"].endswith("/reports/")
    assert report.status == Report.Status.RUNNING and report.finished_at is None
    assert report.trigger == Report.Trigger.ON_DEMAND and report.requested_by.username == "user-finance"
    assert sent == [(("dispatched_unshipped",), {"user_id": report.requested_by_id, "report_id": report.pk})]
    html = client.get("/reports/").content.decode()
    assert "queued / running" in html and 'http-equiv="refresh"' in html
    # the worker builds that same report; the list then shows it done (and stops refreshing)
    assert recon_tasks.run_report.apply(args=sent[0][0], kwargs=sent[0][1]).get() == report.pk
    report.refresh_from_db()
    assert report.status == Report.Status.DONE and report.finished_at is not None
    html = client.get("/reports/").content.decode()
    assert 'data-report-status="done"' in html and "queued / running" not in html and 'http-equiv="refresh"' not in html
    # run twice (acks_late redelivery): the finished report is left as it is
    assert recon_tasks.run_report.apply(args=sent[0][0], kwargs=sent[0][1]).get() == report.pk
    assert Report.objects.count() == 1


def test_run_on_demand_with_the_broker_down_fails_visibly(
    w, role_client, task_trap, django_capture_on_commit_callbacks
):
    from integration_hub.reconciliation import tasks as recon_tasks

    task_trap.fail(recon_tasks.run_report, ConnectionRefusedError("broker unreachable"))
    client = role_client("finance")
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/reports/run/", {"kind": "stock_drift"})
    report = Report.objects.get()
    assert report.status == Report.Status.FAILED and "could not queue the report" in report.error
    assert "broker unreachable" in client.get("/reports/").content.decode()


def test_daily_beat_job_generates_every_report_and_purges_old(w):
    assert any(j.task == "reconciliation.daily_reports" and j.crontab for j in collect())
    old = Report.objects.create(
        kind=ReportKind.STOCK_DRIFT, run_date=timezone.localdate(), started_at=f.ago(days=120), status="done"
    )
    ReportRow.objects.create(report=old, sku="x")
    lost = Report.objects.create(
        kind=ReportKind.STOCK_DRIFT,
        run_date=timezone.localdate(),
        started_at=f.ago(hours=7),
        status=Report.Status.RUNNING,
    )
    fresh = Report.objects.create(
        kind=ReportKind.STOCK_DRIFT,
        run_date=timezone.localdate(),
        started_at=f.ago(hours=1),
        status=Report.Status.RUNNING,
    )
    out = tasks.daily_reports.apply(kwargs={"keep_days": 90}).get()
    assert set(out["reports"]) == set(ReportKind.values) and out["purged"] == 1 and out["stale_failed"] == 1
    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert lost.status == Report.Status.FAILED and "run it again" in lost.error and lost.finished_at
    assert fresh.status == Report.Status.RUNNING  # a worker may still be building it
    assert Report.objects.filter(trigger=Report.Trigger.SCHEDULE).count() == 3
    assert not Report.objects.filter(pk=old.pk).exists() and not ReportRow.objects.filter(sku="x").exists()


def test_csv_neutralises_spreadsheet_formulas(w):
    report = Report.objects.create(
        kind=ReportKind.STOCK_DRIFT,
        run_date=timezone.localdate(),
        status=Report.Status.DONE,
        started_at=timezone.now(),
        row_count=1,
    )
    ReportRow.objects.create(
        report=report,
        channel_key="web",
        sku="=HYPERLINK(\"http://x\")",
        storefront_sku="@SUM(A1)",
        master_quantity=-3,
        storefront_quantity=0,
        difference=3,
    )
    data = _csv(_download(report))
    # SKU cells are string literals (="…", quotes doubled): Excel shows the text and evaluates nothing in it
    assert data[1][2] == '="=HYPERLINK(""http://x"")"' and data[1][3] == '="@SUM(A1)"' and data[1][4] == "-3"
    plain = _csv(_download(report, "?format=plain"))
    assert plain[1][2] == "'=HYPERLINK(\"http://x\")" and plain[1][3] == "'@SUM(A1)"


def test_report_page_finds_rows(w, role_client):
    f.stock(w, w.items, 2)
    f.mappings(w, w.items)
    report = services.generate(ReportKind.STOCK_DRIFT)
    html = role_client("finance").get(f"/reports/{report.pk}/?q={w.items[1].sku}").content.decode()
    assert "1 row" in html and w.items[1].sku in html and w.items[0].sku not in html
