"""Signed stock webhooks from inventory masters: ``POST /hooks/stock/<connection name>/``.

Thin edge: authenticate (the connector's ``verify_webhook`` — HMAC ``X-Hub-Signature`` by default, each
signature accepted once: a replay inside the window answers 401 and changes nothing; a connection without a
webhook secret refuses everything), parse JSON, let the connector turn the payload into StockChange rows, and hand them to
:func:`integration_hub.inventory.services.apply_stock_changes`. 401 bad signature, 400 malformed body
(also recorded as a ``bad_payload`` exception), 200 with the counts otherwise.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors import errors
from exceptions_app import kinds
from exceptions_app.services import raise_exception
from integration_hub.core import jsonsafe, misconfig
from integration_hub.core.models import Connection, MASTER_SYSTEMS

from .services import apply_stock_changes

log = logging.getLogger(__name__)


def _bad(conn: Connection, reason: str, body: bytes) -> JsonResponse:
    raise_exception("bad_payload", kinds.key("bad_payload", conn.name, "stock-webhook", "unparseable"),
                    f"Unreadable stock webhook from {conn.name}", message=reason, connection=conn,
                    context={"body_excerpt": body[:500].decode("utf-8", "replace"), "action": "check_sender"})
    return JsonResponse({"error": reason}, status=400)


@csrf_exempt
@require_POST
@transaction.atomic  # the accepted signature (replay cache) is recorded with the changes: a failed request frees it
def stock_webhook(request, name: str):
    from connectors.registry import get_connector

    conn = Connection.objects.filter(name=name, enabled=True, system_type__in=list(MASTER_SYSTEMS)).first()
    if conn is None:
        raise Http404("no such inventory master")
    try:
        connector = get_connector(conn)
    except errors.ConfigurationError as exc:
        return misconfig.webhook_response(conn, exc, "stock-webhook")
    body = request.body
    if not connector.verify_webhook(body, request.headers):
        return JsonResponse({"error": "bad signature"}, status=401)
    try:
        payload = jsonsafe.loads(body)  # bounded nesting: too deep is a ValueError (400), never a RecursionError
    except (ValueError, UnicodeDecodeError) as exc:
        return _bad(conn, f"malformed JSON: {exc}", body)
    try:
        changes = connector.parse_stock_webhook(payload)
    except NotImplementedError:
        return JsonResponse({"error": f"{conn.system_type} does not push stock"}, status=400)
    except (errors.BadDataError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return _bad(conn, f"payload not understood: {exc}", body)
    result = apply_stock_changes(conn, changes, source="stock-webhook")
    return JsonResponse(result.as_dict())
