"""Signed inbound webhooks of the order flow (thin edges; the rules are in the phase modules).

``POST /hooks/orders/<connection name>/``   storefront subscription (commercetools OrderCreated, return and
    cancellation Messages; SFCC hook posts naming order numbers; authenticated by the connector's
    ``verify_webhook`` — the static ``Authorization`` header for ct, HMAC ``X-Hub-Signature`` otherwise).
    Every message is only a hint (:mod:`.notifications`): the order ids it names are queued for a read from
    the storefront's API (orders the hub lacks; ``OrderChanged`` — a return booked or moved on, a
    cancellation — re-read even when the hub has it), never captured from the message body. The worker
    fetches, captures, validates and sends after the commit, so the storefront gets its 200 quickly (a fixed
    number of queries, no storefront call) even in a flash sale. Other messages are acknowledged and ignored.
    The answer is ``{"to_fetch": n, "to_refresh": m}``.
``POST /hooks/dispatch/<connection name>/`` warehouse dispatch confirmations (HMAC ``X-Hub-Signature``).

401 bad signature; 400 unreadable body (also a ``bad_payload`` exception record); 404 unknown connection;
503 when the storefront could not be asked about the message (the sender retries; the poll catches up).
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors import errors
from exceptions_app.services import make_key, raise_exception
from integration_hub.core import jsonsafe, misconfig
from integration_hub.core.models import MASTER_SYSTEMS, STOREFRONT_SYSTEMS, Connection

from . import dispatch, notifications

log = logging.getLogger(__name__)


def _bad(conn: Connection, source: str, reason: str, body: bytes) -> JsonResponse:
    raise_exception("bad_payload", make_key("bad_payload", conn.name, source, "unparseable"),
                    f"Unreadable {source} from {conn.name}", message=reason, connection=conn,
                    context={"body_excerpt": body[:500].decode("utf-8", "replace"), "action": "check_sender"})
    return JsonResponse({"error": reason}, status=400)


def _connection(name: str, systems) -> Connection:
    conn = Connection.objects.filter(name=name, enabled=True, system_type__in=list(systems)).first()
    if conn is None:
        raise Http404("no such connection")
    return conn


def _payload(connector, request):
    """(payload, None) or (None, error response)."""
    if not connector.verify_webhook(request.body, request.headers):
        return None, JsonResponse({"error": "bad signature"}, status=401)
    try:
        return jsonsafe.loads(request.body), None  # bounded nesting: too deep is a ValueError (400)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, _bad(connector.connection, f"{'order' if connector.connection.is_storefront else 'dispatch'}-webhook",
                          f"malformed JSON: {exc}", request.body)


@csrf_exempt
@require_POST
@transaction.atomic  # the accepted signature is recorded with what the request did: a failed request frees it
def order_webhook(request, name: str):
    from connectors.registry import get_connector

    conn = _connection(name, STOREFRONT_SYSTEMS)
    try:
        connector = get_connector(conn)
    except errors.ConfigurationError as exc:
        return misconfig.webhook_response(conn, exc, "order-webhook")
    payload, error = _payload(connector, request)
    if error is not None:
        return error
    try:
        parsed = connector.parse_order_webhook(payload)
    except NotImplementedError:
        return JsonResponse({"error": f"{conn.system_type} does not push orders"}, status=400)
    except (errors.BadDataError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return _bad(conn, "order-webhook", f"payload not understood: {exc}", request.body)
    except errors.ConnectorError as exc:  # e.g. resolving channel ids failed: the sender retries, the poll catches up
        log.warning("order webhook from %s could not be processed now: %s", conn.name, exc)
        return JsonResponse({"error": f"temporarily unavailable: {exc}"}, status=503)
    return JsonResponse(notifications.queue_hints(conn, parsed))  # the reads are queued as the view's transaction commits


@csrf_exempt
@require_POST
@transaction.atomic
def dispatch_webhook(request, name: str):
    from connectors.registry import get_connector

    conn = _connection(name, MASTER_SYSTEMS)
    try:
        connector = get_connector(conn)
    except errors.ConfigurationError as exc:
        return misconfig.webhook_response(conn, exc, "dispatch-webhook")
    payload, error = _payload(connector, request)
    if error is not None:
        return error
    try:
        dispatches = connector.parse_dispatch_webhook(payload)
    except NotImplementedError:
        return JsonResponse({"error": f"{conn.system_type} does not push dispatches"}, status=400)
    except (errors.BadDataError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return _bad(conn, "dispatch-webhook", f"payload not understood: {exc}", request.body)
    result = dispatch.record_dispatches(conn, dispatches, source="dispatch-webhook")
    return JsonResponse(result.as_dict())
