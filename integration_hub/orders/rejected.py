"""Storefront orders a connector could not read → ``bad_payload`` records: the one place they are filed.

A storefront connector's ``orders_since`` returns a :class:`connectors.parsing.ParsedBatch`: the orders it read,
plus ``rejected`` rows for the ones it could not (it never files records itself). The capture that consumes the
batch (:func:`integration_hub.orders.capture.capture_many`) files each rejected order here, one record per order
(``bad_payload:<connection>:order:<order id>``), so one malformed order never stalls the orders behind it; any
later change in the storefront brings it back through the same poll, and it is captured then.
"""

from __future__ import annotations

import json

from connectors.parsing import RejectedRow
from exceptions_app import kinds
from exceptions_app.services import Problem


def order_problems(connection, rejected: list[RejectedRow]) -> list[Problem]:
    """One ``bad_payload`` problem per rejected storefront order row (same key as an order the capture refuses)."""
    system = connection.get_system_type_display()
    return [
        Problem(
            "bad_payload",
            kinds.key("bad_payload", connection.name, "order", row.ref),
            f"Order {row.name or row.ref} from {connection.name} cannot be read",
            message=f"{row.message}. Fix the order in {system} (any change brings it back into the poll).",
            context={
                "order_id": row.ref,
                "order_number": row.name,
                "error": row.message[:500],
                "payload": json.dumps(row.raw, default=str)[:2000],
                "action": "check_order",
            },
            connection_id=connection.pk,
            order_ref=row.ref,
        )
        for row in rejected
    ]
