"""The maintained on-hand figure per (channel, item) (:class:`.models.ChannelOnHand`), kept by database triggers.

ATS starts from "stock on hand at the channel's locations": the sum of ``available`` (a negative figure counts as
0) minus ``reserved`` over the locations of the channel's rule (``segregated``) or pool (``shared``). Summing it
from the stock rows at every recompute cost most of a 1M-row recompute (issue 19: 12.9× the PostgreSQL floor);
kept up to date where stock is written, the recompute is one join.

The database keeps it, not the application: triggers fire for every writer — the set-based stock apply, the ORM,
the admin, a bulk import, a cascade — so there is no code path that can forget it. Each stock row contributes
``contribution(row)`` to the (channel, item) of every channel whose locations include the row's location:

* stock rows: insert adds, delete subtracts, an update subtracts the old row and adds the new one (PostgreSQL:
  statement-level triggers over the transition tables, one set-based statement per write statement; SQLite:
  row-level triggers);
* a location joining or leaving a segregated rule or a pool adds or subtracts that location's stock for the
  channels concerned; a rule created, or its mode or pool changed, rebuilds the channel; a rule deleted drops it.

Invariant: a row for every (channel with a rule, item), zero when there is no stock — an item created adds its
rows for every ruled channel, a rule created adds its channel's row for every item. The whole-channel ATS statement
is therefore driven from this table (one sequential read, joined to the small mapping set) instead of probing a
million targets against it (issue 19). Subtractions only ever ``UPDATE`` existing rows (they never insert), so a
cascade that deletes an item or a channel cannot leave a row behind pointing at it. :func:`verify` compares the
table with a fresh aggregate and reports a missing row too (the tests run it after random interleavings of every
kind of write); :func:`rebuild` recomputes it from the stock rows.
"""

from __future__ import annotations

from typing import Iterable

from django.db import connection as default_connection
from django.db import transaction

VIEW = "inventory_channel_locations_v"
TABLE = "inventory_channelonhand"
STOCK = "inventory_stocklevel"
RULE = "inventory_channelstockrule"
RULE_LOC = "inventory_channelstockrule_locations"
POOL_LOC = "inventory_stockpool_locations"
ITEM = "catalog_item"
COUNTED = "('available', 'reserved')"


def contribution(r: str) -> str:
    """SQL for what stock row ``r`` adds to on-hand (only for ``r.state IN COUNTED``)."""
    return f"(CASE WHEN {r}.state = 'available' THEN (CASE WHEN {r}.quantity > 0 THEN {r}.quantity ELSE 0 END) ELSE -{r}.quantity END)"


VIEW_SQL = f"""
CREATE VIEW {VIEW} AS
    SELECT r.channel_id AS channel_id, rl.location_id AS location_id
      FROM {RULE} r JOIN {RULE_LOC} rl ON rl.channelstockrule_id = r.id
     WHERE r.mode = 'segregated'
    UNION
    SELECT r.channel_id, pl.location_id
      FROM {RULE} r JOIN {POOL_LOC} pl ON pl.stockpool_id = r.pool_id
     WHERE r.mode = 'shared'
"""

_ADD = f"ON CONFLICT (channel_id, item_id) DO UPDATE SET quantity = {TABLE}.quantity + excluded.quantity"


def _aggregate(where: str) -> str:
    """(channel_id, item_id, quantity) from the stock rows at the channels' locations, filtered by ``where``."""
    return f"""SELECT v.channel_id, s.item_id, SUM({contribution("s")}) AS quantity
                 FROM {STOCK} s JOIN {VIEW} v ON v.location_id = s.location_id
                WHERE s.state IN {COUNTED} AND {where}
                GROUP BY v.channel_id, s.item_id"""


def _full(where: str) -> str:
    """(channel_id, item_id, quantity) for every (ruled channel, item) whose rule matches ``where`` (on ``r``): the
    aggregate of its stock rows, 0 without any — the table's whole content for those channels."""
    return f"""SELECT r.channel_id, i.id, COALESCE(a.quantity, 0)
                 FROM {RULE} r CROSS JOIN {ITEM} i
                 LEFT JOIN ({_aggregate(where.replace("r.", "v."))}) a ON a.channel_id = r.channel_id AND a.item_id = i.id
                WHERE {where}"""


