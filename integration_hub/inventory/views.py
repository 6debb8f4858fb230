"""Signed stock webhooks from inventory masters: ``POST /hooks/stock/<connection name>/``.

Thin edge (the steps are :class:`integration_hub.core.webhooks.Inbound`): authenticate (the connector's
``verify_webhook`` — HMAC ``X-Hub-Signature`` by default, each signature accepted once: a replay inside the window
answers 401 and changes nothing; a connection without a webhook secret refuses everything), parse JSON, let the
connector turn the payload into StockChange rows, and hand them to
:func:`integration_hub.inventory.services.apply_stock_changes`. 401 bad signature, 400 malformed body
(also recorded as a ``bad_payload`` exception), 200 with the counts otherwise.
"""

from __future__ import annotations

from integration_hub.core.models import MASTER_SYSTEMS
from integration_hub.core.webhooks import Inbound

from .services import apply_stock_changes

stock_webhook = Inbound(
    "stock-webhook",
    MASTER_SYSTEMS,
    pushes="stock",
    title="Unreadable stock webhook from {name}",
    not_found="no such inventory master",
    parse=lambda connector, payload: connector.parse_stock_webhook(payload),
    handle=lambda conn, changes: apply_stock_changes(conn, changes, source="stock-webhook").as_dict(),
).view()
