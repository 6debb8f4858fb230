"""**Fulfilments done storefront-side** (ship-from-store, click & collect) are rows (:class:`StorefrontFulfilment`)
re-sent to the master until it returns an acknowledgement id.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from connectors import errors
from connectors.base import Fulfilment
from exceptions_app.services import clear, raise_many, transport_keys
from integration_hub.core.models import Channel, Connection

from . import claims, keys, mapping, remote
from .models import Order, StorefrontFulfilment
from .problems import transport_failure, unknown_fulfilment_sku, unreadable_fulfilments


def record_storefront_side(connection: Connection, pairs) -> int:
    """Fulfilments the storefront side made itself (connector ``storefront_fulfilments``: deliveries the hub
    did not add) → StorefrontFulfilment rows, storefront SKUs mapped to master SKUs (bundles to their
    components), reported to the master by :func:`send_fulfilments` until acknowledged. No queries when
    the polled orders carry none. Fulfilments the connector cannot read (its ``rejected`` rows, or a
    BadDataError for the whole order) become one ``bad_payload:<connection>:fulfilments:<order key>`` record
    per order naming them (the order's readable fulfilments still go through); cleared when they next read
    cleanly."""
    try:
        finder = getattr(remote.connector(connection), "storefront_fulfilments", None)
    except errors.ConnectorError:
        return 0
    if finder is None:
        return 0
    from connectors.parsing import ParsedBatch, RejectedRow

    found, unreadable, clean = [], [], []
    for ch, so in pairs:
        try:
            fs = finder(so)
        except NotImplementedError:
            continue
        except errors.BadDataError as exc:
            fs = ParsedBatch([], [RejectedRow(0, so.external_id, "order", str(exc)[:500])])
        rejected = getattr(fs, "rejected", None)
        bad = keys.bad_key(connection.name, "fulfilments", keys.order_key(ch, so.external_id))
        if rejected:
            unreadable.append(unreadable_fulfilments(connection, ch, so, bad, rejected))
        elif fs:
            clean.append(bad)
        if fs:
            found.append((ch, so, fs))
    if unreadable:
        raise_many(unreadable)
    if clean:
        clear(clean, reason="the order's storefront fulfilments read cleanly")
    if not found:
        return 0
    orders = keys.orders_for(
        [(ch.pk, so.external_id) for ch, so, _ in found], Order.objects.select_related("channel").defer("raw")
    )
    known = set(
        StorefrontFulfilment.objects.filter(order__in=list(orders.values())).values_list("order_id", "fulfilment_ref")
    )
    rows, problems = [], []
    # SKUs resolved once per channel and bundles exploded once for the whole batch (not per order)
    by_channel: dict[int, tuple[Channel, set[str]]] = {}
    for ch, so, fs in found:
        by_channel.setdefault(ch.pk, (ch, set()))[1].update(sku for f in fs for sku, _ in f.lines)
    resolved = {cid: mapping.resolve_skus(ch, skus) for cid, (ch, skus) in by_channel.items()}
    comps = mapping.bundle_components(
        {r.item.pk for res in resolved.values() for r in res.values() if r.item and r.item.is_bundle}
    )
    for ch, so, fs in found:
        o = orders.get((ch.pk, so.external_id))
        warehouse_id = o and (o.warehouse_id or ch.warehouse_id)
        if o is None or not warehouse_id:
            continue
        res = resolved[ch.pk]
        for f in fs:
            if (o.pk, f.fulfilment_ref[:100]) in known:
                continue
            lines: dict[str, int] = defaultdict(int)
            for sku, qty in f.lines:
                r = res.get(sku)
                if r is None or r.item is None:
                    problems.append(unknown_fulfilment_sku(ch, sku, f, o))
                    continue
                if r.item.is_bundle and comps.get(r.item.pk):
                    for comp, per in comps[r.item.pk]:
                        lines[comp.sku] += qty * per
                else:
                    lines[r.item.sku] += qty
            if lines and not any(p.order_ref == o.idempotency_key for p in problems):
                rows.append(
                    StorefrontFulfilment(
                        order=o,
                        fulfilment_ref=f.fulfilment_ref[:100],
                        warehouse_id=warehouse_id,
                        lines=[[k, v] for k, v in sorted(lines.items())],
                        location=(f.location or "")[:100],
                        fulfilled_at=f.fulfilled_at or timezone.now(),
                    )
                )
    StorefrontFulfilment.objects.bulk_create(rows, ignore_conflicts=True)
    if problems:
        raise_many(problems)
    return len(rows)


def send_fulfilments(limit: int = claims.BATCH_SIZE) -> dict:
    """Report unacknowledged storefront-side fulfilments to the master; back off on failure, retry forever
    (a ``sync_timeout`` exception tells people once retries keep failing)."""
    now = timezone.now()
    rows = list(
        StorefrontFulfilment.objects.filter(acknowledged_at__isnull=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .select_related("order", "warehouse")
        .order_by("pk")[:limit]
    )
    if not rows:
        return {"acknowledged": 0, "retrying": 0}
    StorefrontFulfilment.objects.filter(pk__in=[r.pk for r in rows]).update(
        next_attempt_at=now + timedelta(seconds=claims.LEASE_SECONDS), attempts=F("attempts") + 1
    )

    def call(r):
        return remote.connector(r.warehouse).send_fulfilment(
            Fulfilment(
                order_ref=r.order.idempotency_key,
                fulfilment_ref=r.fulfilment_ref,
                lines=[(s, int(q)) for s, q in r.lines],
                location=r.location,
                fulfilled_at=r.fulfilled_at,
            )
        )

    outcomes = remote.parallel(call, rows)
    ok, bad, problems = [], [], []
    for r, res in zip(rows, outcomes):
        r.attempts += 1
        if isinstance(res, Exception):
            r.last_error = f"{type(res).__name__}: {res}"[:2000]
            r.next_attempt_at = now + claims.backoff(r.attempts)
            bad.append(r)
            if r.attempts >= 3:
                problems.append(transport_failure(r.warehouse, "send_fulfilment", res, r.order))
        else:
            r.ack_id, r.acknowledged_at, r.last_error, r.next_attempt_at = str(res)[:100], timezone.now(), "", None
            ok.append(r)
    StorefrontFulfilment.objects.bulk_update(
        ok + bad, ["ack_id", "acknowledged_at", "last_error", "next_attempt_at"], batch_size=500
    )
    if problems:
        raise_many(problems)
    if ok:
        clear(
            [k for c in {r.warehouse.name for r in ok} for k in transport_keys(c, "send_fulfilment")]
            + [keys.bad_key(r.warehouse.name, "send_fulfilment", r.order.idempotency_key) for r in ok]
        )
    return {"acknowledged": len(ok), "retrying": len(bad)}