def _rebuild_channel(channel: str) -> list[str]:
    return [
        f"DELETE FROM {TABLE} WHERE channel_id = {channel}",
        f"INSERT INTO {TABLE} (channel_id, item_id, quantity) {_full(f'r.channel_id = {channel}')}",
    ]


def _location_added(location: str, channels: str) -> str:
    """Add the stock at ``location`` to each channel of the ``channels`` subquery."""
    return f"""INSERT INTO {TABLE} (channel_id, item_id, quantity)
               SELECT c.channel_id, s.item_id, SUM({contribution("s")})
                 FROM ({channels}) c JOIN {STOCK} s ON s.location_id = {location}
                WHERE s.state IN {COUNTED}
                GROUP BY c.channel_id, s.item_id
               {_ADD}"""


def _location_removed(location: str, channels: str) -> str:
    """Subtract the stock at ``location`` from each channel of the ``channels`` subquery (UPDATE only)."""
    return f"""UPDATE {TABLE} SET quantity = quantity - (
                   SELECT SUM({contribution("s")}) FROM {STOCK} s
                    WHERE s.location_id = {location} AND s.item_id = {TABLE}.item_id AND s.state IN {COUNTED})
                WHERE channel_id IN ({channels})
                  AND item_id IN (SELECT item_id FROM {STOCK} WHERE location_id = {location} AND state IN {COUNTED})"""


def _rule_channels(rule: str) -> str:
    return f"SELECT channel_id FROM {RULE} WHERE id = {rule} AND mode = 'segregated'"


def _pool_channels(pool: str) -> str:
    return f"SELECT channel_id FROM {RULE} WHERE pool_id = {pool} AND mode = 'shared'"


# (name, table, event, WHEN condition or None, statements using NEW / OLD) — the row-level triggers both engines run
RULE_TRIGGERS = [
    (
        "hub_onhand_rule_loc_ins",
        RULE_LOC,
        "INSERT",
        None,
        [_location_added("NEW.location_id", _rule_channels("NEW.channelstockrule_id"))],
    ),
    (
        "hub_onhand_rule_loc_del",
        RULE_LOC,
        "DELETE",
        None,
        [_location_removed("OLD.location_id", _rule_channels("OLD.channelstockrule_id"))],
    ),
    (
        "hub_onhand_pool_loc_ins",
        POOL_LOC,
        "INSERT",
        None,
        [_location_added("NEW.location_id", _pool_channels("NEW.stockpool_id"))],
    ),
    (
        "hub_onhand_pool_loc_del",
        POOL_LOC,
        "DELETE",
        None,
        [_location_removed("OLD.location_id", _pool_channels("OLD.stockpool_id"))],
    ),
    ("hub_onhand_rule_ins", RULE, "INSERT", None, _rebuild_channel("NEW.channel_id")),
    (
        "hub_onhand_rule_upd",
        RULE,
        "UPDATE",
        "OLD.mode <> NEW.mode OR OLD.pool_id IS DISTINCT FROM NEW.pool_id OR OLD.channel_id <> NEW.channel_id",
        [f"DELETE FROM {TABLE} WHERE channel_id = OLD.channel_id", *_rebuild_channel("NEW.channel_id")],
    ),
    ("hub_onhand_rule_del", RULE, "DELETE", None, [f"DELETE FROM {TABLE} WHERE channel_id = OLD.channel_id"]),
]

