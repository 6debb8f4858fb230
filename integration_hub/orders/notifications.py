"""Inbound order notifications are hints, never orders.

Whatever carries them — a storefront's webhook (commercetools HTTP Subscription destination, an SFCC hook
script), or a relay of a message queue destination — a notification can only *name* orders: the hub takes
the ids and reads each order from the storefront's own API before capturing it
(:func:`integration_hub.orders.polls.fetch_and_capture`, run by the ``orders.fetch_orders`` task after
the commit). A message carrying a whole order (commercetools ``OrderCreated`` embeds one) is not trusted
for its content: a static ``Authorization`` header authenticates neither body nor time, so a captured header
would otherwise let anyone have an invented order sent to the warehouse. An id the storefront does not know
captures nothing and becomes a ``bad_payload`` record.

:func:`queue_hints` is the entry point for every source: parse the message into hints (the connector's
``parse_order_webhook``: order ids, and :class:`connectors.base.OrderChanged` for orders to re-read even when
the hub has them), then call it inside the request's transaction. It runs no query and no storefront call,
so the sender gets its answer in a fixed, small number of queries.
"""

from __future__ import annotations

from django.db import transaction

from connectors.base import OrderChanged, ProductChanged
from integration_hub.core import nudge

MAX_PRODUCT_SKUS = 500  # SKUs one notification may have checked


def split_hints(hints) -> tuple[list[str], list[str]]:
    """(ids to fetch when the hub lacks them, ids to re-read even when it has them), deduplicated in order.
    An order object among the hints (a connector that still returns one) contributes its id only."""
    hints = list(hints)
    changed = list(dict.fromkeys(h.external_id for h in hints if isinstance(h, OrderChanged)))
    named = []
    for h in hints:
        if isinstance(h, str):
            named.append(h)
        elif not isinstance(h, OrderChanged) and isinstance(getattr(h, "external_id", None), str):
            named.append(h.external_id)
    skip = set(changed)
    return [i for i in dict.fromkeys(named) if i and i not in skip], [i for i in changed if i]


def queue_hints(connection, hints) -> dict:
    """Queue the storefront read of every order the hints name (after the current transaction commits;
    ``priority`` queue). Returns ``{"to_fetch": n, "to_refresh": m}``."""
    hints = list(hints)
    products = [h for h in hints if isinstance(h, ProductChanged)]
    ids, changed = split_hints([h for h in hints if not isinstance(h, ProductChanged)])
    out = {"to_fetch": len(ids), "to_refresh": len(changed)}
    if products:  # new SKUs on the storefront: the catalogue check runs now, not at the nightly audit (issue 17)
        from integration_hub.catalog.tasks import check_storefront_skus

        skus = list(dict.fromkeys(s for h in products for s in h.skus))[:MAX_PRODUCT_SKUS]
        if skus:
            pk = connection.pk
            transaction.on_commit(lambda: check_storefront_skus.apply_async(args=[pk, skus], retry=False))
        out["products"] = len(products)
    if ids or changed:
        pk = connection.pk
        transaction.on_commit(
            lambda: nudge.enqueue(
                "orders.fetch_orders", args=[pk, ids], kwargs={"refresh_ids": changed}, queue="priority", retry=False
            )
        )
    return out
