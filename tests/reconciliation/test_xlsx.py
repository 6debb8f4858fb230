"""Finance: each report downloads as an Excel workbook that parses back with openpyxl: SKUs as text (leading
zeros), money as two-decimal numbers next to a currency column, channel names; role-checked; streamed from
a constant-memory writer (more rows than a sheet holds continue on another sheet)."""

from __future__ import annotations

import io
from datetime import timedelta, timezone as dt_timezone

import openpyxl
import pytest
from django.utils import timezone

from integration_hub.orders.models import Order, OrderState
from integration_hub.reconciliation import services, xlsx
from integration_hub.reconciliation.models import Report, ReportKind
from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _book(resp) -> openpyxl.Workbook:
    body = b"".join(resp.streaming_content)
    assert body[:2] == b"PK"  # a zip container
    return openpyxl.load_workbook(io.BytesIO(body))


def test_drift_report_as_xlsx(w, role_client, settings):
    settings.HUB = {**settings.HUB, "COST_CURRENCY": "GBP"}
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    f.channel_stock(w, w.items[:1], observed=8)
    report = services.generate(ReportKind.STOCK_DRIFT)
    assert report.row_count >= 1
    resp = role_client("finance").get(f"/reports/{report.pk}/xlsx/")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert f'stock_drift-{report.run_date.isoformat()}-{report.pk}.xlsx' in resp["Content-Disposition"]
    ws = _book(resp).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == services.column_headers(report)
    head = {h: i for i, h in enumerate(rows[0])}
    row = next(r for r in rows[1:] if r[head["master sku"]] == w.items[0].sku)
    assert row[head["master sku"]] == "00001000" and isinstance(row[head["master sku"]], str)  # leading zeros kept
    assert row[head["channel name"]] == "Web shop" and row[head["currency"]] == "GBP"
    assert row[head["difference (storefront - master)"]] == 3
    assert row[head["unit cost"]] == 2.5 and row[head["value at cost"]] == 7.5
    cells = list(ws.iter_rows(min_row=2, max_row=len(rows)))
    money_cell = next(c[head["value at cost"]] for c in cells if c[head["master sku"]].value == "00001000")
    assert money_cell.number_format == "0.00" and money_cell.data_type == "n"
    sku_cell = next(c[head["master sku"]] for c in cells if c[head["master sku"]].value == "00001000")
    assert sku_cell.data_type == "s" and sku_cell.number_format == "@"


def test_past_day_order_report_as_xlsx_with_order_totals(w, role_client):
    yesterday = timezone.localdate() - timedelta(days=1)
    start, _ = services.day_bounds(yesterday)
    f.orders(w, 2, state=OrderState.DISPATCHED, dispatched_at=start + timedelta(hours=9))
    Order.objects.filter(order_number="WEB-0").update(total_cents=123456, currency="EUR", order_number="=HYPERLINK(1)")
    report = services.generate(ReportKind.DISPATCHED_NOT_SHIPPED, run_date=yesterday)
    assert report.row_count == 2, report.error
    ws = _book(role_client("finance").get(f"/reports/{report.pk}/xlsx/")).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    head = {h: i for i, h in enumerate(rows[0])}
    by_order = {r[head["order"]]: r for r in rows[1:]}
    assert set(by_order) == {"=HYPERLINK(1)", "WEB-1"}  # written as a string: never a formula
    assert by_order["=HYPERLINK(1)"][head["order total"]] == 1234.56
    assert by_order["=HYPERLINK(1)"][head["currency"]] == "EUR"
    assert by_order["WEB-1"][head["order total"]] is None
    expected = (start + timedelta(hours=9)).astimezone(dt_timezone.utc).replace(tzinfo=None, microsecond=0)
    assert by_order["WEB-1"][head["shipped/dispatched at (UTC)"]].replace(microsecond=0) == expected
    assert isinstance(by_order["WEB-1"][head["minutes overdue"]], int)
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)


def test_more_rows_than_a_sheet_continue_on_the_next_sheet(w):
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    report = services.generate(ReportKind.STOCK_DRIFT)
    assert report.row_count == 3
    buf = io.BytesIO()
    assert xlsx.write(report, buf, rows_per_sheet=3, chunk_size=1) == 3  # 2 data rows per sheet + header
    book = openpyxl.load_workbook(io.BytesIO(buf.getvalue()))
    assert [ws.max_row for ws in book.worksheets] == [3, 2]
    assert all(ws.cell(1, 1).value == "channel" for ws in book.worksheets)


def test_xlsx_needs_download_permission_and_a_finished_report(w, role_client, client):
    report = services.generate(ReportKind.STOCK_DRIFT)
    running = Report.objects.create(kind=ReportKind.STOCK_DRIFT, run_date=report.run_date, started_at=timezone.now())
    assert role_client("ops").get(f"/reports/{report.pk}/xlsx/").status_code == 403
    client.logout()
    fin = role_client("finance")
    assert fin.get(f"/reports/{running.pk}/xlsx/").status_code == 404
    api = fin.get(f"/api/reports/{report.pk}/xlsx/")
    assert api.status_code == 200 and b"".join(api.streaming_content)[:2] == b"PK"


def test_xlsx_memory_stays_flat(w, django_assert_max_num_queries):
    """constant_memory: rows go to disk as they are written; the queries are one per chunk, not per row."""
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    report = services.generate(ReportKind.STOCK_DRIFT)
    with django_assert_max_num_queries(3):
        xlsx.write(report, io.BytesIO())
