"""Returns the polled storefront orders carry → ``planning.ReturnLine`` rows for the planner."""

from __future__ import annotations

from connectors import errors
from exceptions_app.services import clear, raise_many
from integration_hub.core.models import Connection

from . import keys, remote
from .problems import unreadable_returns


def record_storefront_returns(connection: Connection, pairs) -> int:
    """Returns the polled orders carry (connector ``storefront_returns``) → ``planning.ReturnLine`` through
    :func:`integration_hub.planning.services.record_returns`, one row per storefront return item keyed
    ``<order key>/<return item ref>``: the same item read on every later poll is the same row, and an item
    that moved on (advised → received → back in stock / unusable) updates it. Return entries the connector
    cannot read become one ``bad_payload:<connection>:returns:<order key>`` record per order listing them
    (the order and its other returns still go through); it is cleared when the order's returns next read
    cleanly. No queries when the batch carries no returns."""
    try:
        finder = getattr(remote.connector(connection), "storefront_returns", None)
    except errors.ConnectorError:
        return 0
    if finder is None:
        return 0
    from connectors.parsing import ParsedBatch, RejectedRow

    rows, problems, clean = [], [], []
    for ch, so in pairs:
        try:
            batch = finder(so)
        except NotImplementedError:
            return 0
        except errors.BadDataError as exc:
            batch = ParsedBatch([], [RejectedRow(0, so.external_id, "order", str(exc)[:500])])
        key = keys.order_key(ch, so.external_id)
        bad = keys.bad_key(connection.name, "returns", key)
        if batch.rejected:
            problems.append(unreadable_returns(connection, ch, so, key, bad, batch))
        elif len(batch):
            clean.append(bad)
        rows += [
            {
                "external_ref": f"{key}/{r.return_ref}",
                "order_ref": key,
                "line_id": r.line_id,
                "quantity": r.quantity,
                "condition": r.condition,
                "returned_at": r.returned_at,
            }
            for r in batch
        ]
    if not rows and not problems:
        return 0
    from integration_hub.planning.services import record_returns

    stored = record_returns(rows, source=connection.name) if rows else 0
    if problems:
        raise_many(problems)
    if clean:
        clear(clean, reason="the order's returns read cleanly")
    return stored
