"""Full loads: every mapped SKU of a channel pushed at once, for a channel's first sync or a full resync.

The everyday drain (:mod:`.push`) sends deltas, ``BATCH_SIZE`` rows at a time, through ``Storefront.set_stock``.
A full load of a channel is thousands of SKUs at once; storefronts with a bulk path take it in one go through
``Storefront.push_full`` (SFCC on Omnichannel Inventory: the Impex availability import — one file instead of a
batch update per 100 SKUs; Salesforce's "Inventory IMPEX Best Practices" advise the file import beyond about
1,000 SKUs). Storefronts without one (the default ``push_full`` is the delta path) are left to the drain.

:func:`push_channels`:

1. every mapped item on the channels is queued (``outbox.enqueue``, SWEEP priority) and committed: the rows are the
   outbox's like any other, so nothing is lost if the load dies half-way — the drain pushes what is left as deltas
   (a drain nudged by the enqueue may take some rows first; absolute figures make either path right);
2. :func:`push.push_batch` with ``full=True`` claims those channels' rows (up to ``MAX_ROWS`` per
   round), computes their ATS in one query and sends each storefront connection one ``push_full``; confirmations,
   exception records for refused lines (``bad_payload`` / ``unknown_sku``) and back-off are the drain's own;
3. a storefront whose bulk path is asynchronous (commercetools Import API) answers ``ImportPending`` for the targets it
   accepted: their rows stay in the outbox, deferred, and :mod:`.import_outcomes` (the ``inventory.settle_imports`` task
   chain, dispatched here, and its beat job) records each pair's confirmation or exception once the import has run.

Entry points: the task ``inventory.full_load`` — dispatched by :func:`dispatch_on_commit` whenever the hub queues
a channel's every SKU (:func:`.signals.requeue_channels`: a channel's stock rule created — its first sync — or
changed, its locations or pool changed, the channel reactivated) — and ``manage.py stock fullload --channel KEY``.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q

from connectors.base import Storefront
from integration_hub.catalog.models import SkuMapping
from integration_hub.core import nudge
from integration_hub.core.models import Channel
from integration_hub.monitoring import progress

from . import import_outcomes, outbox, push
from .models import PendingPush

log = logging.getLogger(__name__)

MAX_ROWS = 10_000  # rows per full-load round (one push_full call per connection; keeps every IN list of the
# batch under SQLite's 32,766 bound variables — a 100,000-SKU channel is 10 imports, not 1,000 batch updates)


def has_bulk_path(connection) -> bool:
    """True if the connection's storefront overrides ``Storefront.push_full`` (a real bulk path)."""
    from connectors.registry import get_connector

    try:
        connector = get_connector(connection)
    except Exception:  # noqa: BLE001 - a misconfigured connection: its rows wait in the outbox, the drain reports it
        return False
    return isinstance(connector, Storefront) and type(connector).push_full is not Storefront.push_full


def dispatch_on_commit(channel_ids, reason: str) -> list[int]:
    """Once the transaction that queued every SKU of ``channel_ids`` commits, hand the channels whose storefront has a
    bulk path to the ``inventory.full_load`` task (best effort: a lost dispatch leaves the rows to the drain)."""
    ids = [
        c.pk
        for c in Channel.objects.select_related("connection").filter(pk__in=list(channel_ids), active=True)
        if has_bulk_path(c.connection)
    ]
    if not ids:
        return ids

    def go():
        try:
            nudge.enqueue("inventory.full_load", args=[ids], kwargs={"reason": reason[:100]}, retry=False)
        except Exception as exc:  # noqa: BLE001 - broker down: the rows are in the outbox, the drain pushes them as deltas
            log.warning("could not dispatch full_load for channels %s (%s)", ids, exc)

    transaction.on_commit(go)
    return ids


def push_channels(channels, *, reason: str = "full resync", max_rows: int = MAX_ROWS) -> push.BatchResult:
    """Queue and push every mapped item of ``channels`` (Channel rows) as full loads; channels whose storefront
    has no bulk path are queued for the drain only. Returns the full-load totals."""
    bulk = [c for c in channels if c.active and has_bulk_path(c.connection)]
    bulk_ids = {c.pk for c in bulk}
    queued = 0  # rows queued on the bulk channels: the progress bar's total (pairs already pending add to it)
    with transaction.atomic():
        for channel in channels:
            items = (
                SkuMapping.objects.filter(Q(channel=channel) | Q(channel__isnull=True), active=True)
                .values_list("item_id", flat=True)
                .distinct()
            )
            n = outbox.enqueue(
                list(items), channel_ids=[channel.pk], priority=PendingPush.Priority.SWEEP, reason=reason[:100]
            )
            if channel.pk in bulk_ids:
                queued += n
    total = push.BatchResult()
    if not bulk:
        return total
    ids = sorted(bulk_ids)
    # dashboard bar: one write per round (at most MAX_ROWS rows), never per row
    label = f"Full load ({reason[:60]}): " + ", ".join(c.key for c in bulk)[:120]
    with progress.track("full-load:" + ",".join(map(str, ids))[:90], label, total=queued or None) as bar:
        while True:
            res = push.push_batch(batch_size=max_rows, channel_ids=ids, full=True)
            total.add(res)
            last = res.claimed < max_rows  # every claimable row of those channels was in this round
            done = bar.row.done + res.claimed
            # the total grows with rows pending before the load; on the last round it is what was pushed
            # (the drain may have taken a few of the queued rows first)
            bar.advance(res.claimed, total=done if last else max(bar.row.total or 0, done), force=not last)
            if last:
                break
    # accepted by an asynchronous bulk import (commercetools Import API): their outcomes are polled by a task chain
    import_outcomes.dispatch({c.connection_id for c in bulk})
    return total
