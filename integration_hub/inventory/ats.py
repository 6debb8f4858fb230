"""Available-to-sell (ATS) per (channel, item), computed set-based in one SQL statement.

Rules (ARCHITECTURE principle 6 — one query for a whole channel, or for any set of pairs):

* Locations a channel sells from: its ChannelStockRule — ``segregated``: ``rule.locations``;
  ``shared``: ``rule.pool.locations``. Channels without a rule, or inactive, have no ATS.
* Stock: sum of ``state = available`` at those locations minus ``state = reserved`` at those
  locations. Inspection, damaged and in-transit never count. That sum is not aggregated here: the database
  keeps it per (channel, item) in :class:`.models.ChannelOnHand` (triggers, :mod:`.on_hand`; a row for every
  ruled channel and item), so the whole-channel statement reads those rows instead of every stock row (issue 19).
* Hub reservations: active :class:`Reservation` rows (``released_at`` null) of *any* channel whose
  locations overlap this channel's are subtracted (the units are gone from the shared shelf). A
  reservation on a bundle item holds ``quantity × component quantity`` of each component.
* Safety buffer: ``SkuMapping.safety_buffer`` when set, else ``ChannelStockRule.safety_buffer``.
* Result floored at 0.
* Bundles: ``min over components of floor(component ATS / component quantity)``, where component ATS
  is the component's ATS on the channel (its own per-SKU buffer when its mapping sets one, else the
  channel buffer; floored at 0) whether or not the component is itself sold on the channel. The
  channel buffer is thus held back once, at component level; a bundle mapping with an explicit
  ``safety_buffer`` holds that many bundles back on top. A bundle without components has ATS 0.
* Only pairs with an active SkuMapping for the channel (channel-specific, which wins, else a
  global one with ``channel`` null) exist at all: unmapped items are never pushed.

The SQL is plain SQL-92 + CTEs + ``ROW_NUMBER()`` and runs unchanged on SQLite (>= 3.25) and
PostgreSQL. Table names come from the models' ``_meta`` so renames stay in one place.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from django.db import connection
from django.db.models import Sum

from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
from integration_hub.core.models import Channel

from .models import ChannelOnHand, ChannelStockRule, InventoryState, Reservation, StockLevel, StockPool

PAIR_CHUNK = 2000  # (channel, item) pairs per statement in pair mode: 4000 bind parameters


class Ats(NamedTuple):
    """One (channel, item)'s figure. A named tuple, not a dataclass: a whole-catalogue recompute builds a million of
    these, and a frozen dataclass's ``__init__`` cost several times the query's own fetch (issue 19)."""

    channel_id: int
    item_id: int
    storefront_sku: str
    quantity: int


def _tables() -> dict[str, str]:
    rule_locations = ChannelStockRule.locations.through._meta.db_table
    pool_locations = StockPool.locations.through._meta.db_table
    return {
        "rule": ChannelStockRule._meta.db_table,
        "rule_loc": rule_locations,
        "pool_loc": pool_locations,
        "channel": Channel._meta.db_table,
        "mapping": SkuMapping._meta.db_table,
        "item": Item._meta.db_table,
        "bundle": BundleComponent._meta.db_table,
        "stock": StockLevel._meta.db_table,
        "onhand": ChannelOnHand._meta.db_table,
        "res": Reservation._meta.db_table,
    }


# Locations every active channel draws on (all channels: reservations on *other* channels that share a
# location count too). Reused by the outbox to find the channels a location change touches.
CHANNEL_LOCATIONS_SQL = """
    SELECT r.channel_id AS channel_id, rl.location_id AS location_id
      FROM {rule} r JOIN {channel} c ON c.id = r.channel_id
      JOIN {rule_loc} rl ON rl.channelstockrule_id = r.id
     WHERE r.mode = 'segregated' AND c.active = %s
    UNION
    SELECT r.channel_id, pl.location_id
      FROM {rule} r JOIN {channel} c ON c.id = r.channel_id
      JOIN {pool_loc} pl ON pl.stockpool_id = r.pool_id
     WHERE r.mode = 'shared' AND c.active = %s
