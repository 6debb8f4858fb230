"""commercetools order notifications through the relays a Subscription can really deliver to.

commercetools Subscriptions have no HTTP Destination (API reference, ``Destination``: GoogleCloudPubSub, SQS, SNS,
EventBridge, EventGrid, AzureServiceBus, ConfluentCloud, IronMQ). The hub reads two of them:

* **Google Cloud Pub/Sub push** — ct publishes to a topic; a push subscription POSTs each message to
  ``/hooks/orders/<connection>/pubsub/`` in the push envelope ``{"message": {"data": base64(ct Message),
  "attributes", "messageId", "publishTime"}, "subscription"}``, with the Google-signed OIDC token of the
  subscription's service account as ``Authorization: Bearer`` (cloud.google.com/pubsub/docs/push,
  /authenticate-push-subscriptions). :func:`verify_pubsub_token` checks signature (Google's certs), issuer,
  audience and service-account email with google-auth.
* **AWS SQS** — ct sends each Message as a message body; :func:`consume_sqs` long-polls the queue (boto3) from a
  worker task and deletes a message only after its effect is committed.

Either way a message is only a *hint*: the order ids it names are taken (:meth:`CommercetoolsConnector.order_hints`)
and the order is read from the ct API before anything is captured (``polls.fetch_and_capture``). Relays deliver
at least once and out of order; a duplicate or late message re-reads the order's *current* state, and capture,
returns and cancellations are idempotent on the order / return ids, so nothing changes twice. The order poll stays
the safety net for anything a relay loses.

Configuration: ``Connection.options["relay"]`` — ``{"type": "GoogleCloudPubSub", "projectId", "topic", "audience",
"service_account", "certs_url"?}`` or ``{"type": "SQS", "queueUrl", "region", "authenticationMode": "IAM",
"endpoint_url"?}`` (see README).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from typing import ClassVar

from django.db import transaction

from connectors import errors
from connectors.commercetools import CommercetoolsConnector
from integration_hub.core import nudge
from integration_hub.core.models import Connection

from . import polls

log = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CERTS_CACHE_SECONDS = 300
SQS_BATCH = 10  # SQS ReceiveMessage maximum


class RelayAuthError(Exception):
    """The push request is not from the configured Pub/Sub subscription."""


def relay_config(conn: Connection) -> dict:
    return dict((conn.options or {}).get("relay") or {})


# --- Pub/Sub push --------------------------------------------------------------------------------------
class _CachingRequest:
    """google-auth transport that keeps Google's signing certs for a few minutes (not one fetch per push)."""

    _cache: ClassVar[dict[str, tuple[float, object]]] = {}
    _lock = threading.Lock()

    def __init__(self):
        from google.auth.transport.requests import Request

        self._inner = Request()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kw):
        if method != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kw)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
            if hit and hit[0] > now:
                return hit[1]
        resp = self._inner(url, method=method, body=body, headers=headers, timeout=timeout or 10, **kw)
        if resp.status == 200:
            with self._lock:
                self._cache[url] = (now + CERTS_CACHE_SECONDS, resp)
        return resp


def verify_pubsub_token(authorization: str, cfg: dict, request=None) -> dict:
    """The claims of the push request's OIDC token, or RelayAuthError: RS256 signature by a Google cert
    (``cfg["certs_url"]``, default Google's), not expired, ``aud`` = ``cfg["audience"]``, ``iss`` Google,
    ``email`` = ``cfg["service_account"]`` and verified."""
    from google.auth import exceptions as google_exceptions
    from google.oauth2 import id_token

    if not cfg.get("audience") or not cfg.get("service_account"):
        raise RelayAuthError("the Pub/Sub relay needs options.relay.audience and options.relay.service_account")
    if not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
        raise RelayAuthError("no bearer token")
    try:
        claims = id_token.verify_token(
            authorization[7:].strip(),
            request or _CachingRequest(),
            audience=cfg["audience"],
            certs_url=cfg.get("certs_url") or GOOGLE_CERTS_URL,
            clock_skew_in_seconds=10,
        )
    except google_exceptions.TransportError:
        raise  # the certs could not be fetched: not the sender's fault (503)
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        raise RelayAuthError(f"token rejected: {exc}") from exc
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise RelayAuthError(f"issuer {claims.get('iss')!r} is not Google")
    if claims.get("email") != cfg["service_account"] or not claims.get("email_verified"):
        raise RelayAuthError(f"token of {claims.get('email')!r}, not the relay's service account")
    return claims


