"""Polls behind the webhooks: storefront orders and warehouse dispatches since a cursor per connection (the cursor
advances in the same transaction as what it read), and the fetch of orders a notification only named.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from connectors import errors
from exceptions_app.services import raise_many
from integration_hub.core.models import Connection, SyncCursor

from . import remote
from .capture import CaptureResult, capture_many
from .dispatch import record_dispatches
from .models import Order
from .problems import unknown_notified_order
from .send import repair_exports

log = logging.getLogger(__name__)


ORDERS_STREAM = "orders"
DISPATCH_STREAM = "dispatches"
# a catch-up poll's first page is small and each next one twice the size, up to the page size: with a backlog the
# worker (kicked by the first page's commit) starts sending after FIRST_PAGE orders are captured, not a full page
FIRST_PAGE = 50
DISPATCH_PAGE = 500  # a warehouse connector without a page size of its own


def page_sizes(page_size: int, first: int = FIRST_PAGE):
    """``first``, 2 × ``first``, … capped at ``page_size``, then ``page_size`` for good."""
    size = max(1, min(first, page_size))
    while True:
        yield size
        size = min(size * 2, page_size)


def sync_cursor(conn: Connection, stream: str) -> SyncCursor:
    return SyncCursor.objects.get_or_create(connection=conn, stream=stream)[0]


def poll_orders(connection: Connection, max_pages: int = 20, page_size: int = 500) -> dict:
    """Catch-up: capture storefront orders modified since the stored cursor, in pages growing from
    :data:`FIRST_PAGE` to ``page_size`` (:func:`page_sizes`). The cursor advances in the same transaction as the
    capture, so a crash re-reads the page (captures are idempotent)."""
    connector = remote.connector(connection)
    cur = sync_cursor(connection, ORDERS_STREAM)
    totals = {"pages": 0, "created": 0, "existing": 0, "rejected": 0, "returns": 0}
    value = cur.value
    for _, size in zip(range(max_pages), page_sizes(page_size)):
        page = connector.orders_since(value, limit=size)
        with transaction.atomic():
            r = capture_many(connection, page.items, source="poll")
            SyncCursor.objects.filter(pk=cur.pk).update(value=page.cursor or value, updated_at=timezone.now())
        repair_exports(connection, page.items)
        totals["pages"] += 1
        totals["created"] += len(r.created)
        totals["existing"] += r.existing
        totals["rejected"] += r.rejected
        totals["returns"] += r.returns
        value = page.cursor or value
        if not page.has_more:
            break
    return totals


def poll_dispatches(connection: Connection, max_pages: int = 20) -> dict:
    """Catch-up: record warehouse dispatches since the stored cursor, in pages growing from :data:`FIRST_PAGE` to
    the connector's page size (the notify phase starts on the first page's orders while the rest is read)."""
    connector = remote.connector(connection)
    cur = sync_cursor(connection, DISPATCH_STREAM)
    totals = defaultdict(int)
    value = cur.value
    sizes = page_sizes(int(getattr(connector, "page_size", 0) or DISPATCH_PAGE))
    for _, size in zip(range(max_pages), sizes):
        page = connector.dispatches_since(value, limit=size)
        with transaction.atomic():
            r = record_dispatches(connection, page.items, source="dispatch-poll")
            SyncCursor.objects.filter(pk=cur.pk).update(value=page.cursor or value, updated_at=timezone.now())
        totals["pages"] += 1
        for k, v in r.as_dict().items():
            totals[k] += v
        value = page.cursor or value
        if not page.has_more:
            break
    return dict(totals)


def fetch_and_capture(connection: Connection, external_ids: list[str], refresh_ids: list[str] = ()) -> CaptureResult:
    """Orders a subscription only named (change notifications): fetch each the hub does not have yet and
    capture it. ``refresh_ids``: orders a message said changed in a way the hub mirrors (a return booked or
    moved on, a cancellation): each is re-read (one GET) even when the hub has it, and goes through
    :func:`.capture.capture_many` like a polled order — returns by :func:`.returns.record_storefront_returns` (upserted per
    return item, so the same message twice, or the poll reading the same order later, counts nothing twice),
    storefront cancellations and fulfilments likewise. A fetch that fails is logged and left to the poll
    (the change bumped the order's lastModifiedAt, so the poll brings it back). An id the storefront answers
    404 for — it never issued that order (a forged or mistaken message) — captures nothing and becomes a
    ``bad_payload`` record naming the id. Only what the storefront's API returns is ever captured: this is
    the one path every inbound order notification takes (:mod:`.notifications`)."""
    connector = remote.connector(connection)
    refresh = list(dict.fromkeys(refresh_ids))
    named = [i for i in dict.fromkeys(external_ids) if i not in set(refresh)]
    known = set(
        Order.objects.filter(channel__connection=connection, external_id__in=named).values_list(
            "external_id", flat=True
        )
    )
    todo = [i for i in named if i not in known] + refresh
    fetched, unknown = [], []
    for external_id, r in zip(todo, remote.parallel(connector.get_order, todo)):
        if isinstance(r, errors.NotFoundError):
            unknown.append(unknown_notified_order(connection, external_id))
        elif isinstance(r, Exception):
            log.warning(
                "order %s named by a %s subscription message could not be fetched (the poll catches up): %s",
                external_id,
                connection.name,
                r,
            )
        elif r.external_id != external_id:
            log.warning(
                "order %s named by a %s message was read back as %s: not captured",
                external_id,
                connection.name,
                r.external_id,
            )
        else:
            fetched.append(r)
    if unknown:
        log.warning(
            "%s: %d order(s) named by notifications are unknown to the storefront: %s",
            connection.name,
            len(unknown),
            ", ".join(p.context["order_id"] for p in unknown)[:500],
        )
        raise_many(unknown)
    return capture_many(connection, fetched, source="webhook-fetch")


def storefront_connections():
    return (
        Connection.objects.filter(enabled=True, system_type__in=["commercetools", "sfcc"], channels__isnull=False)
        .distinct()
        .order_by("pk")
    )


def warehouse_connections():
    return Connection.objects.filter(enabled=True, fulfilled_channels__isnull=False).distinct().order_by("pk")
