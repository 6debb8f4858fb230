"""The notification outbox: :class:`~.models.Delivery` rows, one per (firing, channel, event).

Rows are written in the same transaction as the firing (:mod:`.rules`), so nothing is lost between the
database and the broker. :func:`kick` hands every due row to its own task (a slow or failing channel never
holds up the others); the beat sweep calls it too, so rows whose task was lost are sent later. A row is
claimed before sending (a lease, like the stock outbox), so two workers never send the same row; a failure
is kept on the row and retried with exponential back-off (capped, never given up: the staff screen shows
attempts and the last error). The unique key means a firing is sent at most once per channel and event.

Finance report e-mails use the same outbox: one ``report`` row per (subscription, business day), queued by the
daily report job (:mod:`integration_hub.reconciliation.mail`) and sent to the subscription's addresses.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from integration_hub.core import nudge
from integration_hub.reconciliation import mail

from .messages import message
from .models import SEVERITY_RANK, Delivery, Firing, NotificationChannel
from .notify import Message, SendError, send, send_email

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
BACKOFF_BASE = 30  # seconds
BACKOFF_CAP = 30 * 60
KICK_BATCH = 200


def backoff(attempts: int) -> timedelta:
    """Exponential back-off with jitter: 30 s, 60 s, 120 s … capped at 30 minutes."""
    seconds = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.0))


def due(now=None) -> list[int]:
    now = now or timezone.now()
    return list(
        Delivery.objects.filter(status=Delivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:KICK_BATCH]
    )


def kick(now=None) -> int:
    """Queue one task per due delivery (1 query + the broker)."""
    ids = due(now)
    for pk in ids:
        try:
            nudge.enqueue("monitoring.deliver_one", args=[pk])
        except Exception:  # broker down: the row stays pending, the beat sweep sends it later
            log.warning("could not queue delivery %s; the sweep will retry", pk, exc_info=True)
            break
    return len(ids)


def queue_digests(now=None) -> int:
    """One ``digest`` delivery per enabled digest channel for today (a second run the same day adds nothing)."""
    now = now or timezone.now()
    rows = [
        Delivery(channel=c, event=Delivery.Event.DIGEST, digest_day=timezone.localdate(now))
        for c in NotificationChannel.objects.filter(enabled=True, daily_digest=True)
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def digest_message(d: Delivery) -> Message:
    """The last 24 hours before the digest was queued: what fired, what is still open, at or above the
    channel's minimum severity (1 query)."""
    until = d.created_at
    since = until - timedelta(hours=24)
    floor = SEVERITY_RANK.get(d.channel.min_severity, 0)
    firings = [
        f
        for f in Firing.objects.filter(
            Q(started_at__gte=since) | Q(recovered_at__isnull=True) | Q(recovered_at__gte=since), started_at__lte=until
        ).order_by("started_at")
        if SEVERITY_RANK.get(f.severity, 0) >= floor
    ]
    still_open = [f for f in firings if f.recovered_at is None]
    lines = [f"{len(firings)} alert(s) in the 24 hours to {until:%Y-%m-%d %H:%M} UTC, {len(still_open)} still open."]
    for f in firings:
        state = "OPEN" if f.recovered_at is None else f"recovered {f.recovered_at:%H:%M}"
        lines.append(f"- [{f.severity}] {f.message} — since {f.started_at:%m-%d %H:%M} · {state}")
    payload = {
        "event": "digest",
        "delivery_id": d.pk,
        "day": d.digest_day.isoformat() if d.digest_day else None,
        "firings": [
            {
                "id": f.pk,
                "message": f.message,
                "severity": f.severity,
                "flow": f.flow,
                "started_at": f.started_at.isoformat(),
                "recovered_at": f.recovered_at.isoformat() if f.recovered_at else None,
            }
            for f in firings
        ],
    }
    return Message(
        "digest",
        f"Daily alert digest: {len(firings)} alert(s), {len(still_open)} open",
        "\n".join(lines),
        payload=payload,
        delivery_id=d.pk,
    )


