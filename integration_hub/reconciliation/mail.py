"""Finance reports by e-mail, through the monitoring outbox (:mod:`integration_hub.monitoring.delivery`):

* :func:`queue_deliveries` — after the daily report job: one ``report`` delivery per enabled subscription and
  business day, carrying the ids of that run's reports (one INSERT; the unique key makes a second run of the
  job the same day add nothing, so a run is never mailed twice).
* :func:`report_message` — the e-mail: a line per report (rows, value at cost, a link) with the subscribed
  reports attached as XLSX (or Excel CSV); a report over :data:`ATTACH_MAX_ROWS` rows is linked, not attached.

Sending, claiming, retries with back-off and the staff view of attempts are the outbox's.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from integration_hub.monitoring.models import Delivery
from integration_hub.monitoring.notify import Message

from . import services, xlsx
from .models import Report, ReportKind, ReportSubscription

ATTACH_MAX_ROWS = 100_000  # XLSX of ~4 MB; larger reports are linked (mail servers refuse big attachments)
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def queue_deliveries(reports: list[Report]) -> int:
    """One outbox row per enabled subscription for the run ``reports`` (same business day). Returns rows queued
    (a repeat for the same day is ignored by the unique key)."""
    if not reports:
        return 0
    day = reports[0].run_date
    ids = [r.pk for r in reports]
    rows = [
        Delivery(subscription=s, event=Delivery.Event.REPORT, digest_day=day, context={"report_ids": ids})
        for s in ReportSubscription.objects.filter(enabled=True)
    ]
    before = Delivery.objects.filter(event=Delivery.Event.REPORT, digest_day=day).count()
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return Delivery.objects.filter(event=Delivery.Event.REPORT, digest_day=day).count() - before


def _base_url() -> str:
    return (getattr(settings, "HUB", {}).get("PUBLIC_URL") or "").rstrip("/")


def report_message(d):
    sub = d.subscription
    reports = [
        r for r in Report.objects.filter(pk__in=d.context.get("report_ids", [])).order_by("kind") if sub.wants(r.kind)
    ]
    day = d.digest_day.isoformat() if d.digest_day else ""
    base = _base_url()
    lines = [f"Finance reconciliation reports for {day}:", ""]
    attachments = []
    for r in reports:
        link = f"{base}{reverse('reconciliation:detail', args=[r.pk])}"
        if r.status != Report.Status.DONE:
            lines.append(f"- {r.get_kind_display()}: {r.status}{f' ({r.error[:200]})' if r.error else ''} — {link}")
            continue
        value = f", value at cost {services.money(r.total_value)}" if r.total_value is not None else ""
        lines.append(f"- {r.get_kind_display()}: {r.row_count} row(s){value} — {link}")
        if r.row_count > ATTACH_MAX_ROWS:
            lines.append("  (too large to attach: download it from the link)")
        elif sub.format == ReportSubscription.Format.CSV:
            attachments.append((services.csv_filename(r), "".join(services.iter_csv(r)).encode("utf-8"), "text/csv"))
        else:
            with xlsx.spooled(r) as f:
                attachments.append((xlsx.filename(r), f.read(), XLSX_TYPE))
    if not reports:
        lines.append("- no report of the kinds you subscribed to ran.")
    lines += ["", f"Subscribed: {sub.kinds_label()}. Manage it under Finance reports → E-mail delivery."]
    kinds = ", ".join(ReportKind(r.kind).label for r in reports) or "none"
    return Message(
        "report",
        f"Finance reports {day}: {kinds}"[:200],
        "\n".join(lines),
        payload={"event": "report", "delivery_id": d.pk, "reports": [r.pk for r in reports]},
        delivery_id=d.pk,
        attachments=attachments,
    )
