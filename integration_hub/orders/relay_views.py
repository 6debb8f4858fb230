"""The Pub/Sub push endpoint for commercetools order notifications (see :mod:`.relays`). Thin: verify, parse, queue.

The steps are :class:`integration_hub.core.webhooks.Inbound`'s, with the ones a push relay does differently: the
connection must have a Pub/Sub relay (404 with a JSON answer), the sender is Google (its OIDC token, not the
connector's ``verify_webhook``: 401 for a token that is not the relay's, 503 when Google's certs cannot be fetched —
Pub/Sub retries), the body is a push envelope (400 for one that is not an envelope of a ct payload; no exception
record: the relay, not the storefront, sent it), and only the queueing runs in a transaction.
"""

from __future__ import annotations

import logging

from django.db import transaction

from connectors import errors
from connectors.commercetools import CommercetoolsConnector
from integration_hub.core.models import Connection
from integration_hub.core.webhooks import Inbound, refuse

from . import relays

log = logging.getLogger(__name__)


class PubSubPush(Inbound):
    """200 when the message's orders are queued for a fetch (Pub/Sub acks): ``{"messageId", "to_fetch", "to_refresh"}``."""

    atomic = False  # the token check may fetch Google's certs: only the queueing is in a transaction

    def __init__(self):
        super().__init__("order-pubsub-push", {"commercetools"}, pushes="orders", parse=None, handle=None)

    def find(self, name: str) -> Connection:
        conn = Connection.objects.filter(name=name, system_type="commercetools", enabled=True).first()
        if conn is None or relays.relay_config(conn).get("type") != "GoogleCloudPubSub":
            raise refuse(404, f"no commercetools connection {name!r} with a Pub/Sub relay")
        return conn

    def connector(self, conn: Connection):
        return None  # the message only names orders (CommercetoolsConnector.order_hints); nothing is called here

    def verify(self, request, conn: Connection, connector) -> None:
        from google.auth import exceptions as google_exceptions

        try:
            relays.verify_pubsub_token(request.headers.get("Authorization", ""), relays.relay_config(conn))
        except relays.RelayAuthError as exc:
            log.warning("Pub/Sub push for %s refused: %s", conn.name, exc)
            raise refuse(401, "unauthorized") from exc
        except google_exceptions.TransportError as exc:
            raise refuse(503, f"cannot fetch the signing certs now: {exc}") from exc

    def read(self, request, conn: Connection):
        return request.body

    def parse(self, request, conn: Connection, connector, body):
        try:
            payload, message_id = relays.parse_pubsub(body)
            ids, changed = CommercetoolsConnector.order_hints(payload)
        except (ValueError, errors.BadDataError) as exc:
            raise refuse(400, f"payload not understood: {exc}") from exc
        return message_id, ids, changed

    def handle(self, conn: Connection, parsed) -> dict:
        message_id, ids, changed = parsed
        with transaction.atomic():
            relays.queue_fetch(conn, ids, changed)
        return {"messageId": message_id, "to_fetch": len(ids), "to_refresh": len(changed)}


pubsub_push = PubSubPush().view()