def message_for(d: Delivery) -> Message:
    if d.event == Delivery.Event.REPORT:
        return mail.report_message(d)
    if d.event == Delivery.Event.DIGEST:
        return digest_message(d)
    if d.event == Delivery.Event.TEST:
        return Message(
            "test",
            "Test notification",
            f"A test from the Integration Hub to channel {d.channel.name}.",
            payload={"event": "test", "channel": d.channel.name, "delivery_id": d.pk},
            delivery_id=d.pk,
        )
    f = d.firing
    rule = f.rule
    recovered = d.event == Delivery.Event.RECOVERED
    title = f"RECOVERED: {rule.name}" if recovered else f"{f.severity.upper()}: {rule.name}"
    text = message(rule, f.key, f.peak, recovered=True) if recovered else f.message
    when = f.recovered_at if recovered else f.started_at
    text += (
        f"\n{'Recovered' if recovered else 'Since'}: {when:%Y-%m-%d %H:%M:%S} UTC · condition: {rule.condition_text()}"
    )
    payload = {
        "event": d.event,
        "delivery_id": d.pk,
        "firing_id": f.pk,
        "rule": rule.name,
        "figure": rule.figure,
        "key": f.key,
        "severity": f.severity,
        "flow": f.flow,
        "value": f.value,
        "peak": f.peak,
        "threshold": rule.threshold,
        "op": rule.op,
        "message": f.message,
        "started_at": f.started_at.isoformat(),
        "recovered_at": f.recovered_at.isoformat() if f.recovered_at else None,
    }
    return Message(d.event, title, text, severity=f.severity, payload=payload, delivery_id=d.pk)


def deliver(delivery_id: int, now=None) -> str:
    """Claim, send and record one delivery. Returns ``sent``, ``retry``, ``failed`` or ``skipped``
    (someone else holds it, or it is not due / already sent)."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = (
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claim_token=token, claimed_until=now + LEASE)
    )
    if not claimed:
        return "skipped"
    d = Delivery.objects.select_related("channel", "firing__rule", "subscription__user").get(pk=delivery_id)
    attempts = d.attempts + 1
    final = d.event == Delivery.Event.TEST  # a test is tried once; real notifications retry
    try:
        if d.event == Delivery.Event.REPORT:
            if not d.subscription.enabled:
                final = True
                raise SendError("subscription disabled")
            send_email(d.subscription.recipients(), message_for(d))
        else:
            if not d.channel.enabled:
                raise SendError("channel disabled")
            send(d.channel, message_for(d))
    except Exception as exc:  # noqa: BLE001 - any failure is kept on the row and retried
        error = str(exc)[:1000] or type(exc).__name__
        status = Delivery.Status.FAILED if final else Delivery.Status.PENDING
        Delivery.objects.filter(pk=d.pk, claim_token=token).update(
            attempts=attempts,
            last_error=error,
            status=status,
            claim_token="",
            claimed_until=None,
            next_attempt_at=now + backoff(attempts),
        )
        log.warning("notification %s to %s failed (attempt %s): %s", d.pk, d.channel or d.subscription, attempts, error)
        return "failed" if status == Delivery.Status.FAILED else "retry"
    Delivery.objects.filter(pk=d.pk, claim_token=token).update(
        attempts=attempts,
        status=Delivery.Status.SENT,
        sent_at=timezone.now(),
        last_error="",
        claim_token="",
        claimed_until=None,
    )
    return "sent"


def send_test(channel: NotificationChannel) -> Delivery:
    """The staff screen's "send test": a ``test`` delivery through the same path, sent now."""
    d = Delivery.objects.create(channel=channel, event=Delivery.Event.TEST)
    deliver(d.pk)
    d.refresh_from_db()
    return d
