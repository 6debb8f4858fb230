"""Issue 14, finance and admin in a real browser: finance downloads a past day's report as XLSX and it parses;
admin bulk-disables schedules, runs one now and sees its result; admin reverts a buffer change through the
impact preview."""

from __future__ import annotations

from datetime import timedelta

import openpyxl
import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from integration_hub.core import audit
from integration_hub.core.models import AuditEntry
from integration_hub.inventory.models import ChannelStockRule
from integration_hub.orders.models import Order, OrderState
from integration_hub.reconciliation import services
from integration_hub.reconciliation.models import ReportKind
from tests.support import factories as f

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_finance_downloads_a_past_days_report_as_xlsx(page, login, tmp_path):
    w = f.console_world()
    yesterday = timezone.localdate() - timedelta(days=1)
    start, _ = services.day_bounds(yesterday)
    f.orders(w, 2, state=OrderState.DISPATCHED, dispatched_at=start + timedelta(hours=11))
    Order.objects.filter(order_number="WEB-0").update(total_cents=4250, currency="GBP")
    report = services.generate(ReportKind.DISPATCHED_NOT_SHIPPED, run_date=yesterday)
    assert report.row_count == 2, report.error
    login("finance")
    page.goto("/reports/")
    page.fill("#day", yesterday.isoformat())
    page.click("button:has-text('Show')")
    page.wait_for_selector(f"a[href='/reports/{report.pk}/xlsx/']")
    with page.expect_download() as dl:
        page.click(f"a[href='/reports/{report.pk}/xlsx/']")
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == f"dispatched_unshipped-{yesterday.isoformat()}-{report.pk}.xlsx"
    rows = list(openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True))
    assert list(rows[0]) == [
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
    by_order = {r[2]: r for r in rows[1:]}
    assert by_order["WEB-0"][1] == "Web shop" and by_order["WEB-0"][-2:] == (42.5, "GBP")


def test_admin_bulk_disables_schedules_and_runs_one_now(page, login):
    from integration_hub.celery import app
    from integration_hub.core.models import Heartbeat

    daily = CrontabSchedule.objects.create(minute="0", hour="2")
    jobs = [PeriodicTask.objects.create(name=f"job {i}", task="core.heartbeat", crontab=daily) for i in range(3)]
    PeriodicTask.objects.create(
        name="beat pulse",
        task="core.heartbeat",
        kwargs='{"name": "by-hand"}',
        interval=IntervalSchedule.objects.create(every=60, period="seconds"),
    )
    login("admin")
    page.goto("/schedules/")
    assert "every day at 02:00 UTC" in page.inner_text(f"tr[data-schedule='{jobs[0].pk}']")
    page.check(f"input[name=ids][value='{jobs[0].pk}']")
    page.check(f"input[name=ids][value='{jobs[1].pk}']")
    page.click("button:has-text('Disable selected')")
    page.wait_for_selector(".messages li")
    assert "2 schedule(s) disabled" in page.inner_text(".messages")
    assert sorted(PeriodicTask.objects.filter(enabled=False).values_list("name", flat=True)) == ["job 0", "job 1"]
    assert AuditEntry.objects.filter(object_id__in=[str(jobs[0].pk), str(jobs[1].pk)], action="update").count() == 2
    assert "—" in page.inner_text(f"tr[data-schedule='{jobs[0].pk}'] .next-run")  # disabled: no next run
    page.click("tr:has-text('beat pulse') a")
    previous, app.conf.task_always_eager = (
        app.conf.task_always_eager,
        True,
    )  # no worker here: the task runs in the request
    try:
        page.click("button:has-text('Run now')")
        page.wait_for_selector("#run-state")
    finally:
        app.conf.task_always_eager = previous
    assert page.get_attribute("#run-state", "data-state") == "succeeded"
    assert page.inner_text("#run-task-id").startswith("hubrun-")
    assert "by-hand" in page.inner_text("#run-outcome")
    assert Heartbeat.objects.filter(name="by-hand").exists()
    page.click("text=← beat pulse")
    page.wait_for_selector("#runs")
    assert "succeeded" in page.inner_text("#runs")


def test_admin_reverts_a_buffer_change_through_the_preview(page, login, make_user):
    w = f.console_world()
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    with audit.acting_as(make_user("ops", "jane"), "console"):
        rule = ChannelStockRule.objects.get()
        rule.safety_buffer = 5
        rule.save()
    entry = AuditEntry.objects.filter(object_id=str(rule.pk), action="update").latest("id")
    login("admin")
    page.goto("/activity/")
    row = page.locator(f"tr[data-entry='{entry.pk}']")
    assert "jane" in row.inner_text() and "safety buffer" in row.inner_text()
    row.locator("a.revert").click()
    page.wait_for_selector("#revert")
    assert page.input_value("#id_safety_buffer") == "0"
    page.click("button:has-text('Save')")
    page.wait_for_selector("#impact")
    assert "3 SKUs on web go up" in page.inner_text("#impact")
    assert ChannelStockRule.objects.get().safety_buffer == 5  # not saved before the confirmation
    page.click("button:has-text('Confirm and save')")
    page.wait_for_selector(".messages li")
    assert ChannelStockRule.objects.get().safety_buffer == 0
    assert AuditEntry.objects.filter(object_id=str(rule.pk)).latest("id").source == f"revert #{entry.pk}"
