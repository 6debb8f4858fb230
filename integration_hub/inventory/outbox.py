"""The stock push outbox (ARCHITECTURE principle 2).

Every change that can move a channel's ATS calls :func:`enqueue` *inside the transaction that makes the
change*, so the change and the work it causes commit (or roll back) together. Rows are keyed
(channel, item): a thousand changes to one SKU leave one row with ``changes = 1000``. A Celery task is
nudged once the transaction commits; if that nudge is lost (broker down, worker killed) the beat sweep
finds the row anyway.

Coalescing rules on conflict: keep the most urgent priority (ORDER=0 < ROUTINE=5 < SWEEP=9), add to
``changes``, clear ``not_before`` when an ORDER change arrives (a live decrement never waits out a
back-off), and clear ``claim_token`` so a worker pushing the row right now knows it must not delete it.

The upsert is one ``INSERT … SELECT … ON CONFLICT (channel_id, item_id) DO UPDATE`` statement per
5,000 items (SQLite >= 3.24 and PostgreSQL share the syntax).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from integration_hub.core import nudge
from integration_hub.core.locks import cache_add

from . import ats
from .models import ChannelStock, PendingPush

log = logging.getLogger(__name__)

ITEM_CHUNK = 5000
PAIR_CHUNK = 2000


def _t() -> dict[str, str]:
    return {**ats._tables(), "push": PendingPush._meta.db_table, "cstock": ChannelStock._meta.db_table}


def channel_locations() -> list[tuple[int, int]]:
    """(channel_id, location_id) for every active channel with a stock rule. One query."""
    with connection.cursor() as cur:
        cur.execute(ats.CHANNEL_LOCATIONS_SQL.format(**_t()), [True, True])
        return [(int(c), int(loc)) for c, loc in cur.fetchall()]


def channels_for_locations(location_ids: Iterable[int]) -> set[int]:
    """Active channels whose ATS draws on any of ``location_ids``."""
    wanted = {int(x) for x in location_ids}
    return {c for c, loc in channel_locations() if loc in wanted}


def locations_for_channel(channel_id: int) -> set[int]:
    """Locations the channel's rule lets it sell from (empty when it has no rule or is inactive)."""
    return {loc for c, loc in channel_locations() if c == int(channel_id)}


def _upsert_tail() -> str:
    return """
    ON CONFLICT (channel_id, item_id) DO UPDATE SET
        priority = CASE WHEN excluded.priority < {push}.priority THEN excluded.priority ELSE {push}.priority END,
        changes = {push}.changes + excluded.changes,
        not_before = CASE WHEN excluded.priority = %s THEN NULL ELSE {push}.not_before END,
        reason = excluded.reason,
        claim_token = '',
        updated_at = excluded.updated_at
    """


