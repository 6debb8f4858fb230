"""Finance: a report for a chosen business day, "run all", and a CSV that opens cleanly in Excel (UTF-8 BOM,
SKUs as text, channel names, currency, two-decimal money)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from integration_hub.orders.models import Order, OrderState
from integration_hub.reconciliation import services
from integration_hub.reconciliation.models import Report, ReportKind, ReportRow
from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def test_past_business_day_covers_that_days_orders(w, role_client, django_capture_on_commit_callbacks):
    yesterday = timezone.localdate() - timedelta(days=1)
    start, _ = services.day_bounds(yesterday)
    f.orders(w, 1, state=OrderState.DISPATCHED, start=0, dispatched_at=start + timedelta(hours=10))
    f.orders(w, 1, state=OrderState.DISPATCHED, start=1, dispatched_at=start - timedelta(hours=3))  # the day before
    Order.objects.filter(order_number="WEB-0").update(total_cents=123456, currency="EUR")
    client = role_client("finance")
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            "/reports/run/", {"kind": ReportKind.DISPATCHED_NOT_SHIPPED, "run_date": yesterday.isoformat()}, follow=True
        )
    assert "queued for " + yesterday.isoformat() in r.content.decode()
    report = Report.objects.get()
    report = services.generate(report.kind, report=report)  # what the worker runs
    assert report.run_date == yesterday and report.status == Report.Status.DONE, report.error
    assert list(ReportRow.objects.filter(report=report).values_list("order_ref", flat=True)) == ["WEB-0"]
    # the past day's report is listed under its day and downloads as CSV with the expected columns
    body = b"".join(client.get(f"/reports/{report.pk}/csv/").streaming_content)
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == [
        "channel",
        "channel name",
        "order",
        "storefront order id",
        "hub state",
        "warehouse ref",
        "shipped/dispatched at (UTC)",
        "minutes overdue",
        "order total",
        "currency",
    ]
    assert rows[1][:2] == ["web", "Web shop"] and rows[1][-2:] == ["1234.56", "EUR"]


def test_future_day_and_past_drift_are_refused(w, role_client):
    client = role_client("finance")
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    r = client.post("/reports/run/", {"kind": ReportKind.SHIPPED_NOT_DISPATCHED, "run_date": tomorrow}, follow=True)
    assert "is in the future" in r.content.decode()
    past = (timezone.localdate() - timedelta(days=2)).isoformat()
    r = client.post("/reports/run/", {"kind": ReportKind.STOCK_DRIFT, "run_date": past}, follow=True)
    assert "snapshot of the stock now" in r.content.decode()
    r = client.post("/reports/run/", {"kind": ReportKind.STOCK_DRIFT, "run_date": "31/12/2025"}, follow=True)
    assert "is not a date" in r.content.decode()
    assert not Report.objects.exists()


def test_run_all(w, role_client, django_capture_on_commit_callbacks):
    client = role_client("finance")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/reports/run/", {"kind": "all"}).status_code == 302
    assert sorted(Report.objects.values_list("kind", flat=True)) == sorted(ReportKind.values)
    Report.objects.all().delete()
    past = timezone.localdate() - timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/reports/run/", {"kind": "all", "run_date": past.isoformat()})
    assert sorted(Report.objects.values_list("kind", flat=True)) == sorted(
        set(ReportKind.values) - {ReportKind.STOCK_DRIFT}
    )