# SQLite: the stock and item triggers are row-level too
_SQLITE_STOCK_TRIGGERS = [
    (
        "hub_onhand_item_ins",
        ITEM,
        "INSERT",
        None,
        # a new item's zero row on every ruled channel (stock written for it first, in the same transaction, already
        # made its rows: those stay)
        [
            f"""INSERT INTO {TABLE} (channel_id, item_id, quantity)
                SELECT channel_id, NEW.id, 0 FROM {RULE} WHERE 1 = 1 ON CONFLICT (channel_id, item_id) DO NOTHING"""
        ],
    ),
    (
        "hub_onhand_stock_ins",
        STOCK,
        "INSERT",
        f"NEW.state IN {COUNTED} AND {contribution('NEW')} <> 0",
        [
            f"""INSERT INTO {TABLE} (channel_id, item_id, quantity)
                SELECT v.channel_id, NEW.item_id, {contribution("NEW")} FROM {VIEW} v WHERE v.location_id = NEW.location_id
                {_ADD}"""
        ],
    ),
    (
        "hub_onhand_stock_del",
        STOCK,
        "DELETE",
        f"OLD.state IN {COUNTED}",
        [
            f"""UPDATE {TABLE} SET quantity = quantity - {contribution("OLD")}
                 WHERE item_id = OLD.item_id AND channel_id IN (SELECT channel_id FROM {VIEW} WHERE location_id = OLD.location_id)"""
        ],
    ),
    (
        "hub_onhand_stock_upd",
        STOCK,
        "UPDATE",
        "OLD.quantity IS NOT NEW.quantity OR OLD.state IS NOT NEW.state OR OLD.location_id IS NOT NEW.location_id "
        "OR OLD.item_id IS NOT NEW.item_id",
        [
            f"""UPDATE {TABLE} SET quantity = quantity - {contribution("OLD")}
                 WHERE OLD.state IN {COUNTED} AND item_id = OLD.item_id
                   AND channel_id IN (SELECT channel_id FROM {VIEW} WHERE location_id = OLD.location_id)""",
            f"""INSERT INTO {TABLE} (channel_id, item_id, quantity)
                SELECT v.channel_id, NEW.item_id, {contribution("NEW")} FROM {VIEW} v
                 WHERE v.location_id = NEW.location_id AND NEW.state IN {COUNTED}
                {_ADD}""",
        ],
    ),
]


def _pg_delta(rows: str, sign: str) -> str:
    return f"""SELECT v.channel_id, r.item_id, {sign}{contribution("r")} AS d
                 FROM {rows} r JOIN {VIEW} v ON v.location_id = r.location_id WHERE r.state IN {COUNTED}"""


# PostgreSQL: the stock triggers are statement-level over the transition tables (one set-based statement per
# write statement, however many rows it wrote); ordered by key so concurrent writers lock rows in one order
_PG_STOCK_TRIGGERS = [
    (
        "hub_onhand_item_ins",
        "INSERT",
        "REFERENCING NEW TABLE AS new_items",
        f"""INSERT INTO {TABLE} (channel_id, item_id, quantity)
            SELECT r.channel_id, n.id, 0 FROM new_items n CROSS JOIN {RULE} r ORDER BY r.channel_id, n.id
            ON CONFLICT (channel_id, item_id) DO NOTHING""",
        ITEM,
    ),
    (
        "hub_onhand_stock_ins",
        "INSERT",
        "REFERENCING NEW TABLE AS new_rows",
        f"""INSERT INTO {TABLE} (channel_id, item_id, quantity)
            SELECT channel_id, item_id, SUM(d) FROM ({_pg_delta("new_rows", "")}) x
             GROUP BY channel_id, item_id HAVING MAX(CASE WHEN d <> 0 THEN 1 ELSE 0 END) = 1
             ORDER BY channel_id, item_id
            {_ADD}""",
        STOCK,
    ),
    (
        "hub_onhand_stock_upd",
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        # only rows whose figure, state, place or item moved (the stock apply rewrites unchanged figures too)
        f"""WITH moved AS (
                SELECT o.id FROM old_rows o JOIN new_rows n ON n.id = o.id
                 WHERE (o.quantity, o.state, o.location_id, o.item_id) IS DISTINCT FROM (n.quantity, n.state, n.location_id, n.item_id)
            )
            INSERT INTO {TABLE} (channel_id, item_id, quantity)
            SELECT channel_id, item_id, SUM(d) FROM (
                {_pg_delta("(SELECT * FROM old_rows WHERE id IN (SELECT id FROM moved))", "-")}
                UNION ALL
                {_pg_delta("(SELECT * FROM new_rows WHERE id IN (SELECT id FROM moved))", "")}
            ) x GROUP BY channel_id, item_id ORDER BY channel_id, item_id
            {_ADD}""",
        STOCK,
    ),
    (
        "hub_onhand_stock_del",
        "DELETE",
        "REFERENCING OLD TABLE AS old_rows",
        f"""UPDATE {TABLE} t SET quantity = t.quantity - x.d
              FROM (SELECT channel_id, item_id, SUM(d) AS d FROM ({_pg_delta("old_rows", "")}) y
                     GROUP BY channel_id, item_id) x
             WHERE t.channel_id = x.channel_id AND t.item_id = x.item_id""",
        STOCK,
    ),
]


