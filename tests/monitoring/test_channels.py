"""Notification channels: each delivers to a local HTTP receiver or Django's test mail outbox, the webhook
signature verifies, a failing channel retries without blocking the others, never twice per firing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from connectors import signatures
from integration_hub.monitoring import delivery, rules
from integration_hub.monitoring.models import Delivery

from .conftest import make_channel, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from integration_hub.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def fire(rule_value=50.0, when=None):
    return rules.evaluate({("push_queue_depth", ""): rule_value}, when or timezone.now())


def test_every_channel_kind_delivers(receiver, django_capture_on_commit_callbacks):
    chans = [
        make_channel("mail", "email", recipients="ops@example.com, oncall@example.com"),
        make_channel("slack", "slack", url=receiver.url + "/slack"),
        make_channel("teams", "teams", url=receiver.url + "/teams"),
        make_channel("hook", "webhook", url=receiver.url + "/hook", secret="hook-secret"),
    ]
    make_rule(name="queue high", threshold=10, channels=chans, severity="critical")
    fire()
    ids = delivery.due()
    assert len(ids) == 4
    assert sorted(delivery.deliver(i) for i in ids) == ["sent"] * 4

    assert len(mail.outbox) == 1
    m = mail.outbox[0]
    assert m.to == ["ops@example.com", "oncall@example.com"] and "CRITICAL: queue high" in m.subject
    assert "Stock push queue depth = 50" in m.body

    assert "queue high" in receiver.json("/slack")[0]["text"]
    card = receiver.json("/teams")[0]
    assert card["type"] == "message"
    att = card["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert att["content"]["type"] == "AdaptiveCard" and "queue high" in att["content"]["body"][0]["text"]

    req = receiver.to("/hook")[0]
    body = req["body"]
    headers = {k: v for k, v in req["headers"].items()}
    assert signatures.verify_hmac("hook-secret", body, headers)
    assert not signatures.verify_hmac("other-secret", body, headers)
    assert not signatures.verify_hmac("hook-secret", body + b" ", headers)
    payload = json.loads(body)
    assert payload["event"] == "fired" and payload["rule"] == "queue high" and payload["value"] == 50
    assert headers["X-Hub-Delivery"] == str(payload["delivery_id"]) and headers["X-Hub-Event"] == "fired"
    assert Delivery.objects.filter(status="sent").count() == 4


def test_recovery_notice_and_never_twice(receiver):
    ch = make_channel("slack", "slack", url=receiver.url + "/slack")
    make_rule(threshold=10, channels=[ch], cooldown_minutes=0)
    fire()
    fire()  # same breach: no second firing, no second delivery
    for i in delivery.due():
        delivery.deliver(i)
    for i in [d.pk for d in Delivery.objects.all()]:
        assert delivery.deliver(i) == "skipped"  # sent rows are never sent again
    rules.evaluate({("push_queue_depth", ""): 1.0}, timezone.now())
    for i in delivery.due():
        delivery.deliver(i)
    texts = [b["text"] for b in receiver.json("/slack")]
    assert len(texts) == 2 and texts[1].startswith("*RECOVERED")
    # the outbox key: a repeat insert for the same (firing, channel, event) is ignored
    d = Delivery.objects.first()
    Delivery.objects.bulk_create([Delivery(firing=d.firing, channel=ch, event=d.event)], ignore_conflicts=True)
    assert Delivery.objects.count() == 2


def test_claimed_row_is_not_sent_by_a_second_worker(receiver):
    ch = make_channel("slack", "slack", url=receiver.url + "/slack")
    make_rule(threshold=10, channels=[ch])
    fire()
    (pk,) = delivery.due()
    Delivery.objects.filter(pk=pk).update(claim_token="other", claimed_until=timezone.now() + timedelta(minutes=1))
    assert delivery.deliver(pk) == "skipped"
    assert receiver.to("/slack") == []
    # a claim left by a killed worker expires
    assert delivery.deliver(pk, now=timezone.now() + timedelta(minutes=2)) == "sent"


def test_failing_channel_retries_with_backoff_and_does_not_block_others(receiver, eager):
    receiver.status["/broken"] = 503
    good = make_channel("good", "slack", url=receiver.url + "/good")
    bad = make_channel("bad", "webhook", url=receiver.url + "/broken", secret="s")
    mailc = make_channel("mail", "email", recipients="ops@example.com")
    make_rule(threshold=10, channels=[bad, good, mailc])
    fire()
    assert delivery.kick() == 3  # one task per delivery (eager here): the broken one first, the others still go
    assert len(receiver.to("/good")) == 1 and len(mail.outbox) == 1
    failed = Delivery.objects.get(channel=bad)
    assert failed.status == "pending" and failed.attempts == 1 and "HTTP 503" in failed.last_error
    assert failed.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert delivery.due() == []  # backing off
    later = failed.next_attempt_at + timedelta(seconds=1)
    assert delivery.due(later) == [failed.pk]
    assert delivery.deliver(failed.pk, now=later) == "retry"
    failed.refresh_from_db()
    assert failed.attempts == 2 and failed.next_attempt_at > later + timedelta(seconds=40)
    receiver.status.clear()
    again = failed.next_attempt_at + timedelta(seconds=1)
    assert delivery.deliver(failed.pk, now=again) == "sent"
    assert len(receiver.to("/broken")) == 3 and len(receiver.to("/good")) == 1


def test_unreachable_url_and_missing_config_are_kept_as_errors():
    dead = make_channel("dead", "slack", url="http://127.0.0.1:9/nothing")
    noaddr = make_channel("noaddr", "email", recipients="")
    make_rule(threshold=10, channels=[dead, noaddr])
    fire()
    assert sorted(delivery.deliver(i) for i in delivery.due()) == ["retry", "retry"]
    errors = dict(Delivery.objects.values_list("channel__name", "last_error"))
    assert "ConnectionError" in errors["dead"] and "no recipients" in errors["noaddr"]


def test_backoff_is_capped():
    assert delivery.backoff(1) <= timedelta(seconds=30)
    assert delivery.backoff(50) <= timedelta(minutes=30)
    assert delivery.backoff(50) >= timedelta(minutes=24)


def test_send_test_button(receiver, role_client):
    ch = make_channel("slack", "slack", url=receiver.url + "/slack")
    broken = make_channel("broken", "slack", url=receiver.url + "/broken")
    receiver.status["/broken"] = 500
    ops = role_client("ops")
    assert ops.post(f"/monitoring/channels/{ch.pk}/test/").status_code == 403
    assert receiver.to("/slack") == []
    ops.logout()
    admin = role_client("admin")
    page = admin.get("/monitoring/alerts/")
    assert page.status_code == 200 and b"Send test" in page.content
    resp = admin.post(f"/monitoring/channels/{ch.pk}/test/", follow=True)
    assert resp.status_code == 200 and b"Test sent to slack" in resp.content
    assert "Test notification" in receiver.json("/slack")[0]["text"]
    resp = admin.post(f"/monitoring/channels/{broken.pk}/test/", follow=True)
    assert b"Test to broken failed: HTTP 500" in resp.content
    assert Delivery.objects.get(channel=broken).status == "failed"  # a test is not retried
    assert admin.post("/monitoring/channels/99999/test/").status_code == 404


def test_alerts_screen_roles(client, make_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_rule(name="queue high", threshold=1)
    rules.evaluate({("push_queue_depth", ""): 5.0}, timezone.now())
    client.force_login(make_user("finance"))
    assert client.get("/monitoring/alerts/").status_code == 403
    client.force_login(make_user("cx"))
    html = client.get("/monitoring/alerts/").content.decode()
    assert "queue high" in html and "Rules</h2>" not in html and "Send test" not in html  # firings only
    client.force_login(make_user("ops"))
    with CaptureQueriesContext(connection) as small:
        html = client.get("/monitoring/alerts/").content.decode()
    assert "Rules</h2>" in html and "Notification outbox" not in html  # no deliveries yet
    for i in range(10):
        make_rule(name=f"r{i}", threshold=1, channels=[make_channel(f"c{i}", "email", recipients="x@example.com")])
    rules.evaluate({("push_queue_depth", ""): 5.0}, timezone.now())
    with CaptureQueriesContext(connection) as big:
        html = client.get("/monitoring/alerts/").content.decode()
    assert "Notification outbox" in html and len(big.captured_queries) == len(small.captured_queries)


def test_daily_digest_per_role_once_a_day(make_user):
    from django.contrib.auth.models import User

    from integration_hub.monitoring.models import Firing

    ops1, ops2 = make_user("ops", "ops1"), make_user("ops", "ops2")
    User.objects.filter(pk=ops1.pk).update(email="ops1@example.com")
    User.objects.filter(pk=ops2.pk).update(email="ops2@example.com", is_active=False)
    make_user("cx", "cx1")
    digest = make_channel("ops-digest", "email", recipients="lead@example.com", min_severity="error")
    digest.role, digest.daily_digest = "ops", True
    digest.save()
    make_channel("no-digest", "email", recipients="x@example.com")
    make_rule(name="queue high", threshold=10, severity="error", cooldown_minutes=0)
    make_rule(name="queue warm", threshold=5, severity="warning", cooldown_minutes=0)
    now = timezone.now()
    rules.evaluate({("push_queue_depth", ""): 50.0}, now - timedelta(hours=3))
    rules.evaluate({("push_queue_depth", ""): 1.0}, now - timedelta(hours=2))
    rules.evaluate({("push_queue_depth", ""): 50.0}, now - timedelta(hours=1))
    Firing.objects.create(
        rule=Firing.objects.first().rule,
        key="old",
        severity="error",
        value=1,
        peak=1,
        message="old one",
        started_at=now - timedelta(days=3),
        recovered_at=now - timedelta(days=2),
    )
    assert delivery.queue_digests() == 1
    assert delivery.queue_digests() == 1  # same day again: the unique key keeps one
    (pk,) = Delivery.objects.filter(event="digest").values_list("pk", flat=True)
    assert delivery.deliver(pk) == "sent"
    (m,) = mail.outbox
    assert m.to == ["lead@example.com", "ops1@example.com"]  # listed + active ops users with an address
    assert "2 alert(s)" in m.subject and "1 open" in m.subject  # the warning-level ones are below this channel
    assert "queue high" in m.body and "queue warm" not in m.body and "old one" not in m.body


def test_setup_beat_has_the_digest_job(db):
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    call_command("setup_beat")
    job = PeriodicTask.objects.get(task="monitoring.daily_digest")
    assert (job.crontab.minute, job.crontab.hour) == ("0", "7")


def test_a_channel_pointing_at_an_internal_address_is_refused_by_the_outbound_guard(settings):
    """Notification webhooks go through the client layer's guarded session: the cloud metadata address
    (or any internal one not in HUB_OUTBOUND_ALLOW) is a failed delivery, never a request."""
    from integration_hub.monitoring.notify import SendError, post_json

    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": ""}
    with pytest.raises(SendError, match="169.254.169.254"):
        post_json("http://169.254.169.254/latest/meta-data/", b"{}")


def test_errors_never_show_the_webhook_urls_secret_path_or_the_remote_answer(receiver, role_client, caplog, settings):
    """Slack / Teams webhook URLs carry their secret in the path and are stored encrypted, write-only; the
    outbox's last error is shown to ops, so it names only the origin and the status or exception class (the
    remote's answer is logged, as other outbound bodies are kept for admins only — issue 11 item 6)."""
    import logging

    receiver.status["/services/"] = 500
    broken = make_channel("broken", "slack", url=receiver.url + "/services/T0/B0/SECRETPATH?token=QSECRET")
    dead = make_channel("dead", "teams", url="http://127.0.0.1:9/workflows/SECRETPATH?sig=QSECRET")
    make_rule(threshold=10, channels=[broken, dead])
    fire()
    with caplog.at_level(logging.WARNING):
        assert sorted(delivery.deliver(i) for i in delivery.due()) == ["retry", "retry"]
    errors = dict(Delivery.objects.values_list("channel__name", "last_error"))
    assert errors["broken"] == f"HTTP 500 from {receiver.url}"
    assert errors["dead"] == "ConnectionError posting to http://127.0.0.1:9"
    html = role_client("ops").get("/monitoring/alerts/").content.decode()
    assert "HTTP 500 from" in html
    for secret in ("SECRETPATH", "QSECRET", "nope"):
        assert secret not in html and all(secret not in e for e in errors.values()), secret
    assert "SECRETPATH" not in caplog.text and "QSECRET" not in caplog.text
    assert "nope" in caplog.text  # what the remote answered is in the log for whoever runs the hub