def enqueue(
    item_ids: Iterable[int],
    *,
    location_ids: Iterable[int] | None = None,
    channel_ids: Iterable[int] | None = None,
    priority: int = PendingPush.Priority.ROUTINE,
    reason: str = "",
) -> int:
    """Upsert a pending push for every (channel, item) whose ATS depends on ``item_ids``.

    Affected items are the items themselves, every bundle containing one of them, and — for bundle items
    (a reservation on a kit holds its components) — their components and the other bundles sharing those
    components. Affected channels are the active channels with a stock rule, restricted to those drawing
    on ``location_ids`` and/or to ``channel_ids`` when given; only pairs with an active SKU mapping
    (channel-specific or global) are queued — plus unmapped pairs whose storefront was last confirmed (or
    seen) with a positive quantity, so the push can withdraw it (set it to 0) instead of leaving it on
    sale. Repeated ids count as repeated changes.

    Call it inside the transaction that changed the stock / reservation. Returns rows inserted or updated.
    """
    counts = Counter(int(i) for i in item_ids)
    if not counts:
        return 0
    loc_ids = sorted({int(x) for x in location_ids}) if location_ids is not None else None
    chan_ids = sorted({int(x) for x in channel_ids}) if channel_ids is not None else None
    if (loc_ids is not None and not loc_ids) or (chan_ids is not None and not chan_ids):
        return 0
    priority = int(priority)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    items = sorted(counts.items())
    total = 0
    with connection.cursor() as cur:
        for start in range(0, len(items), ITEM_CHUNK):
            chunk = items[start : start + ITEM_CHUNK]
            chan_filter, chan_params = "", []
            if chan_ids is not None:
                chan_filter += " AND r.channel_id IN (" + ", ".join(["%s"] * len(chan_ids)) + ")"
                chan_params += chan_ids
            if loc_ids is not None:
                chan_filter += (
                    " AND r.channel_id IN (SELECT cl.channel_id FROM chan_loc cl WHERE cl.location_id IN ("
                    + ", ".join(["%s"] * len(loc_ids))
                    + "))"
                )
                chan_params += loc_ids
            # INSERT first, then the WITH: Python < 3.12's sqlite3 reports rowcount only for statements
            # that start with INSERT/UPDATE/DELETE; PostgreSQL and SQLite both accept INSERT … WITH … SELECT.
            sql = (
                """
            INSERT INTO {push} (channel_id, item_id, priority, reason, changes, attempts, claim_token, last_error,
                                created_at, updated_at)
            WITH src(item_id, n) AS (VALUES """
                + ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS INTEGER))"] * len(chunk))
                + """),
            comps AS (  -- a held / changed bundle holds its components
                SELECT bc.component_id AS item_id, s.n, s.item_id AS via FROM src s JOIN {bundle} bc ON bc.bundle_id = s.item_id
            ),
            affected AS (
                SELECT item_id, n FROM src
                UNION ALL
                SELECT item_id, n FROM comps
                UNION ALL  -- bundles containing a changed item
                SELECT bc.bundle_id, s.n FROM src s JOIN {bundle} bc ON bc.component_id = s.item_id
                UNION ALL  -- other bundles sharing a component with a changed bundle
                SELECT bc.bundle_id, c.n FROM comps c JOIN {bundle} bc ON bc.component_id = c.item_id WHERE bc.bundle_id <> c.via
            ),
            agg AS (SELECT item_id, SUM(n) AS n FROM affected GROUP BY item_id),
            chan_loc AS ("""
                + ats.CHANNEL_LOCATIONS_SQL
                + """),
            chan AS (
                SELECT r.channel_id FROM {rule} r JOIN {channel} c ON c.id = r.channel_id
                 WHERE c.active = %s"""
                + chan_filter
                + """
            ),
            pairs AS (
                SELECT ch.channel_id, a.item_id, a.n
                  FROM chan ch CROSS JOIN agg a
                 WHERE EXISTS (SELECT 1 FROM {mapping} m
                                WHERE m.item_id = a.item_id AND m.active = %s
                                  AND (m.channel_id = ch.channel_id OR m.channel_id IS NULL))
                    -- unmapped now, but the storefront was last told a positive quantity: the push withdraws it
                    OR EXISTS (SELECT 1 FROM {cstock} cs
                                WHERE cs.channel_id = ch.channel_id AND cs.item_id = a.item_id
                                  AND (cs.confirmed_quantity > 0 OR cs.observed_quantity > 0))
            )
            SELECT channel_id, item_id, %s, %s, n, 0, '', '', %s, %s FROM pairs WHERE 1 = 1
            """
                + _upsert_tail()
            ).format(**_t())
            params: list = []
            for item_id, n in chunk:
                params += [item_id, n]
            params += [True, True]  # chan_loc
            params += [True] + chan_params  # chan
            params += [True]  # mapping.active
            params += [priority, reason[:100], now, now]
            params += [PendingPush.Priority.ORDER]
            cur.execute(sql, params)
            total += max(cur.rowcount, 0)
    if total:
        _kick_on_commit(priority)
    return total


def enqueue_withdrawals(channel_ids: Iterable[int], reason: str) -> int:
    """Queue a push for every pair of ``channel_ids`` whose storefront was last confirmed (or seen) with a
    positive quantity: used when a channel stops being pushable as a whole (deactivated, rule deleted),
    which :func:`enqueue` cannot see because it only looks at active channels with a rule. The push then
    sets those storefront SKUs to 0. Two queries."""
    ids = sorted({int(c) for c in channel_ids})
    if not ids:
        return 0
    pairs = (
        ChannelStock.objects.filter(channel_id__in=ids)
        .filter(models.Q(confirmed_quantity__gt=0) | models.Q(observed_quantity__gt=0))
        .values_list("channel_id", "item_id")
    )
    return enqueue_pairs(list(pairs), priority=PendingPush.Priority.ROUTINE, reason=reason)