"""


# Shared by both statements (after ``chan_loc``): ``overlap`` — every channel a hold on another channel reaches (they
# share a location) — and ``holds`` — the active holds, a bundle's as its components' units.
HOLDS_CTES = """overlap AS (
        SELECT DISTINCT a.channel_id, b.channel_id AS other_id
          FROM chan_loc a JOIN chan_loc b ON b.location_id = a.location_id
    ),
    holds AS (
        SELECT item_id, channel_id, quantity FROM {res} WHERE released_at IS NULL
        UNION ALL
        SELECT bc.component_id, r.channel_id, r.quantity * bc.quantity
          FROM {res} r JOIN {bundle} bc ON bc.bundle_id = r.item_id WHERE r.released_at IS NULL
    ),"""


def _channel_sql(channel_count: int | None) -> str:
    """Whole channels (``channel_count`` of them as parameters, or every channel): one pass over the maintained
    on-hand rows of those channels — a row for every (channel, item), :mod:`.on_hand` — joined to the winning
    mappings (a hash of the mapping set, small next to the result), their holds and, for a bundle, its kit figure.
    The kits are figured for every (channel, bundle recipe) — recipes are few next to targets — so no result-sized
    set is built twice or materialised (issue 19)."""
    chan_filter = " AND r.channel_id IN (" + ", ".join(["%s"] * channel_count) + ")" if channel_count else ""
    pg = connection.vendor == "postgresql"
    # the larger of two figures, each evaluated once (a CASE repeats its operands: at 1M rows the nested CASEs of the
    # figure cost 0.45 s, more than the holds and kits joins together); SQLite's two-argument max() is the same
    greatest = "GREATEST" if pg else "MAX"
    # an optimisation fence (the subquery is not flattened into its parent); SQLite needs a LIMIT before OFFSET
    fence = "OFFSET 0" if pg else "LIMIT -1 OFFSET 0"
    sql = f"""
    WITH chan AS (
        SELECT r.channel_id, r.safety_buffer
          FROM {{rule}} r JOIN {{channel}} c ON c.id = r.channel_id
         WHERE c.active = %s{chan_filter}
    ),
    chan_loc AS ({CHANNEL_LOCATIONS_SQL}),
    {HOLDS_CTES}
    held AS (
        -- every active hold counted once per channel it overlaps (holds are few next to targets)
        SELECT o.channel_id, h.item_id, SUM(h.quantity) AS qty
          FROM holds h
          JOIN overlap o ON o.other_id = h.channel_id
          JOIN chan ch ON ch.channel_id = o.channel_id
         GROUP BY o.channel_id, h.item_id
    ),
    kits AS (
        -- per (channel, bundle item): min over components of floor((component on hand - holds - its buffer) /
        -- quantity), the component's buffer being that of its own winning mapping, else the channel's; a row for
        -- every bundle item (0 without components), so a target is a bundle exactly when it has a kits row. The
        -- on-hand figure and the buffer are looked up per component row by key (the fence keeps each lookup to one
        -- evaluation): a join let PostgreSQL merge the whole on-hand index against 20,000 rows.
        SELECT channel_id, item_id,
               COALESCE(MIN(CASE WHEN avail - buffer > 0 THEN avail - buffer ELSE 0 END / quantity), 0) AS qty
          FROM (
            SELECT channel_id, item_id, quantity, CASE WHEN on_hand - held > 0 THEN on_hand - held ELSE 0 END AS avail,
                   COALESCE(own_buffer, channel_buffer) AS buffer
              FROM (
                SELECT ch.channel_id, b.id AS item_id, bc.quantity, ch.safety_buffer AS channel_buffer,
                       COALESCE((SELECT oh.quantity FROM {{onhand}} oh
                                  WHERE oh.channel_id = ch.channel_id AND oh.item_id = bc.component_id), 0) AS on_hand,
                       COALESCE(h.qty, 0) AS held,
                       (SELECT m.safety_buffer FROM {{mapping}} m
                         WHERE m.item_id = bc.component_id AND m.active = %s
                           AND (m.channel_id = ch.channel_id OR m.channel_id IS NULL)
                         ORDER BY CASE WHEN m.channel_id IS NULL THEN 1 ELSE 0 END, m.id LIMIT 1) AS own_buffer
                  FROM chan ch CROSS JOIN {{item}} b
                  LEFT JOIN {{bundle}} bc ON bc.bundle_id = b.id
                  LEFT JOIN held h ON h.channel_id = ch.channel_id AND h.item_id = bc.component_id
                 WHERE b.is_bundle = %s
                {fence}
              ) y
          ) x
         GROUP BY channel_id, item_id
    ),
    -- the winning mappings (channel-specific beats global, lowest id first: the same choice as pair mode's
    -- ROW_NUMBER) by anti-joins, which the planner estimates well (a window filter is estimated at a fraction of its
    -- rows, which sent PostgreSQL into nested loops at 1M rows)
    global_winner AS (
        SELECT m.item_id, m.storefront_sku, m.safety_buffer FROM {{mapping}} m
         WHERE m.channel_id IS NULL AND m.active = %s
           AND NOT EXISTS (SELECT 1 FROM {{mapping}} m2 WHERE m2.channel_id IS NULL AND m2.item_id = m.item_id
                                                        AND m2.active = %s AND m2.id < m.id)
    ),
    own_winner AS (
        SELECT m.channel_id, m.item_id, m.storefront_sku, m.safety_buffer
          FROM {{mapping}} m JOIN chan ch ON ch.channel_id = m.channel_id
         WHERE m.active = %s
           AND NOT EXISTS (SELECT 1 FROM {{mapping}} m2 WHERE m2.channel_id = m.channel_id AND m2.item_id = m.item_id
                                                      AND m2.active = %s AND m2.id < m.id)
    ),
    cand AS (
        SELECT oh.channel_id, oh.item_id, oh.quantity AS on_hand, g.storefront_sku, g.safety_buffer AS own_buffer,
               ch.safety_buffer AS channel_buffer
          FROM {{onhand}} oh JOIN chan ch ON ch.channel_id = oh.channel_id
          JOIN global_winner g ON g.item_id = oh.item_id
         WHERE NOT EXISTS (SELECT 1 FROM own_winner w WHERE w.channel_id = oh.channel_id AND w.item_id = oh.item_id)
        UNION ALL
        SELECT oh.channel_id, oh.item_id, oh.quantity, w.storefront_sku, w.safety_buffer, ch.safety_buffer
          FROM own_winner w JOIN chan ch ON ch.channel_id = w.channel_id
          JOIN {{onhand}} oh ON oh.channel_id = w.channel_id AND oh.item_id = w.item_id
    )
    SELECT t.channel_id, t.item_id, t.storefront_sku,
           {greatest}(CASE WHEN k.item_id IS NOT NULL THEN k.qty - COALESCE(t.own_buffer, 0)
                         ELSE {greatest}(t.on_hand - COALESCE(h.qty, 0), 0) - COALESCE(t.own_buffer, t.channel_buffer)
                    END, 0)
      FROM cand t
      LEFT JOIN held h ON h.channel_id = t.channel_id AND h.item_id = t.item_id
      LEFT JOIN kits k ON k.channel_id = t.channel_id AND k.item_id = t.item_id
    """
    return sql.format(**_tables())


def _channel_params(channel_ids: list[int] | None) -> list:
    params: list = [True]  # chan: c.active
    if channel_ids:
        params += [int(c) for c in channel_ids]
    params += [True, True]  # chan_loc: c.active twice
    params += [True, True]  # kits: component mapping m.active, b.is_bundle
    params += [True] * 4  # global_winner, own_winner: m.active with their anti-joins
    return params


def _sql(pair_count: int | None, channel_count: int | None) -> str:
    """Build the statement. ``pair_count``: restrict to that many (channel, item) pairs given as
    parameters; else whole channels (:func:`_channel_sql`): ``channel_count`` of them, or every channel."""
    if not pair_count:
        return _channel_sql(channel_count)
    pairs_cte = (
        "pairs(channel_id, item_id) AS (VALUES "
        + ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * pair_count)
        + "),"
    )
    # pair mode: start from the pairs, mapping looked up by item (indexed), the winner by ROW_NUMBER
    scope = """
        cand AS (
            SELECT p.channel_id, m.item_id, m.id AS mapping_id, m.storefront_sku, m.safety_buffer AS own_buffer,
                   ch.safety_buffer AS channel_buffer, CASE WHEN m.channel_id IS NULL THEN 1 ELSE 0 END AS generic
              FROM pairs p JOIN chan ch ON ch.channel_id = p.channel_id
              JOIN {mapping} m ON m.item_id = p.item_id AND m.active = %s
                               AND (m.channel_id = p.channel_id OR m.channel_id IS NULL)
        ),"""
    ranked = """ranked AS (
        SELECT cand.*, ROW_NUMBER() OVER (PARTITION BY channel_id, item_id ORDER BY generic, mapping_id) AS rn FROM cand
    ),"""
    winners, winner_filter = "ranked", "\n         WHERE rk.rn = 1"
    # their maintained on-hand rows by key (unique index)
    on_hand = """on_hand AS (
        SELECT n.channel_id, n.item_id, oh.quantity AS qty
          FROM need n JOIN {onhand} oh ON oh.channel_id = n.channel_id AND oh.item_id = n.item_id
    ),"""
    # their holds looked up from the pairs
    held = """held AS (
        SELECT n.channel_id, n.item_id, SUM(h.quantity) AS qty
          FROM need n
          JOIN overlap o ON o.channel_id = n.channel_id
          JOIN holds h ON h.item_id = n.item_id AND h.channel_id = o.other_id
         GROUP BY n.channel_id, n.item_id
    ),"""
    sql = f"""
    WITH {pairs_cte}
    chan AS (
        SELECT r.channel_id, r.safety_buffer
          FROM {{rule}} r JOIN {{channel}} c ON c.id = r.channel_id
         WHERE c.active = %s
    ),
    chan_loc AS ({CHANNEL_LOCATIONS_SQL}),
    {scope}
    {ranked}
    targets AS (
        SELECT rk.channel_id, rk.item_id, rk.storefront_sku, rk.own_buffer, rk.channel_buffer,
               COALESCE(rk.own_buffer, rk.channel_buffer) AS buffer, i.is_bundle
          FROM {winners} rk JOIN {{item}} i ON i.id = rk.item_id{winner_filter}
    ),
    need AS (
        -- every (channel, item) whose stock is needed: plain targets and the components of bundle targets
        -- (is_comp = 1 when a bundle needs it, whether or not it is a target itself)
        SELECT channel_id, item_id, MAX(is_comp) AS is_comp FROM (
            SELECT channel_id, item_id, 0 AS is_comp FROM targets WHERE is_bundle = %s
            UNION ALL
            SELECT t.channel_id, bc.component_id, 1 FROM targets t JOIN {{bundle}} bc ON bc.bundle_id = t.item_id
             WHERE t.is_bundle = %s
        ) x GROUP BY channel_id, item_id
    ),
    {on_hand}
    {HOLDS_CTES}
    {held}
    raw AS (
        SELECT n.channel_id, n.item_id, n.is_comp,
               CASE WHEN COALESCE(s.qty, 0) - COALESCE(h.qty, 0) > 0
                    THEN COALESCE(s.qty, 0) - COALESCE(h.qty, 0) ELSE 0 END AS qty
          FROM need n
          LEFT JOIN on_hand s ON s.channel_id = n.channel_id AND s.item_id = n.item_id
          LEFT JOIN held h ON h.channel_id = n.channel_id AND h.item_id = n.item_id
    ),
    comp AS (
        -- the components of a bundle on the channel, each with its own buffer (that of its winning mapping, if any)
        SELECT t.channel_id, t.item_id, bc.component_id, bc.quantity, t.channel_buffer,
               (SELECT m.safety_buffer FROM {{mapping}} m
                 WHERE m.item_id = bc.component_id AND m.active = %s AND (m.channel_id = t.channel_id OR m.channel_id IS NULL)
                 ORDER BY CASE WHEN m.channel_id IS NULL THEN 1 ELSE 0 END, m.id LIMIT 1) AS own_buffer
          FROM targets t JOIN {{bundle}} bc ON bc.bundle_id = t.item_id
         WHERE t.is_bundle = %s
    ),
    comp_raw AS (
        -- each component row with its stock on the channel (raw), joined by a window over one sorted set: a join
        -- of two CTEs is planned from their (unknown) sizes and PostgreSQL picked a nested loop over raw
        SELECT channel_id, item_id, quantity, channel_buffer, own_buffer,
               MAX(raw_qty) OVER (PARTITION BY channel_id, component_id) AS qty
          FROM (SELECT channel_id, item_id, component_id, quantity, channel_buffer, own_buffer, NULL AS raw_qty FROM comp
                UNION ALL
                SELECT channel_id, NULL, item_id, NULL, NULL, NULL, qty FROM raw WHERE is_comp = 1) u
    ),
    kits AS (
        SELECT channel_id, item_id,
               MIN(CASE WHEN COALESCE(qty, 0) - COALESCE(own_buffer, channel_buffer) > 0
                        THEN COALESCE(qty, 0) - COALESCE(own_buffer, channel_buffer) ELSE 0 END / quantity) AS qty
          FROM comp_raw WHERE item_id IS NOT NULL
         GROUP BY channel_id, item_id
    ),
    result AS (
        SELECT t.channel_id, t.item_id, t.storefront_sku,
               CASE WHEN t.is_bundle = %s THEN COALESCE(k.qty, 0) - COALESCE(t.own_buffer, 0)
                    ELSE COALESCE(rw.qty, 0) - t.buffer END AS qty
          FROM targets t
          LEFT JOIN raw rw ON rw.channel_id = t.channel_id AND rw.item_id = t.item_id
          LEFT JOIN kits k ON k.channel_id = t.channel_id AND k.item_id = t.item_id
    )
    SELECT channel_id, item_id, storefront_sku, CASE WHEN qty > 0 THEN qty ELSE 0 END FROM result
    """
    return sql.format(**_tables())


def _params(pairs: list[tuple[int, int]] | None, channel_ids: list[int] | None) -> list:
    if not pairs:
        return _channel_params(channel_ids)
    params: list = []
    for c, i in pairs:
        params += [int(c), int(i)]
    params.append(True)  # chan: c.active
    params += [True, True]  # chan_loc: c.active twice
    params += [True]  # cand: m.active
    params += [False, True]  # need
    params += [True, True]  # comp: m.active, is_bundle
    params += [True]  # result
    return params


def _run(pairs: list[tuple[int, int]] | None, channel_ids: list[int] | None) -> list[Ats]:
    sql = _sql(len(pairs) if pairs else None, len(channel_ids) if channel_ids else None)
    with connection.cursor() as cur:
        cur.execute(sql, _params(pairs, channel_ids))
        rows = cur.fetchall()
    if rows and not all(type(v) is int for v in (rows[0][0], rows[0][1], rows[0][3])):  # drivers return ints for these
        return [Ats(int(c), int(i), s, int(q)) for c, i, s, q in rows]
    return list(map(Ats._make, rows))


def compute(channel_ids: Iterable[int] | None = None) -> list[Ats]:
    """ATS for every mapped item on the given channels (all channels with a rule when None). One query."""
    ids = sorted({int(c) for c in channel_ids}) if channel_ids is not None else None
    if ids is not None and not ids:
        return []
    return _run(None, ids)


def for_channel(channel_id: int) -> dict[int, Ats]:
    """{item_id: Ats} for one channel, in one query."""
    return {a.item_id: a for a in compute([channel_id])}


def for_pairs(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Ats]:
    """{(channel_id, item_id): Ats} for the given pairs; pairs that are unmapped (or whose channel has
    no rule) are absent from the result. One query per ``PAIR_CHUNK`` pairs."""
    pairs = sorted({(int(c), int(i)) for c, i in pairs})
    out: dict[tuple[int, int], Ats] = {}
    for start in range(0, len(pairs), PAIR_CHUNK):
        for a in _run(pairs[start : start + PAIR_CHUNK], None):
            out[(a.channel_id, a.item_id)] = a
    return out


def naive_for_pair(channel_id: int, item_id: int) -> int | None:
    """The same rules, one pair at a time with ORM queries — the per-row loop the set-based query
    replaces. Kept as the executable specification the tests compare against and the benchmark
    times; never call it in production code."""
    from django.db.models import Q, Sum

    rule = ChannelStockRule.objects.filter(channel_id=channel_id, channel__active=True).select_related("pool").first()
    if rule is None:
        return None
    if (
        not SkuMapping.objects.filter(item_id=item_id, active=True)
        .filter(Q(channel_id=channel_id) | Q(channel__isnull=True))
        .exists()
    ):
        return None

    def locations_of(r):
        if r.mode == ChannelStockRule.Mode.SHARED:
            return set(r.pool.locations.values_list("id", flat=True)) if r.pool_id else set()
        return set(r.locations.values_list("id", flat=True))

    locs = locations_of(rule)
    others = [
        r.channel_id
        for r in ChannelStockRule.objects.filter(channel__active=True).select_related("pool")
        if locs & locations_of(r)
    ]

    def raw(iid: int) -> int:
        levels = StockLevel.objects.filter(item_id=iid, location_id__in=locs)
        avail = levels.filter(state=InventoryState.AVAILABLE, quantity__gt=0).aggregate(s=Sum("quantity"))["s"] or 0
        reserved = levels.filter(state=InventoryState.RESERVED).aggregate(s=Sum("quantity"))["s"] or 0
        held = (
            Reservation.objects.filter(item_id=iid, channel_id__in=others, released_at__isnull=True).aggregate(
                s=Sum("quantity")
            )["s"]
            or 0
        )
        for bc in BundleComponent.objects.filter(component_id=iid):
            kit_held = (
                Reservation.objects.filter(
                    item_id=bc.bundle_id, channel_id__in=others, released_at__isnull=True
                ).aggregate(s=Sum("quantity"))["s"]
                or 0
            )
            held += kit_held * bc.quantity
        return max(0, avail - reserved - held)

    def buffer_of(iid: int, own_only: bool = False) -> int:
        found = list(
            SkuMapping.objects.filter(item_id=iid, active=True).filter(
                Q(channel_id=channel_id) | Q(channel__isnull=True)
            )
        )
        own = min(found, key=lambda m: (m.channel_id is None, m.id)).safety_buffer if found else None
        if own is not None:
            return own
        return 0 if own_only else rule.safety_buffer

    item = Item.objects.get(pk=item_id)
    if item.is_bundle:
        comps = list(BundleComponent.objects.filter(bundle_id=item_id))
        base = min(
            (max(0, raw(bc.component_id) - buffer_of(bc.component_id)) // bc.quantity for bc in comps), default=0
        )
        return max(0, base - buffer_of(item_id, own_only=True))
    return max(0, raw(item_id) - buffer_of(item_id))


def captured_units(channel_ids: Iterable[int], item_ids: Iterable[int] | None = None) -> dict[tuple[int, str], int]:
    """{(channel_id, storefront_sku): units} of the channel's *own* storefront orders the hub has captured, by
    the SKU of the order line (top-level lines: a bundle line counts for the bundle's SKU, its components for
    nothing — the storefront took the bundle's units off, not the components'), ever, cancelled or not: a
    running total that only goes up. ``item_ids`` narrows to lines of those items (the pairs of a batch).

    It is the ledger offset for storefronts that decrement their own stock when an order is placed
    (``connectors.base.InventoryTarget.ledger`` = ATS + this): capturing such an order lowers ATS by its
    lines and raises this by the same for the SKUs the storefront decremented, so the ledger does not move
    and the storefront's own decrement is not made a second time; a cancellation raises ATS only (the
    storefront puts nothing back), so the units go back on sale; a master figure taking over a reservation
    moves neither. One query. Computed *before* ATS in a batch: a capture in between errs low (held back
    until the push it queues), never high."""
    from django.apps import apps  # orders depends on inventory, not the other way round: no import

    lines = apps.get_model("orders", "OrderLine").objects.filter(
        order__channel_id__in=list(channel_ids), parent__isnull=True
    )
    if item_ids is not None:
        lines = lines.filter(item_id__in=list(item_ids))
    return {
        (r["order__channel_id"], r["storefront_sku"]): int(r["units"] or 0)
        for r in lines.values("order__channel_id", "storefront_sku").annotate(units=Sum("quantity"))
    }
