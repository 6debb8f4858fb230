"""Finance: reports delivered by e-mail after the daily run, through the monitoring outbox — per user or per
address, chosen reports, XLSX (or CSV) attached, once per run, retried when the mail server refuses."""

from __future__ import annotations

import io
from unittest import mock

import openpyxl
import pytest
from django.core import mail
from django.test import Client

from integration_hub.core.models import AuditEntry
from integration_hub.monitoring import delivery
from integration_hub.monitoring.models import Delivery
from integration_hub.reconciliation import tasks
from integration_hub.reconciliation.models import ReportKind, ReportSubscription
from tests.support import factories as f
from tests.support.tasks import trap_tasks


@pytest.fixture
def w(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    w = f.console_world()
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    return w


def _run_daily():
    with trap_tasks(run=["monitoring.deliver_one"]):  # each delivery runs in place, as a worker would run it
        return tasks.daily_reports()


def test_finance_subscribes_and_gets_the_report_attached_once(w, make_user):
    user = make_user("finance")
    user.email = "fin@example.com"
    user.save()
    c = Client()
    c.force_login(user)
    r = c.post(
        "/reports/subscriptions/",
        {"send_to_me": "on", "kinds": [ReportKind.STOCK_DRIFT], "addresses": "cfo@example.com; ", "format": "xlsx"},
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    sub = ReportSubscription.objects.get()
    assert sub.recipients() == ["fin@example.com", "cfo@example.com"] and sub.kinds == ["stock_drift"]
    assert AuditEntry.objects.filter(object_id=str(sub.pk), action="create").exists()
    out = _run_daily()
    assert out["mailed"] == 1
    (m,) = mail.outbox
    assert m.to == ["fin@example.com", "cfo@example.com"] and "Stock drift" in m.subject
    assert "3 row(s)" in m.body
    ((name, content, mimetype),) = m.attachments
    assert name.startswith("stock_drift-") and name.endswith(".xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(content)).worksheets[0]
    skus = {row[2] for row in ws.iter_rows(min_row=2, values_only=True)}
    assert skus == {"00001000", "00001001", "00001002"}  # master sku as text (leading zeros)
    d = Delivery.objects.get(event="report")
    assert d.status == "sent" and d.subscription_id == sub.pk
    # the job run again the same day: nothing mailed twice
    _run_daily()
    assert len(mail.outbox) == 1 and Delivery.objects.filter(event="report").count() == 1
    page = c.get("/reports/subscriptions/").content.decode()
    assert "cfo@example.com" in page and "sent" in page


def test_smtp_failure_is_retried_then_sent(w, make_user):
    ReportSubscription.objects.create(addresses="ops@example.com", format="csv", kinds=[ReportKind.STOCK_DRIFT])
    with mock.patch("django.core.mail.EmailMessage.send", side_effect=ConnectionRefusedError("smtp down")):
        _run_daily()
    d = Delivery.objects.get(event="report")
    assert d.status == "pending" and d.attempts == 1 and "smtp down" in d.last_error and d.next_attempt_at
    assert not mail.outbox
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=None)  # back-off over
    assert delivery.deliver(d.pk) == "sent"
    (m,) = mail.outbox
    ((name, content, mimetype),) = m.attachments
    assert name.endswith(".csv") and mimetype == "text/csv"
    assert content.startswith(
        "\ufeffchannel,channel name"
    )  # Django keeps text/* attachments as text (UTF-8 on the wire)


def test_paused_subscription_gets_nothing(w):
    ReportSubscription.objects.create(addresses="a@example.com", enabled=False)
    assert _run_daily()["mailed"] == 0 and not mail.outbox


def test_form_refuses_bad_addresses_and_no_recipient(w, make_user):
    c = Client()
    c.force_login(make_user("finance"))  # no e-mail address on the account
    r = c.post("/reports/subscriptions/", {"addresses": "not-an-address", "format": "xlsx"})
    assert r.status_code == 400 and "is not an e-mail address" in r.content.decode()
    r = c.post("/reports/subscriptions/", {"send_to_me": "on", "format": "xlsx"})
    assert r.status_code == 400 and "has no e-mail address" in r.content.decode()
    assert not ReportSubscription.objects.exists()


def test_roles_and_csrf(w, make_user):
    sub = ReportSubscription.objects.create(addresses="a@example.com")
    ops = Client()
    ops.force_login(make_user("ops"))
    assert ops.get("/reports/subscriptions/").status_code == 403
    assert ops.post("/reports/subscriptions/", {"addresses": "b@example.com", "format": "xlsx"}).status_code == 403
    assert ops.post(f"/reports/subscriptions/{sub.pk}/pause/").status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("finance"))
    assert strict.post(f"/reports/subscriptions/{sub.pk}/delete/").status_code == 403
    fin = Client()
    fin.force_login(make_user("finance", "fin2"))
    assert fin.post(f"/reports/subscriptions/{sub.pk}/pause/").status_code == 302
    sub.refresh_from_db()
    assert not sub.enabled
    assert fin.post(f"/reports/subscriptions/{sub.pk}/delete/").status_code == 302
    assert not ReportSubscription.objects.exists()


def test_subscription_list_fixed_queries(w, make_user):
    c = Client()
    c.force_login(make_user("finance"))
    ReportSubscription.objects.create(addresses="a@example.com")
    small = f.count_queries(c, "/reports/subscriptions/")
    for i in range(10):
        s = ReportSubscription.objects.create(addresses=f"x{i}@example.com", user=make_user(None, f"u{i}"))
        Delivery.objects.create(subscription=s, event="report", digest_day="2026-12-01")
    assert f.count_queries(c, "/reports/subscriptions/") == small