def enqueue_pairs(
    pairs: Iterable[tuple[int, int]], *, priority: int = PendingPush.Priority.SWEEP, reason: str = ""
) -> int:
    """Upsert pending pushes for explicit (channel_id, item_id) pairs (drift repair, console "repush")."""
    pairs = sorted({(int(c), int(i)) for c, i in pairs})
    if not pairs:
        return 0
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    total = 0
    with connection.cursor() as cur:
        for start in range(0, len(pairs), PAIR_CHUNK):
            chunk = pairs[start : start + PAIR_CHUNK]
            sql = (
                """
            INSERT INTO {push} (channel_id, item_id, priority, reason, changes, attempts, claim_token, last_error,
                                created_at, updated_at)
            WITH src(channel_id, item_id) AS (VALUES """
                + ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(chunk))
                + """)
            SELECT channel_id, item_id, %s, %s, 1, 0, '', '', %s, %s FROM src WHERE 1 = 1
            """
                + _upsert_tail()
            ).format(**_t())
            params: list = []
            for c, i in chunk:
                params += [c, i]
            params += [int(priority), reason[:100], now, now, PendingPush.Priority.ORDER]
            cur.execute(sql, params)
            total += max(cur.rowcount, 0)
    if total:
        _kick_on_commit(int(priority))
    return total


# --- nudging the workers ------------------------------------------------------------------------
KICK_WINDOW_SECONDS = 1.0


def kick(priority: int | None = None) -> bool:
    """Ask a worker to drain the outbox now. ORDER work goes to the "stock" queue and only drains ORDER
    rows; anything else to "default" (core.queues routes). Throttled across transactions and requests —
    a flash sale's thousand captures publish about two drains a second, not a thousand: the first kick of
    a window publishes at once, the next one publishes one more a window later (so rows committed in
    between are seen by a drain that starts after them), the rest are dropped. A change that comes while a
    drain runs, or lingers after pushing (``tasks.DRAIN_LINGER_SECONDS``, longer than the window), is taken by
    that drain within ``push.LINGER_POLL_SECONDS``: the trailing kick only backs up a drain that let go just
    before the change committed. Best effort: a lost nudge is recovered by the sweep."""
    urgent = priority is not None and int(priority) <= PendingPush.Priority.ORDER
    kwargs = {"max_priority": int(PendingPush.Priority.ORDER)} if urgent else {}
    name = "order" if urgent else "all"
    if cache_add(f"stock:kick:{name}", 1, timeout=KICK_WINDOW_SECONDS, unavailable=True):
        countdown = None
    elif cache_add(f"stock:kick-trailing:{name}", 1, timeout=KICK_WINDOW_SECONDS, unavailable=False):
        countdown = KICK_WINDOW_SECONDS
    else:
        return True  # a drain that starts after this commit is already on its way
    try:
        nudge.enqueue("inventory.push_pending", kwargs=kwargs, countdown=countdown, retry=False)
        return True
    except Exception as exc:  # broker down: the rows are safe in the database; the sweep re-dispatches
        log.warning("could not dispatch push_pending (%s); the sweep will pick the rows up", exc)
        return False


def _kick_on_commit(priority: int) -> None:
    if not getattr(settings, "HUB", {}).get("STOCK_PUSH_ON_COMMIT", True):
        return
    urgent = priority <= PendingPush.Priority.ORDER
    marker = "_hub_stock_kick_urgent" if urgent else "_hub_stock_kick_routine"
    # one nudge per outermost transaction and urgency, however many enqueue() calls it made
    pending = getattr(connection, "run_on_commit", None) or []
    if any(getattr(entry[1], marker, False) for entry in pending if len(entry) > 1):
        return

    def kick_after_commit():
        kick(PendingPush.Priority.ORDER if urgent else None)

    setattr(kick_after_commit, marker, True)
    transaction.on_commit(kick_after_commit)


__all__ = [
    "enqueue",
    "enqueue_pairs",
    "enqueue_withdrawals",
    "channels_for_locations",
    "locations_for_channel",
    "channel_locations",
    "kick",
]


def lift_backoff(qs, progress=None) -> int:
    """Make every push of ``qs`` due now (one UPDATE per 1,000 ids) and nudge a worker. Returns rows changed.
    "Retry now" on the push queue, "retry all matching" and the exception queue's bulk retry all call this."""
    ids = list(qs.order_by("id").values_list("id", flat=True))
    n = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        n += PendingPush.objects.filter(pk__in=chunk).update(not_before=None)
        if progress is not None:
            progress.advance(len(chunk))
    if n:
        kick()
    return n
