"""Signed inbound webhooks of the order flow (thin edges: the steps are :class:`integration_hub.core.webhooks.Inbound`,
the rules are in the phase modules, e.g. :mod:`.dispatch`).

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

from integration_hub.core.models import MASTER_SYSTEMS, STOREFRONT_SYSTEMS
from integration_hub.core.webhooks import Inbound

from . import dispatch, notifications

order_webhook = Inbound(
    "order-webhook",
    STOREFRONT_SYSTEMS,
    pushes="orders",
    retry_later=True,
    parse=lambda connector, payload: connector.parse_order_webhook(payload),
    handle=lambda conn, hints: notifications.queue_hints(conn, hints),  # queued as the transaction commits
).view()

dispatch_webhook = Inbound(
    "dispatch-webhook",
    MASTER_SYSTEMS,
    pushes="dispatches",
    parse=lambda connector, payload: connector.parse_dispatch_webhook(payload),
    handle=lambda conn, dispatches: dispatch.record_dispatches(conn, dispatches, source="dispatch-webhook").as_dict(),
).view()
