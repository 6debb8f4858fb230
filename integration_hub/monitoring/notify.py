"""Sending one notification to one channel: email, Slack, Microsoft Teams, or a signed generic webhook.

Formats, from the published documents:

* Slack incoming webhooks: ``POST`` JSON with a ``text`` field (mrkdwn) — https://api.slack.com/messaging/webhooks
* Microsoft Teams incoming webhooks / Workflows "when a Teams webhook request is received": ``POST``
  ``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
  "content": <Adaptive Card>}]}`` — https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
  ("Send Adaptive Cards using an Incoming Webhook")
* generic webhook: the hub's own JSON, signed like inbound hooks (``X-Hub-Signature: t=<unix>,v1=<hex
  HMAC-SHA256(secret, "<t>." + body)>``, :func:`connectors.signatures.sign`), with ``X-Hub-Delivery``
  (the delivery id: a receiver that deduplicates on it never acts twice) and ``X-Hub-Event``.
* email: Django's mail backend (SMTP settings from the environment, see settings ``EMAIL_*``).

Every outbound HTTP request goes through :func:`post_json` (timeouts, the client layer's pooled session).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage

from connectors import egress
from connectors import signatures

from .models import NotificationChannel

log = logging.getLogger(__name__)

TIMEOUT = (5.0, 10.0)  # connect, read
SEVERITY_COLOUR = {"warning": "warning", "error": "attention", "critical": "attention", "": "good"}


class SendError(Exception):
    """The channel did not take the message (retried by the outbox)."""


@dataclass
class Message:
    event: str  # fired | recovered | test
    title: str
    text: str
    severity: str = ""
    payload: dict | None = None  # the machine-readable form (generic webhook body)
    delivery_id: int | None = None
    attachments: list | None = None  # e-mail: (filename, bytes, mimetype)


def send_email(recipients: list[str], msg: Message) -> None:
    """One e-mail through Django's mail backend (SMTP from the environment, settings ``EMAIL_*``)."""
    if not recipients:
        raise SendError("no recipients configured")
    try:
        email = EmailMessage(f"[Integration Hub] {msg.title}", msg.text, settings.DEFAULT_FROM_EMAIL, recipients)
        for name, content, mimetype in msg.attachments or []:
            email.attach(name, content, mimetype)
        email.send(fail_silently=False)
    except Exception as exc:  # SMTP errors, refused connection: retried by the outbox
        raise SendError(f"{type(exc).__name__}: {exc}"[:500]) from exc


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a channel URL: Slack and Teams webhook URLs carry their secret in the path
    (and query), so no error text, log line or screen ever shows more than this."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}"


def post_json(url: str, body: bytes, headers: dict | None = None) -> int:
    """The one place notifications leave the hub over HTTP. Raises :class:`SendError` unless 2xx.

    The error text is kept on the delivery and shown to ops: it names the origin, the exception class or the
    status — never the URL's path (a webhook URL's secret) or what the remote answered (logged instead;
    response bodies of outbound calls are for admins, as ``Connection.last_error_detail``)."""
    import requests

    from connectors import errors
    from connectors.http import pooled_session

    if not url or not url.lower().startswith(("http://", "https://")):
        raise SendError("no http(s) URL configured")
    where = origin(url)
    session = pooled_session("monitoring-notify", pool_size=4)
    try:
        resp = session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **(headers or {})},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise SendError(f"{type(exc).__name__} posting to {where}") from None
    except errors.UnsafeDestinationError as exc:  # the outbound guard (connectors/egress.py): internal address
        raise SendError(str(exc).replace(egress.display_url(url), where)[:500]) from None
    if not 200 <= resp.status_code < 300:
        log.warning("notification POST to %s answered HTTP %s: %s", where, resp.status_code, resp.text[:300])
        raise SendError(f"HTTP {resp.status_code} from {where}")
    return resp.status_code


def send(channel: NotificationChannel, msg: Message) -> None:
    kind = channel.kind
    if kind == NotificationChannel.Kind.EMAIL:
        send_email(channel.email_recipients(), msg)
        return
    if kind == NotificationChannel.Kind.SLACK:
        body = {"text": f"*{msg.title}*\n{msg.text}"}
        post_json(channel.get_url(), json.dumps(body).encode())
        return
    if kind == NotificationChannel.Kind.TEAMS:
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "text": msg.title,
                    "weight": "Bolder",
                    "size": "Medium",
                    "wrap": True,
                    "color": SEVERITY_COLOUR.get(msg.severity if msg.event == "fired" else "", "default"),
                },
                {"type": "TextBlock", "text": msg.text, "wrap": True},
            ],
        }
        body = {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
            ],
        }
        post_json(channel.get_url(), json.dumps(body).encode())
        return
    if kind == NotificationChannel.Kind.WEBHOOK:
        secret = channel.get_secret()
        if not secret:
            raise SendError("no signing secret configured")
        body = json.dumps(
            msg.payload or {"event": msg.event, "title": msg.title, "text": msg.text}, sort_keys=True
        ).encode()
        post_json(
            channel.get_url(),
            body,
            {
                signatures.HEADER: signatures.sign(secret, body),
                "X-Hub-Delivery": str(msg.delivery_id or ""),
                "X-Hub-Event": msg.event,
            },
        )
        return
    raise SendError(f"unknown channel kind {kind!r}")
