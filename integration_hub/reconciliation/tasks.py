"""Celery entry points for the reconciliation reports (thin: the work is in services)."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from integration_hub.monitoring import delivery

from . import mail, services
from .models import Report


@shared_task(name="reconciliation.daily_reports")
def daily_reports(keep_days: int = 90) -> dict:
    """Fail on-demand runs whose worker was lost, run every report for today, queue the e-mails of the report
    subscriptions, then drop reports older than ``keep_days``. Safe to run twice: a
    second run adds a second (identical) snapshot and never alters the first."""
    stale = services.fail_stale()
    reports = services.generate_all(trigger=Report.Trigger.SCHEDULE)
    mailed = mail.queue_deliveries(reports)  # e-mail subscriptions: through the monitoring outbox, once per day
    if mailed:
        delivery.kick()
    purged = services.purge(keep_days)
    return {
        "reports": {r.kind: r.row_count for r in reports},
        "purged": purged,
        "stale_failed": stale,
        "mailed": mailed,
    }


@shared_task(name="reconciliation.run_report")
def run_report(kind: str, user_id: int | None = None, report_id: int | None = None) -> int | None:
    """Build a report: the one :func:`services.queue_report` recorded (``report_id``), else a new one. Safe to
    run twice: a report that is no longer running is left as it is."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    if report_id is None:
        return services.generate(kind, user=user).pk
    report = Report.objects.filter(pk=report_id).first()
    if report is None or report.status != Report.Status.RUNNING:
        return report_id if report is not None else None
    return services.generate(report.kind, user=user, report=report).pk