def test_admin_refuses_a_channel_url_at_an_internal_address(admin_client, settings):
    from integration_hub.monitoring.models import NotificationChannel

    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": ""}
    form = {"name": "meta", "kind": "slack", "recipients": "", "role": "", "min_severity": "warning", "enabled": "on"}
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/hook", "http://[::1]:8080/x"):
        resp = admin_client.post("/admin/monitoring/notificationchannel/add/", {**form, "url": url})
        assert resp.status_code == 200 and "refused" in resp.content.decode(), url
    assert not NotificationChannel.objects.exists()
    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": "10.1.2.0/24"}  # allow-listed on purpose
    resp = admin_client.post("/admin/monitoring/notificationchannel/add/", {**form, "url": "http://10.1.2.3/hook"})
    assert resp.status_code == 302 and NotificationChannel.objects.get().get_url() == "http://10.1.2.3/hook"


def test_broker_down_loses_no_notification_and_the_sweep_sends_it_later(
    receiver, eager, monkeypatch, django_capture_on_commit_callbacks
):
    """The outbox row is written with the firing; if the broker refuses the task the row stays pending (no
    error reaches the evaluation) and the beat sweep (``monitoring.deliver_due``) sends it once it is back."""
    from kombu.exceptions import OperationalError

    from integration_hub.core import nudge
    from integration_hub.monitoring import tasks

    ch = make_channel("slack", "slack", url=receiver.url + "/slack")
    make_rule(threshold=10, channels=[ch])

    def broker_down(*args, **kwargs):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(nudge, "enqueue", broker_down)  # the broker refuses every send until monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        out = fire()  # the evaluation's on-commit kick meets the dead broker
    assert len(out.fired) == 1 and len(callbacks) == 1
    assert tasks.deliver_due() >= 1  # the sweep meets it too: logged, nothing raised
    (d,) = Delivery.objects.all()
    assert d.status == "pending" and d.attempts == 0 and receiver.to("/slack") == []
    monkeypatch.undo()
    assert tasks.deliver_due() == 1  # broker back: the next sweep sends it, once
    assert tasks.deliver_due() == 0
    assert len(receiver.to("/slack")) == 1 and Delivery.objects.get().status == "sent"