def install_sql(vendor: str) -> list[str]:
    """Statements creating the view and the triggers (after :func:`uninstall_sql`)."""
    out = [VIEW_SQL]
    if vendor == "postgresql":
        for name, table, event, when, body in RULE_TRIGGERS:
            stmts = ";\n".join(body)
            guard = f"IF NOT ({when}) THEN RETURN NULL; END IF;" if when else ""
            out.append(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {guard} {stmts}; RETURN NULL; END $$"
            )
            out.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
        for name, event, referencing, body, table in _PG_STOCK_TRIGGERS:
            out.append(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$"
            )
            out.append(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
    else:
        for name, table, event, when, body in RULE_TRIGGERS + _SQLITE_STOCK_TRIGGERS:
            cond = f" WHEN {when}" if when else ""
            # SQLite spells IS DISTINCT FROM as IS NOT; an INSERT … SELECT before ON CONFLICT needs a WHERE (it has one)
            cond = cond.replace("IS DISTINCT FROM", "IS NOT")
            stmts = "".join(f"{s};\n" for s in body)
            out.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{cond} BEGIN\n{stmts}END")
    return out


def uninstall_sql(vendor: str) -> list[str]:
    """Statements dropping what :func:`install_sql` creates on ``vendor`` (if it is there)."""
    if vendor == "postgresql":
        triggers = [(t[0], t[1]) for t in RULE_TRIGGERS] + [(t[0], t[4]) for t in _PG_STOCK_TRIGGERS]
        out = [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table in triggers]
        out += [f"DROP FUNCTION IF EXISTS {name}()" for name, _ in triggers]
    else:
        out = [f"DROP TRIGGER IF EXISTS {t[0]}" for t in RULE_TRIGGERS + _SQLITE_STOCK_TRIGGERS]
    return out + [f"DROP VIEW IF EXISTS {VIEW}"]


def install(conn=None) -> None:
    """(Re)create the view and triggers and rebuild the table. Idempotent; the migration calls it."""
    conn = conn or default_connection
    with conn.cursor() as cur:
        for stmt in uninstall_sql(conn.vendor) + install_sql(conn.vendor):
            cur.execute(stmt)
    rebuild(conn=conn)


def uninstall(conn=None) -> None:
    conn = conn or default_connection
    with conn.cursor() as cur:
        for stmt in uninstall_sql(conn.vendor):
            cur.execute(stmt)


def rebuild(channel_ids: Iterable[int] | None = None, conn=None) -> None:
    """Recompute the table (or the given channels' rows) from the stock rows, in one transaction."""
    conn = conn or default_connection
    ids = None if channel_ids is None else sorted({int(c) for c in channel_ids})
    where, params = ("1 = 1", []) if ids is None else (f"r.channel_id IN ({', '.join(['%s'] * len(ids))})", ids)
    if ids is not None and not ids:
        return
    with transaction.atomic(using=conn.alias), conn.cursor() as cur:
        if ids is None:
            cur.execute(f"DELETE FROM {TABLE}")
        else:
            cur.execute(f"DELETE FROM {TABLE} WHERE channel_id IN ({', '.join(['%s'] * len(ids))})", ids)
        cur.execute(f"INSERT INTO {TABLE} (channel_id, item_id, quantity) {_full(where)}", params * 2)


def verify(conn=None) -> list[tuple[int, int, int | None, int | None]]:
    """(channel_id, item_id, stored, expected) for every pair where the table disagrees with a fresh aggregate:
    ``stored`` is None for a missing row, ``expected`` None for a row that should not be there (its channel has no
    rule). Empty when the triggers did their job."""
    conn = conn or default_connection
    sql = f"""
        WITH fresh(channel_id, item_id, quantity) AS ({_full("1 = 1")})
        SELECT t.channel_id, t.item_id, t.quantity, f.quantity
          FROM {TABLE} t LEFT JOIN fresh f ON f.channel_id = t.channel_id AND f.item_id = t.item_id
         WHERE f.item_id IS NULL OR t.quantity <> f.quantity
        UNION ALL
        SELECT f.channel_id, f.item_id, NULL, f.quantity
          FROM fresh f LEFT JOIN {TABLE} t ON t.channel_id = f.channel_id AND t.item_id = f.item_id
         WHERE t.item_id IS NULL
    """

    def num(v):
        return None if v is None else int(v)

    with conn.cursor() as cur:
        cur.execute(sql)
        return sorted(((int(a), int(b), num(c), num(d)) for a, b, c, d in cur.fetchall()), key=lambda r: r[:2])
