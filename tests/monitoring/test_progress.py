"""Long work feeds the dashboard's progress bars (issue 18): finance reports (on demand, daily), the console's bulk
push retry and full loads — each creates, advances and finishes a TaskProgress row the live fragment shows, with
a bounded number of progress writes (never one per row)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integration_hub.inventory import full_load, push
from integration_hub.inventory.models import PendingPush
from integration_hub.monitoring import progress
from integration_hub.monitoring.models import TaskProgress
from integration_hub.orders.models import OrderState
from integration_hub.reconciliation import services as reports
from integration_hub.reconciliation.models import Report, ReportKind, ReportRow
from tests.support import factories as f

pytestmark = pytest.mark.django_db


def _live(role_client) -> str:
    return role_client("ops").get("/monitoring/live/").content.decode()


def _progress_writes(ctx) -> int:
    table = TaskProgress._meta.db_table
    return sum(1 for q in ctx.captured_queries if table in q["sql"])


def test_an_on_demand_report_feeds_a_bar_the_dashboard_shows(w, role_client):
    f.orders(w, 3, state=OrderState.SENT, start=0, raw={"shipmentState": "Shipped"})
    seen = {}
    real = reports.BUILDERS[ReportKind.SHIPPED_NOT_DISPATCHED]

    def builder(report):  # look at the bar while the report runs
        seen["row"] = TaskProgress.objects.get(key=f"report:{report.pk}")
        return real(report)

    reports.BUILDERS[ReportKind.SHIPPED_NOT_DISPATCHED] = builder
    try:
        report = reports.generate(ReportKind.SHIPPED_NOT_DISPATCHED)
    finally:
        reports.BUILDERS[ReportKind.SHIPPED_NOT_DISPATCHED] = real
    assert report.status == Report.Status.DONE and report.row_count == 3
    running = seen["row"]
    assert (running.done, running.total, running.finished_at, running.error) == (0, 1, None, "")
    row = TaskProgress.objects.get(key=f"report:{report.pk}")
    assert (row.done, row.total, row.error) == (1, 1, "") and row.finished_at is not None
    assert row.label == f"Report: {ReportKind.SHIPPED_NOT_DISPATCHED.label}"
    html = _live(role_client)
    assert f'data-testid="progress-report:{report.pk}"' in html and "done · 1" in html


def test_a_failing_report_marks_its_bar_failed(w, role_client, monkeypatch):
    def boom(report):
        raise RuntimeError("database went away")

    monkeypatch.setitem(reports.BUILDERS, ReportKind.STOCK_DRIFT, boom)
    report = reports.generate(ReportKind.STOCK_DRIFT)
    assert report.status == Report.Status.FAILED
    row = TaskProgress.objects.get(key=f"report:{report.pk}")
    assert row.finished_at is not None and "went away" in row.error and row.done == 0
    assert "failed: RuntimeError: database went away" in _live(role_client)


def test_report_progress_costs_the_same_few_queries_whatever_the_rows(w):
    def run(n, start):
        f.orders(w, n, state=OrderState.SENT, start=start, raw={"shipmentState": "Shipped"})
        with CaptureQueriesContext(connection) as ctx:
            report = reports.generate(ReportKind.SHIPPED_NOT_DISPATCHED)
        assert report.status == Report.Status.DONE
        return report, len(ctx.captured_queries), _progress_writes(ctx)

    small, q_small, p_small = run(2, 0)
    big, q_big, p_big = run(300, 100)
    assert small.row_count == 2 and big.row_count == 302 and ReportRow.objects.filter(report=big).count() == 302
    assert q_big == q_small  # no query per row, progress included
    assert p_small == p_big == 2  # start (one upsert) and finish: the step's advance rides on the finish


def test_daily_reports_advance_one_bar_a_report_and_name_the_failures(w, role_client, monkeypatch):
    def boom(report):
        raise RuntimeError("no ATS today")

    monkeypatch.setitem(reports.BUILDERS, ReportKind.STOCK_DRIFT, boom)
    advances = []
    real_advance = progress.Tracker.advance

    def spy(self, n=1, total=None, force=False):
        advances.append((self.row.key, n, force))
        return real_advance(self, n, total=total, force=force)

    monkeypatch.setattr(progress.Tracker, "advance", spy)
    out = reports.generate_all(trigger=Report.Trigger.SCHEDULE)
    assert [r.status for r in out].count(Report.Status.DONE) == len(reports.BUILDERS) - 1
    assert advances == [("reports:schedule", 1, True)] * len(reports.BUILDERS)
    row = TaskProgress.objects.get(key="reports:schedule")
    assert (row.done, row.total) == (len(reports.BUILDERS), len(reports.BUILDERS))
    assert row.error == f"failed: {ReportKind.STOCK_DRIFT.value}" and row.finished_at is not None
    assert not TaskProgress.objects.filter(key__startswith="report:").exists()  # one bar, not one per report
    assert 'data-testid="progress-reports:schedule"' in _live(role_client)


def test_console_retry_of_selected_pushes_feeds_a_bar(w, role_client):
    f.pushes(w, f.items(5, prefix="41"))
    PendingPush.objects.update(not_before=f.ago(minutes=-30))
    ids = list(PendingPush.objects.values_list("pk", flat=True)) + [999_999]  # one already gone
    client = role_client("ops")
    assert client.post("/pushes/retry/", {"ids": ids}).status_code == 302
    assert not PendingPush.objects.filter(not_before__isnull=False).exists()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    row = TaskProgress.objects.get(key=f"push-retry:{user.pk}")
    assert (row.done, row.total, row.error) == (5, 5, "") and row.finished_at is not None
    assert row.label == "Retry 6 selected push(es)"
    assert f'data-testid="progress-push-retry:{user.pk}"' in client.get("/monitoring/live/").content.decode()


def _bulk_world(w, monkeypatch, n):
    its = f.items(n, prefix="51")
    f.mappings(w, its)
    monkeypatch.setattr(full_load, "has_bulk_path", lambda conn: True)
    rounds = []

    def push_batch(batch_size, channel_ids, full):  # a storefront bulk import: takes up to batch_size rows a round
        assert full
        pks = list(
            PendingPush.objects.filter(channel_id__in=channel_ids)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        PendingPush.objects.filter(pk__in=pks).delete()
        rounds.append(TaskProgress.objects.get(key=f"full-load:{w.channel.pk}").done)  # bar before this round
        return push.BatchResult(claimed=len(pks), pushed=len(pks))

    monkeypatch.setattr(push, "push_batch", push_batch)
    return rounds


def test_a_full_load_advances_its_bar_once_a_round(w, role_client, monkeypatch):
    rounds = _bulk_world(w, monkeypatch, 12)
    res = full_load.push_channels([w.channel], reason="test resync", max_rows=5)
    assert res.claimed == res.pushed == 12  # the mapped items only
    assert rounds == [0, 5, 10]  # written between rounds, not per row
    row = TaskProgress.objects.get(key=f"full-load:{w.channel.pk}")
    assert (row.done, row.total, row.error) == (12, 12, "") and row.finished_at is not None
    assert "Full load (test resync): web" == row.label
    assert f'data-testid="progress-full-load:{w.channel.pk}"' in _live(role_client)


def test_a_failing_full_load_marks_its_bar_failed(w, monkeypatch):
    _bulk_world(w, monkeypatch, 3)

    def down(**kw):
        raise ConnectionError("storefront down")

    monkeypatch.setattr(push, "push_batch", down)
    with pytest.raises(ConnectionError):
        full_load.push_channels([w.channel], max_rows=5)
    row = TaskProgress.objects.get(key=f"full-load:{w.channel.pk}")
    assert row.error == "storefront down" and row.finished_at is not None and row.total == 3
    assert PendingPush.objects.count() == 3  # the rows stay queued for the drain