def parse_pubsub(body: bytes) -> tuple[dict | list, str]:
    """The Pub/Sub push envelope → (the ct payload in ``message.data``, ``messageId``); ValueError if it is not one."""
    try:
        envelope = json.loads(body or b"null")
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise ValueError("not a Pub/Sub push envelope (message.data missing)")  # noqa: TRY004 (bad input, a 400)
    try:
        data = base64.b64decode(message["data"], validate=True)
        payload = json.loads(data)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"message.data is not base64 JSON: {exc}") from exc
    return payload, str(message.get("messageId") or message.get("message_id") or "")


def queue_fetch(conn: Connection, ids: list[str], changed: list[str]) -> None:
    """Fetch (and capture) the named orders after the current transaction commits."""
    if not ids and not changed:
        return
    transaction.on_commit(
        lambda: nudge.enqueue(
            "orders.fetch_orders",
            args=[conn.pk, list(ids)],
            kwargs={"refresh_ids": list(changed)},
            queue="priority",
            retry=False,
        )
    )


# --- SQS -----------------------------------------------------------------------------------------------
def sqs_client(cfg: dict):
    import boto3

    return boto3.client("sqs", region_name=cfg["region"], endpoint_url=cfg.get("endpoint_url") or None)


def consume_sqs(conn: Connection, *, wait_seconds: int = 20, time_budget: float = 25.0, client=None) -> dict:
    """Long-poll the connection's SQS queue until it is empty or ``time_budget`` is used. Each batch: the ids
    its messages name are fetched and captured (``polls.fetch_and_capture``, committed when it returns), then
    only the messages whose effect is there are deleted — every named order is now in the hub (re-reads are
    done by then). A message whose order could not be fetched stays: it comes back after the visibility
    timeout (the poll may get there first; either way once). A body that is not a ct payload is left for the
    queue's redrive policy (dead-letter queue) and logged."""
    from .models import Order

    cfg = relay_config(conn)
    if cfg.get("type") != "SQS" or not cfg.get("queueUrl") or not cfg.get("region"):
        raise errors.PermanentError(f"connection {conn.name} has no SQS relay (options.relay)")
    client = client or sqs_client(cfg)
    out = {"received": 0, "deleted": 0, "kept": 0, "unreadable": 0}
    deadline = time.monotonic() + time_budget
    while True:
        resp = client.receive_message(
            QueueUrl=cfg["queueUrl"],
            MaxNumberOfMessages=SQS_BATCH,
            WaitTimeSeconds=wait_seconds,
            MessageAttributeNames=["All"],
        )
        batch = resp.get("Messages") or []
        if not batch:
            return out
        out["received"] += len(batch)
        hints = []
        for m in batch:
            try:
                hints.append((m, *CommercetoolsConnector.order_hints(json.loads(m.get("Body") or ""))))
            except (ValueError, errors.BadDataError) as exc:
                out["unreadable"] += 1
                log.error(
                    "SQS message %s on %s is not a commercetools payload (left for the dead-letter queue): %s",
                    m.get("MessageId"),
                    conn.name,
                    exc,
                )
        ids = list(dict.fromkeys(i for _, named, _ in hints for i in named))
        changed = list(dict.fromkeys(i for _, _, c in hints for i in c))
        if ids or changed:
            polls.fetch_and_capture(conn, ids, refresh_ids=changed)
        have = set(
            Order.objects.filter(channel__connection=conn, external_id__in=ids + changed).values_list(
                "external_id", flat=True
            )
        )
        done = [m for m, named, c in hints if all(i in have for i in named + c)]
        out["kept"] += len(hints) - len(done)
        if done:
            client.delete_message_batch(
                QueueUrl=cfg["queueUrl"],
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
            )
            out["deleted"] += len(done)
        if time.monotonic() >= deadline:
            return out


def consume_all_sqs(**kw) -> dict:
    """Every enabled commercetools connection with an SQS relay (beat job)."""
    out = {}
    for conn in Connection.objects.filter(enabled=True, system_type="commercetools").order_by("pk"):
        if relay_config(conn).get("type") == "SQS":
            try:
                out[conn.name] = consume_sqs(conn, **kw)
            except Exception as exc:  # one broken queue must not stop the others; the poll catches up
                log.exception("SQS relay of %s failed", conn.name)
                out[conn.name] = {"error": str(exc)[:300]}
    return out
