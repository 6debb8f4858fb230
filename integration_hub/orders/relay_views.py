"""The Pub/Sub push endpoint for commercetools order notifications (see :mod:`.relays`). Thin: verify, parse, queue."""
from __future__ import annotations

import logging

from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors import errors
from connectors.commercetools import CommercetoolsConnector
from integration_hub.core.models import Connection

from . import relays

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def pubsub_push(request, name: str):
    """200 when the message's orders are queued for a fetch (Pub/Sub acks), 401 for a token that is not the relay's,
    400 for a body that is not a push envelope of a ct payload, 404 without such a relay, 503 when Google's certs
    cannot be fetched (Pub/Sub retries)."""
    from google.auth import exceptions as google_exceptions

    conn = Connection.objects.filter(name=name, system_type="commercetools", enabled=True).first()
    cfg = relays.relay_config(conn) if conn else {}
    if conn is None or cfg.get("type") != "GoogleCloudPubSub":
        return JsonResponse({"error": f"no commercetools connection {name!r} with a Pub/Sub relay"}, status=404)
    try:
        relays.verify_pubsub_token(request.headers.get("Authorization", ""), cfg)
    except relays.RelayAuthError as exc:
        log.warning("Pub/Sub push for %s refused: %s", conn.name, exc)
        return JsonResponse({"error": "unauthorized"}, status=401)
    except google_exceptions.TransportError as exc:
        return JsonResponse({"error": f"cannot fetch the signing certs now: {exc}"}, status=503)
    try:
        payload, message_id = relays.parse_pubsub(request.body)
        ids, changed = CommercetoolsConnector.order_hints(payload)
    except (ValueError, errors.BadDataError) as exc:
        return JsonResponse({"error": f"payload not understood: {exc}"}, status=400)
    with transaction.atomic():
        relays.queue_fetch(conn, ids, changed)
    return JsonResponse({"messageId": message_id, "to_fetch": len(ids), "to_refresh": len(changed)})
