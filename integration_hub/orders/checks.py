"""Beat checks: orders sent but not acknowledged (``stuck_order``, resent), dispatched but not shown shipped or
acknowledged but never dispatched (``missing_dispatch``), and orders that never reached the hub or the warehouse
(``orphaned_order``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from connectors import errors
from exceptions_app.services import raise_many
from integration_hub.core.models import Channel, Connection, SyncCursor

from . import claims, keys, remote
from .capture import capture_pairs, resolve_channel
from .dispatch import record_dispatches
from .models import Order, OrderState as S
from .notify import notify_due
from .polls import sync_cursor, warehouse_connections
from .problems import missing_at_warehouse, never_reached_hub, not_dispatched, not_shown_shipped, stuck_order
from .rejected import order_problems
from .send import send_due

log = logging.getLogger(__name__)


ORPHAN_STREAM = "orphan-scan"
DISPATCH_AUDIT_STREAM = "dispatch-audit"


def resend_unacknowledged(limit: int = 1000) -> dict:
    """Beat: orders sent but not acknowledged within HUB["ACK_TIMEOUT_MINUTES"] → ``stuck_order`` exception
    and made due for an immediate resend (safe: the warehouse deduplicates on the idempotency key)."""
    cutoff = timezone.now() - timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"])
    stuck = list(Order.objects.filter(state=S.SENT, sent_at__lt=cutoff).select_related("channel").defer("raw")[:limit])
    if stuck:
        raise_many(
            [
                stuck_order(
                    o,
                    f"sent {o.sent_at:%Y-%m-%d %H:%M} UTC, {o.send_attempts} attempt(s), no acknowledgement"
                    f"{': ' + o.last_error if o.last_error else ''}",
                )
                for o in stuck
            ]
        )
        now = timezone.now()
        Order.objects.filter(pk__in=[o.pk for o in stuck]).filter(
            Q(claim_token="") | Q(next_attempt_at__lte=now)
        ).update(next_attempt_at=None)
    result = send_due(limit=claims.HTTP_BATCH_SIZE)
    if stuck:
        claims.kick()  # the rest of the stuck orders are due now: workers pick them up batch by batch
    return {"stuck": len(stuck), **result.as_dict()}


def find_missing_dispatches(limit: int = 1000, warehouse_check_limit: int = 50) -> dict:
    """Beat, both sides of a dispatch:

    1. Hub side: dispatched by the warehouse, storefront still not told ``HUB["DISPATCH_NOTIFY_MINUTES"]``
       after the hub received the confirmation → ``missing_dispatch`` exception and an immediate notify retry.
    2. Warehouse side: orders acknowledged longer than ``HUB["DISPATCH_DUE_MINUTES"]`` (default 24 h) ago with
       no dispatch in the hub are looked up in the warehouse (``dispatches_for``; at most
       ``warehouse_check_limit`` per warehouse per run, walking a persisted cursor so every order gets its
       turn). A dispatch found there — its confirmation got lost — is processed as if it had arrived;
       otherwise ``missing_dispatch`` names the order (the warehouse does not have it, or has not shipped it)."""
    cutoff = timezone.now() - timedelta(minutes=settings.HUB["DISPATCH_NOTIFY_MINUTES"])
    # measured from when the hub received the confirmation: an old confirmation caught late by a poll is not
    # overdue the moment it arrives (rows from before the field existed fall back to the warehouse's time)
    overdue = Q(dispatch_received_at__lt=cutoff) | Q(dispatch_received_at__isnull=True, dispatched_at__lt=cutoff)
    late = list(Order.objects.filter(overdue, state=S.DISPATCHED).select_related("channel").defer("raw")[:limit])
    if late:
        raise_many([not_shown_shipped(o) for o in late])
        now = timezone.now()
        Order.objects.filter(pk__in=[o.pk for o in late]).filter(
            Q(claim_token="") | Q(next_attempt_at__lte=now)
        ).update(next_attempt_at=None)
    audit = audit_undispatched(warehouse_check_limit)
    result = notify_due(limit=claims.HTTP_BATCH_SIZE)
    if late or audit["recovered"]:
        claims.kick()
    return {"late": len(late), **audit, **result.as_dict()}


def audit_undispatched(limit_per_warehouse: int = 50) -> dict:
    """Warehouse side of :func:`find_missing_dispatches` (see there)."""
    due = timezone.now() - timedelta(minutes=int(settings.HUB["DISPATCH_DUE_MINUTES"]))
    counts = {"audited": 0, "recovered": 0, "undispatched": 0}
    for wh in warehouse_connections():
        cur = sync_cursor(wh, DISPATCH_AUDIT_STREAM)
        after = int(cur.value) if (cur.value or "").isdigit() else 0
        base = Order.objects.filter(
            state=S.ACKNOWLEDGED, warehouse=wh, acknowledged_at__lt=due, cancel_requested_at__isnull=True
        )
        group = list(
            base.filter(pk__gt=after).select_related("channel").defer("raw").order_by("pk")[:limit_per_warehouse]
        )
        # the walk wraps: the next run starts again from the oldest once this one reached the end
        SyncCursor.objects.filter(pk=cur.pk).update(
            value=str(group[-1].pk) if len(group) == limit_per_warehouse else "", updated_at=timezone.now()
        )
        if not group:
            continue
        connector = remote.connector(wh)
        found = remote.parallel(lambda o: connector.dispatches_for(o.idempotency_key), group)
        counts["audited"] += len(group)
        recovered, problems = [], []
        for o, res in zip(group, found):
            if isinstance(res, list) and res:
                recovered += res
                continue
            if isinstance(res, Exception) and not isinstance(res, errors.NotFoundError):
                log.warning("dispatch audit of %s at %s failed: %s", o, wh.name, res)
                continue
            why = (
                f"{wh.name} does not have the order"
                if isinstance(res, errors.NotFoundError)
                else f"{wh.name} has not dispatched it"
            )
            counts["undispatched"] += 1
            problems.append(not_dispatched(o, why, wh))
        if recovered:
            r = record_dispatches(wh, recovered, source="dispatch-audit")
            counts["recovered"] += r.dispatched + r.partial
            log.warning(
                "%s: %d dispatch confirmation(s) were never received; recovered by the dispatch audit",
                wh.name,
                len(recovered),
            )
        if problems:
            raise_many(problems)
    return counts


def _window_cursor(connection: Connection, since: datetime) -> str | None:
    """A cursor meaning "modified since ``since``" for connectors whose cursor format is documented:
    commercetools ``<lastModifiedAt>|<id>`` and SFCC ``<last_modified>|<order_no>`` (see the connectors)."""
    ts = since.astimezone(dt_timezone.utc)
    if connection.system_type == "commercetools":
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z|"
    if connection.system_type == "sfcc":
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "|"
    return None


def _cursor_time(cursor: str) -> str:
    """The timestamp part of a window cursor, comparable as text (both formats are ISO 8601 UTC)."""
    return (cursor or "").partition("|")[0].rstrip("Z")


def find_orphans(
    window_minutes: int = 24 * 60,
    grace_minutes: int | None = None,
    max_pages: int = 10,
    check_limit: int = 200,
    page_size: int = 500,
) -> dict:
    """Beat: orders in the storefront that never reached the warehouse → ``orphaned_order``.

    1. Storefront side (commercetools and SFCC): orders modified in the last ``window_minutes`` that the hub
       never captured — recorded and captured now (the normal flow then sends them). The scan walks a
       cursor persisted per connection (stream ``orphan-scan``): each run reads up to ``max_pages`` pages
       from where the last one stopped (never before the window start), so on a busy day newer orders are
       reached on the next runs instead of re-reading the same first pages. A page holding orders younger
       than the grace period is checked up to them and re-read next time (the cursor does not pass them).
    2. Warehouse side: hub orders past the grace period that are still not acknowledged are looked up in
       the warehouse (``order_status``); those it does not have are recorded and made due for sending."""
    grace = timedelta(minutes=grace_minutes if grace_minutes is not None else settings.HUB["ACK_TIMEOUT_MINUTES"])
    now = timezone.now()
    problems, counts = [], {"storefront_missing": 0, "warehouse_missing": 0, "checked": 0, "scanned": 0}
    for conn in Connection.objects.filter(enabled=True, system_type__in=["commercetools", "sfcc"]).order_by("pk"):
        start = _window_cursor(conn, now - timedelta(minutes=window_minutes))
        if start is None or not conn.channels.exists():
            continue
        stored = sync_cursor(conn, ORPHAN_STREAM)
        cursor = stored.value if stored.value and _cursor_time(stored.value) > _cursor_time(start) else start
        connector = remote.connector(conn)
        channels = list(Channel.objects.filter(connection=conn, active=True))
        missing = []
        try:
            for _ in range(max_pages):
                page = connector.orders_since(cursor, limit=page_size)
                by_key, young = {}, False
                for so in page.items:
                    if so.placed_at is not None and so.placed_at >= now - grace:
                        young = True  # still within its grace period: look again next run
                        continue
                    ch = resolve_channel(conn, so.channel_ref, channels)
                    if ch is not None and so.capturable:
                        by_key[(ch.pk, so.external_id)] = (ch, so)
                counts["scanned"] += len(page.items)
                problems += order_problems(
                    conn, getattr(page.items, "rejected", [])
                )  # rows the connector could not read
                known = keys.known_pairs(by_key)
                missing += [v for k, v in by_key.items() if k not in known]
                if young:
                    break
                cursor = page.cursor or cursor
                SyncCursor.objects.filter(pk=stored.pk).update(value=cursor, updated_at=timezone.now())
                if not page.has_more:
                    break
        except errors.ConnectorError as exc:
            log.warning("orphan scan of %s failed: %s", conn.name, exc)
            continue
        for ch, so in missing:
            problems.append(never_reached_hub(ch, so, conn))
        if missing:
            capture_pairs(missing, "orphan check")
        counts["storefront_missing"] += len(missing)
    stale = list(
        Order.objects.filter(state__in=[S.VALIDATED, S.SENT], created_at__lt=now - grace)
        .select_related("channel", "warehouse")
        .defer("raw")
        .order_by("created_at")[:check_limit]
    )
    by_wh = defaultdict(list)
    for o in stale:
        if o.warehouse is not None:
            by_wh[o.warehouse].append(o)
    for wh, group in by_wh.items():
        if not wh.enabled:
            continue
        connector = remote.connector(wh)
        statuses = remote.parallel(lambda o: connector.order_status(o.idempotency_key), group)
        counts["checked"] += len(group)
        gone = [o for o, st in zip(group, statuses) if st is None]
        for o in gone:
            problems.append(missing_at_warehouse(o, wh))
        if gone:
            Order.objects.filter(pk__in=[o.pk for o in gone]).filter(
                Q(claim_token="") | Q(next_attempt_at__lte=now)
            ).update(next_attempt_at=None)
        counts["warehouse_missing"] += len(gone)
    if problems:
        raise_many(problems)
        claims.kick()
    return counts
