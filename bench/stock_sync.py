"""Stock sync benchmark — prints, side by side in one run:

(a) ATS recompute for 100k and 1M (SKU × channel) rows: the set-based query vs a naive per-row loop
    (``ats.naive_for_pair``, the executable spec: ORM queries per pair). The preloaded per-row loop is
    run over every row of the 100k set; at 1M, and for the naive spec, loops are timed on a sample and
    extrapolated — the output marks which figures are extrapolated.
(b) push throughput against the commercetools sandbox with a configured rate limit: requests/s achieved
    vs the limit (utilisation %), 429s seen.
(c) coalescing: 100k raw master changes (webhook-sized batches through ``apply_stock_changes``) →
    outbox rows → storefront pushes actually sent to the commercetools sandbox over HTTP.

(a2) the engine's floor (issue 19, item 2): one plain ``INSERT … SELECT`` writing a result of the same size, next
    to the hub's statement written the same way and ``ats.compute`` (``--ats-only``: just (a), (a2) and (a3)).
(a3) what the maintained on-hand figure (inventory/on_hand.py: database triggers) costs the write path: batches of
    raw master changes through ``apply_stock_changes`` with the triggers and without them, alternately.

Runs on every reachable engine side by side (bench/_engines.py: a throwaway SQLite database, and PostgreSQL +
Redis when they run here), its own sandbox server on a free port. ``python bench/stock_sync.py`` or ``--quick``.
Benchmarks are never tests: this prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


import _engines  # noqa: E402  (bench/_engines.py: one child process per engine)

BENCH = "stock_sync"


def prepare() -> None:
    """After ``_engines.setup``: the bench drains explicitly, no broker round trips."""
    from django.conf import settings

    settings.HUB["STOCK_PUSH_ON_COMMIT"] = False


fmt_s = _engines.fmt_s


# --- data --------------------------------------------------------------------------------------------
def build_catalogue(n_items: int, n_channels: int, seed: int = 7):
    """n_items master items (1% bundles), global mappings, 8 locations, n_channels channels (half on a
    shared pool, half segregated), ~3 stock rows per item plus reserved/damaged rows, some holds."""
    from django.db import connection, transaction
    from django.utils import timezone

    from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
    from integration_hub.core.models import Channel, Connection, Location
    from integration_hub.inventory.models import ChannelStockRule, StockPool

    rnd = random.Random(seed)
    master = Connection.objects.create(name="bench-wair", system_type="wair", base_url="http://127.0.0.1:9/wair")
    shop = Connection.objects.create(
        name="bench-shop", system_type="commercetools", base_url="http://127.0.0.1:9/commercetools"
    )
    locs = [
        Location.objects.create(code=f"l{i}", name=f"L{i}", connection=master, external_id=f"L{i}") for i in range(8)
    ]
    pool = StockPool.objects.create(code="eu", name="EU")
    pool.locations.set(locs[:4])
    channels = []
    for k in range(n_channels):
        ch = Channel.objects.create(key=f"ch{k}", name=f"Channel {k}", connection=shop, external_id=f"sc-{k}")
        if k % 2 == 0:
            ChannelStockRule.objects.create(channel=ch, mode="shared", pool=pool, safety_buffer=k % 3)
        else:
            rule = ChannelStockRule.objects.create(channel=ch, mode="segregated", safety_buffer=k % 3)
            rule.locations.set(rnd.sample(locs[4:], 2))
        channels.append(ch)

    n_bundles = max(1, n_items // 100)
    with transaction.atomic(), connection.cursor() as cur:
        t_item = Item._meta.db_table
        cur.executemany(
            f"INSERT INTO {t_item} (sku, name, parent_sku, attributes, is_bundle, active, barcode, weight_unit, "
            "pending, source, updated_at) "
            "VALUES (%s, '', '', '{}', %s, %s, '', '', FALSE, 'bench', CURRENT_TIMESTAMP)",
            [(f"M{n:07d}", n >= n_items - n_bundles, True) for n in range(n_items)],
        )
        ids = list(Item.objects.order_by("id").values_list("id", flat=True))
        plain, bundles = ids[:-n_bundles], ids[-n_bundles:]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cur.executemany(
            f"INSERT INTO {SkuMapping._meta.db_table} (item_id, channel_id, storefront_sku, storefront_product, "
            f"safety_buffer, active, created_at, updated_at) VALUES (%s, NULL, %s, '', %s, %s, %s, %s)",
            [(i, f"SF{i}", (rnd.choice([0, 1, 4]) if rnd.random() < 0.02 else None), True, now, now) for i in ids],
        )
        cur.executemany(
            f"INSERT INTO {BundleComponent._meta.db_table} (bundle_id, component_id, quantity) VALUES (%s, %s, %s)",
            [(b, c, q) for b in bundles for c, q in zip(rnd.sample(plain, 2), (1, rnd.randint(1, 3)))],
        )
        rows = []
        for i in plain:
            for loc in rnd.sample(locs, 3):
                rows.append((i, loc.pk, "available", rnd.randint(0, 40), now))
            r = rnd.random()
            if r < 0.10:
                rows.append((i, rnd.choice(locs).pk, "reserved", rnd.randint(1, 5), now))
            elif r < 0.15:
                rows.append((i, rnd.choice(locs).pk, "damaged", rnd.randint(1, 5), now))
        # multi-row statements, as the stock apply writes (a statement per row would run the on-hand triggers,
        # statement-level on PostgreSQL, once per row)
        for start in range(0, len(rows), 5000):
            part = rows[start : start + 5000]
            cur.execute(
                "INSERT INTO inventory_stocklevel (item_id, location_id, state, quantity, updated_at) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s)"] * len(part))
                + " ON CONFLICT DO NOTHING",
                [v for row in part for v in row],
            )
        cur.executemany(
            "INSERT INTO inventory_reservation (item_id, channel_id, order_ref, quantity, created_at, released_at, release_reason) "
            "VALUES (%s, %s, %s, %s, %s, NULL, '')",
            [
                (rnd.choice(plain), rnd.choice(channels).pk, f"o{n}", rnd.randint(1, 2), now)
                for n in range(max(10, n_items // 50))
            ],
        )
    cur = connection.cursor()
    cur.execute("ANALYZE")
    return master, shop, channels, locs, ids


class PreloadedLoop:
    """The better per-row loop: rules, locations, overlaps, mappings and bundle recipes loaded once,
    then per pair one stock aggregate and one reservation aggregate (more for bundles)."""

    def __init__(self):
        from collections import defaultdict

        from integration_hub.catalog.models import BundleComponent, SkuMapping
        from integration_hub.inventory import outbox
        from integration_hub.inventory.models import ChannelStockRule

        self.locs = defaultdict(set)
        for c, loc in outbox.channel_locations():
            self.locs[c].add(loc)
        self.overlap = {c: [o for o in self.locs if self.locs[c] & self.locs[o]] for c in self.locs}
        self.buffer = dict(ChannelStockRule.objects.values_list("channel_id", "safety_buffer"))
        self.mapping = {}
        for item_id, channel_id, buf in (
            SkuMapping.objects.filter(active=True).order_by("id").values_list("item_id", "channel_id", "safety_buffer")
        ):
            self.mapping.setdefault((item_id, channel_id), buf)
        self.recipe = defaultdict(list)
        for b, c, q in BundleComponent.objects.values_list("bundle_id", "component_id", "quantity"):
            self.recipe[b].append((c, q))

    def raw(self, channel_id, item_id):
        from django.db.models import Q, Sum

        from integration_hub.inventory.models import Reservation, StockLevel

        agg = StockLevel.objects.filter(item_id=item_id, location_id__in=self.locs[channel_id]).aggregate(
            a=Sum("quantity", filter=Q(state="available")), r=Sum("quantity", filter=Q(state="reserved"))
        )
        held = (
            Reservation.objects.filter(
                item_id=item_id, channel_id__in=self.overlap[channel_id], released_at__isnull=True
            ).aggregate(s=Sum("quantity"))["s"]
            or 0
        )
        return max(0, (agg["a"] or 0) - (agg["r"] or 0) - held)

    def own_buffer(self, channel_id, item_id):
        key = (item_id, channel_id) if (item_id, channel_id) in self.mapping else (item_id, None)
        return self.mapping.get(key)

    def ats(self, channel_id, item_id):
        if (
            (item_id, channel_id) not in self.mapping and (item_id, None) not in self.mapping
        ) or channel_id not in self.locs:
            return None
        own = self.own_buffer(channel_id, item_id)
        if item_id in self.recipe:

            def comp_ats(c):
                b = self.own_buffer(channel_id, c)
                return max(0, self.raw(channel_id, c) - (b if b is not None else self.buffer[channel_id]))

            base = min(comp_ats(c) // q for c, q in self.recipe[item_id])
            return max(0, base - (own or 0))
        return max(0, self.raw(channel_id, item_id) - (own if own is not None else self.buffer[channel_id]))


def bench_floor(channel_ids: list[int], repeat: int = 2) -> dict:
    """Issue 19, item 2: the engine's own floor for a result the size of the recompute.

    * floor write: one plain ``INSERT … SELECT`` producing the same rows (channel × mapping, a constant-cost
      expression for the figure) into a table of the same shape;
    * hub write: the hub's own ATS statement (:func:`ats._sql`) written the same way, ``INSERT … SELECT * FROM (…)``;
    * floor fetch: the plain ``SELECT`` of the same rows fetched into this process;
    * hub ``ats.compute``: the recompute as the hub calls it (statement + fetch + one ``Ats`` per row).
    Best of ``repeat`` runs each (fresh table, same connection). The ratios are hub ÷ floor."""
    from django.db import connection, transaction

    from integration_hub.catalog.models import SkuMapping
    from integration_hub.inventory import ats
    from integration_hub.inventory.models import ChannelStockRule

    rule_t, map_t = ChannelStockRule._meta.db_table, SkuMapping._meta.db_table
    ids = sorted(channel_ids)
    marks = ", ".join(["%s"] * len(ids))
    floor_select = (
        f"SELECT r.channel_id, m.item_id, m.storefront_sku, m.item_id %% 50 FROM {rule_t} r CROSS JOIN {map_t} m "
        f"WHERE m.channel_id IS NULL AND m.active = %s AND r.channel_id IN ({marks})"
    )
    floor_params = [True, *ids]
    hub_sql, hub_params = ats._sql(None, len(ids)), ats._params(None, ids)
    cols = "(channel_id, item_id, storefront_sku, quantity)"

    def timed_write(select: str, params: list) -> tuple[float, int]:
        best, n = float("inf"), 0
        for _ in range(repeat):
            with connection.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS bench_ats_out")
                cur.execute(
                    "CREATE TABLE bench_ats_out (channel_id bigint NOT NULL, item_id bigint NOT NULL, "
                    "storefront_sku varchar(255) NOT NULL, quantity integer NOT NULL)"
                )
            t0 = time.perf_counter()
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(f"INSERT INTO bench_ats_out {cols} SELECT * FROM ({select}) x", params)
                n = cur.rowcount
            best = min(best, time.perf_counter() - t0)
        return best, n

    def timed(fn) -> tuple[float, int]:
        best, n = float("inf"), 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            n = fn()
            best = min(best, time.perf_counter() - t0)
        return best, n

    def fetch_floor():
        with connection.cursor() as cur:
            cur.execute(floor_select, floor_params)
            return len(cur.fetchall())

    out = {}
    out["floor_write"], out["floor_rows"] = timed_write(floor_select, floor_params)
    out["hub_write"], out["hub_rows"] = timed_write(hub_sql, hub_params)
    out["floor_fetch"], _ = timed(fetch_floor)
    out["hub_compute"], out["compute_rows"] = timed(lambda: len(ats.compute(ids)))
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_ats_out")
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + hub_sql, hub_params)
            plan = "\n".join(r[0] for r in cur.fetchall())
        path = Path(os.environ.get("HUB_BENCH_PLAN_DIR", tempfile.gettempdir())) / "bench_ats_plan_postgresql.txt"
        path.write_text(plan)
        out["plan_file"] = str(path)
    return out


def bench_ats(quick: bool, loops: bool = True, items: int = 0) -> tuple:
    from django.db import connection

    from integration_hub.inventory import ats

    n_items, n_channels = (items or (10_000 if quick else 100_000)), 10
    t0 = time.perf_counter()
    master, shop, channels, locs, ids = build_catalogue(n_items, n_channels)
    print(f"    built {n_items:,} items × {n_channels} channels in {fmt_s(time.perf_counter() - t0)}", flush=True)
    out = []
    sample = 150 if quick else 300
    # per-row loops: time a random sample of pairs, extrapolate to the full row count
    rnd = random.Random(3)
    pairs = [(rnd.choice(channels).pk, rnd.choice(ids)) for _ in range(sample - 10)]
    pairs += [(rnd.choice(channels).pk, b) for b in ids[-10:]]  # the last 1% of items are bundles: include some
    t0 = time.perf_counter()
    for c, i in pairs:
        ats.naive_for_pair(c, i)
    per_pair_naive = (time.perf_counter() - t0) / sample
    loop = PreloadedLoop()
    t0 = time.perf_counter()
    for c, i in pairs:
        loop.ats(c, i)
    per_pair_loop = (time.perf_counter() - t0) / sample
    for k, (label, chans) in enumerate(
        ((f"{n_items // 1000}k", channels[:1]), (f"{n_items * n_channels // 1000}k", channels))
    ):
        t0 = time.perf_counter()
        rows = ats.compute([c.pk for c in chans])
        elapsed = time.perf_counter() - t0
        print(f"    {label:>6} rows: set-based {fmt_s(elapsed)}", flush=True)
        loop_time, loop_measured = per_pair_loop * len(rows), False
        if k == 0 and loops:  # the smaller set: run the whole per-row loop (about 1.5 min at 100k on 2 cores)
            t0 = time.perf_counter()
            for a in rows:
                loop.ats(a.channel_id, a.item_id)
            loop_time, loop_measured = time.perf_counter() - t0, True
            print(f"    {label:>6} rows: per-row loop, every row, {fmt_s(loop_time)}", flush=True)
        out.append((label, len(rows), elapsed, per_pair_naive * len(rows), loop_time, sample, loop_measured))
    # the loop must agree with the query (same rules), or the comparison means nothing
    check = ats.for_pairs(pairs)
    mismatches = sum(1 for c, i in pairs if (check[(c, i)].quantity if (c, i) in check else None) != loop.ats(c, i))
    print(f"    sample check: per-row loop and set-based agree on {sample - mismatches}/{sample} pairs", flush=True)
    floor = bench_floor([c.pk for c in channels])
    print(
        f"    floor: INSERT … SELECT of {floor['floor_rows']:,} rows {fmt_s(floor['floor_write'])}; the hub's statement "
        f"written the same way {fmt_s(floor['hub_write'])} ({floor['hub_rows']:,} rows); plain SELECT fetched "
        f"{fmt_s(floor['floor_fetch'])}; ats.compute {fmt_s(floor['hub_compute'])}",
        flush=True,
    )
    connection.close()
    return out, floor, mismatches


def bench_apply_cost(quick: bool) -> dict:
    """What keeping the on-hand figure costs the write path (inventory/on_hand.py): webhook-sized batches of raw
    master changes through ``apply_stock_changes`` with the database's on-hand triggers installed and with them
    dropped, alternately, best of each (the triggers are reinstalled, and the table rebuilt, at the end)."""
    from django.db import connection

    from connectors.base import StockChange
    from integration_hub.catalog.models import Item
    from integration_hub.core.models import Connection
    from integration_hub.inventory import on_hand
    from integration_hub.inventory.models import PendingPush
    from integration_hub.inventory.services import apply_stock_changes

    master = Connection.objects.get(name="bench-wair")
    skus = list(Item.objects.filter(is_bundle=False, sku__startswith="M").values_list("sku", flat=True))
    rnd = random.Random(5)
    batches, batch = (3 if quick else 5), 1_000
    best = {True: float("inf"), False: float("inf")}
    for _round in range(2):
        for with_triggers in (True, False):
            (on_hand.install if with_triggers else on_hand.uninstall)(connection)
            t0 = time.perf_counter()
            for _ in range(batches):
                apply_stock_changes(
                    master,
                    [StockChange(rnd.choice(skus), f"L{rnd.randrange(8)}", rnd.randint(0, 60)) for _ in range(batch)],
                )
            best[with_triggers] = min(best[with_triggers], (time.perf_counter() - t0) / batches)
            PendingPush.objects.all().delete()
    on_hand.install(connection)
    return {"with": best[True], "without": best[False], "batch": batch}


# --- sandbox + push throughput ---------------------------------------------------------------------
def start_sandbox():
    from connectors.sandbox import make_server

    server = make_server(port=0)
    server.start_in_thread()
    return server


def bench_push(server, quick: bool, rate: float, headroom: float = 0.95) -> dict | str:
    import requests

    try:
        from connectors.registry import connector_class

        connector_class("commercetools")
    except Exception as exc:  # connector not available in this checkout
        return f"skipped: commercetools connector not available ({exc})"
    if "commercetools" not in server.emulators:
        return "skipped: commercetools sandbox emulator not available"
    from django.db import transaction

    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Channel, Connection, Location
    from integration_hub.inventory import outbox, push
    from integration_hub.inventory.models import ChannelStockRule, PendingPush, StockLevel

    n_items = 300 if quick else 1000
    base = server.url
    conn = Connection.objects.create(
        name="bench-ct",
        system_type="commercetools",
        base_url=f"{base}/commercetools",
        auth_url=f"{base}/commercetools",
        client_id="hub-demo",
        options={"project_key": "bench"},
        rate_limit_per_second=rate * headroom,
        rate_limit_burst=max(1, int(rate // 5 * headroom)),
        max_retries=8,
        timeout_seconds=10,
    )
    conn.set_secret("hub-demo-secret")  # the sandbox's demo client
    conn.save()
    master = Connection.objects.get(name="bench-wair")
    loc = Location.objects.create(code="push-l", name="push", connection=master, external_id="PUSH")
    ch = Channel.objects.create(key="push-ch", name="push", connection=conn, external_id="bench-supply")
    rule = ChannelStockRule.objects.create(channel=ch, mode="segregated")
    rule.locations.set([loc])
    items = [Item(sku=f"P{n:05d}") for n in range(n_items)]
    Item.objects.bulk_create(items)
    items = list(Item.objects.filter(sku__startswith="P").order_by("id"))
    SkuMapping.objects.bulk_create([SkuMapping(item=i, channel=ch, storefront_sku=f"PUSH-{i.sku}") for i in items])
    StockLevel.objects.bulk_create([StockLevel(item=i, location=loc, quantity=7) for i in items])
    skus = [f"PUSH-{i.sku}" for i in items]
    requests.post(
        f"{base}/_sandbox/commercetools/seed_catalog",
        json={"channels": ["bench-supply"], "skus": skus, "quantity": 0},
        timeout=60,
    ).raise_for_status()
    requests.post(
        f"{base}/_sandbox/commercetools/faults",
        json={"rate_limit_per_second": rate, "rate_limit_burst": max(1, int(rate // 5))},
        timeout=10,
    ).raise_for_status()
    requests.post(f"{base}/_sandbox/commercetools/stats", timeout=10)
    # (a)'s catalogue has global mappings, so creating this channel's rule queued those items here too;
    # (b) measures only its own SKUs.
    PendingPush.objects.filter(channel=ch).delete()
    with transaction.atomic():
        outbox.enqueue([i.pk for i in items], channel_ids=[ch.pk])
    t0 = time.perf_counter()
    totals, _ = push.drain(batch_size=200, time_budget=600)
    rounds = 0
    while PendingPush.objects.exists() and rounds < 5:  # rows in back-off after 429s the client gave up on
        rounds += 1
        time.sleep(0.5)
        PendingPush.objects.update(not_before=None)
        more, _ = push.drain(batch_size=200, time_budget=120)
        totals.add(more)
    if PendingPush.objects.exists():
        err = PendingPush.objects.exclude(last_error="").values_list("last_error", flat=True).first()
        print(f"    {PendingPush.objects.count()} rows still failing: {err}", flush=True)
    elapsed = time.perf_counter() - t0
    stats = requests.get(f"{base}/_sandbox/commercetools/stats", timeout=10).json()
    state = requests.post(f"{base}/_sandbox/commercetools/state", json={"skus": skus[:5]}, timeout=10).json()
    return {
        "targets": totals.pushed,
        "failed": totals.failed,
        "elapsed": elapsed,
        "requests": stats.get("requests", 0),
        "rate_limited": stats.get("rate_limited", 0),
        "rate": rate,
        "headroom": headroom,
        "sample_state": state.get("inventory", {}),
    }


# --- coalescing ------------------------------------------------------------------------------------
def bench_coalescing(server, quick: bool) -> dict:
    """Raw master changes through ``apply_stock_changes`` (webhook-sized batches), drained by the real
    push engine to the commercetools sandbox over HTTP (rate limit set high: this measures coalescing,
    (b) measures the limiter). Counts confirmed pushes and the HTTP requests the sandbox served."""
    import requests

    import connectors.registry as registry
    from connectors.base import StockChange
    from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
    from integration_hub.core.models import Channel, Connection
    from integration_hub.inventory import push
    from integration_hub.inventory.models import PendingPush
    from integration_hub.inventory.services import apply_stock_changes

    n_changes = 20_000 if quick else 100_000
    hot = 500  # a hot set: the same SKUs change again and again (sales, recounts, transfers)
    batch = 1_000  # one webhook / poll page
    drain_every = 10  # workers drain after every 10 pages (10k changes) — a busy, not idle, hub
    master = Connection.objects.get(name="bench-wair")
    shop = Connection.objects.get(name="bench-shop")
    base = server.url
    shop.base_url = shop.auth_url = f"{base}/commercetools"
    shop.client_id, shop.options = "hub-demo", {"project_key": "bench"}
    shop.rate_limit_per_second, shop.rate_limit_burst, shop.max_retries, shop.timeout_seconds = 5000, 500, 8, 30
    shop.set_secret("hub-demo-secret")
    shop.save()
    registry.clear_cache()
    hot_items = list(
        Item.objects.filter(is_bundle=False, sku__startswith="M").order_by("id").values_list("id", "sku")[:hot]
    )
    skus = [sku for _, sku in hot_items]
    # every storefront SKU a change to the hot items can push: theirs and their bundles'
    affected = {i for i, _ in hot_items} | set(
        BundleComponent.objects.filter(component_id__in=[i for i, _ in hot_items]).values_list("bundle_id", flat=True)
    )
    sf_skus = sorted(
        set(SkuMapping.objects.filter(item_id__in=affected, active=True).values_list("storefront_sku", flat=True))
    )
    ext = list(Channel.objects.filter(connection=shop).values_list("external_id", flat=True))
    requests.post(
        f"{base}/_sandbox/commercetools/faults", json={"rate_limit_per_second": 0}, timeout=10
    ).raise_for_status()
    requests.post(
        f"{base}/_sandbox/commercetools/seed_catalog",
        json={"channels": ext, "skus": sf_skus, "quantity": 0},
        timeout=120,
    ).raise_for_status()
    requests.post(f"{base}/_sandbox/commercetools/stats", timeout=10)  # reset the counters
    locs = [f"L{i}" for i in range(8)]
    rnd = random.Random(11)
    PendingPush.objects.all().delete()
    totals = push.BatchResult()
    uncoalesced = applied = drains = 0

    def drain():
        nonlocal uncoalesced, drains
        uncoalesced += sum(PendingPush.objects.values_list("changes", flat=True))  # one push per change per channel
        res, _ = push.drain(batch_size=500, time_budget=600)
        totals.add(res)
        drains += 1

    t0 = time.perf_counter()
    for n, start in enumerate(range(0, n_changes, batch), 1):
        changes = [
            StockChange(rnd.choice(skus), rnd.choice(locs), rnd.randint(0, 60))
            for _ in range(min(batch, n_changes - start))
        ]
        applied += apply_stock_changes(master, changes).applied
        if n % drain_every == 0:
            drain()
    if PendingPush.objects.exists():
        drain()
    elapsed = time.perf_counter() - t0
    stats = requests.get(f"{base}/_sandbox/commercetools/stats", timeout=10).json()
    return {
        "changes": n_changes,
        "applied": applied,
        "pushes": totals.pushed,
        "failed": totals.failed,
        "requests": stats.get("requests", 0),
        "drains": drains,
        "elapsed": elapsed,
        "uncoalesced": uncoalesced,
        "skus": hot,
        "left": PendingPush.objects.count(),
    }


def child(args, engine: str, tmp: str) -> dict:
    """One engine: (a) ATS + floor, (b) push throughput, (c) coalescing. Returns the figures as JSON-able data."""
    prepare()
    from django.db import connection

    print(
        f"stock_sync bench ({'quick' if args.quick else 'full'}) — {_engines.LABELS[engine]} ({connection.vendor})",
        flush=True,
    )
    print("(a) ATS recompute", flush=True)
    ats_rows, floor, mismatches = bench_ats(args.quick, loops=not args.ats_only, items=args.items)
    out = {"ats": ats_rows, "floor": floor, "mismatches": mismatches}
    print("(a3) what the maintained on-hand figure costs the stock apply", flush=True)
    out["apply"] = bench_apply_cost(args.quick)
    if args.ats_only:
        return out
    server = start_sandbox()
    print(f"(b) push throughput (sandbox at {server.url}, limit {args.rate:g} req/s)", flush=True)
    out["push"] = bench_push(server, args.quick, args.rate, args.headroom)
    print("(c) coalescing", flush=True)
    out["coal"] = bench_coalescing(server, args.quick)
    server.shutdown()
    return out


def report(results: dict, skipped: dict, args) -> None:
    engines = list(results)
    rows: list[tuple[str, dict]] = []

    row = _engines.row_adder(rows, results)

    rows.append(("(a) ATS recompute", {}))
    for k in range(2):
        row(f"    rows (SKU × channel) [{k}]", lambda r, k=k: f"{r['ats'][k][1]:,}")
        row("    set-based ats.compute", lambda r, k=k: fmt_s(r["ats"][k][2]))
        row(
            "    per-row loop (preloaded rules)†",
            lambda r, k=k: (
                f"{fmt_s(r['ats'][k][4])}{'' if r['ats'][k][6] else '*'} = {r['ats'][k][4] / r['ats'][k][2]:,.0f}×"
            ),
        )
        row(
            "    naive ORM spec (extrapolated)*",
            lambda r, k=k: f"{fmt_s(r['ats'][k][3])} = {r['ats'][k][3] / r['ats'][k][2]:,.0f}×",
        )
    row("    sample check (loop = set-based)", lambda r: f"{r['ats'][0][5] - r['mismatches']}/{r['ats'][0][5]}")
    rows.append(("(a2) ATS vs the engine's floor (issue 19 #2)", {}))
    row("    rows written", lambda r: f"{r['floor']['hub_rows']:,}")
    row("    floor: plain INSERT … SELECT", lambda r: fmt_s(r["floor"]["floor_write"]))
    row("    hub ATS statement, INSERT … SELECT", lambda r: fmt_s(r["floor"]["hub_write"]))
    row(
        "      ratio (goal ≤ 3× on PostgreSQL)", lambda r: f"{r['floor']['hub_write'] / r['floor']['floor_write']:.1f}×"
    )
    row("    floor: plain SELECT fetched", lambda r: fmt_s(r["floor"]["floor_fetch"]))
    row("    hub ats.compute (fetch + objects)", lambda r: fmt_s(r["floor"]["hub_compute"]))
    row("      ratio", lambda r: f"{r['floor']['hub_compute'] / r['floor']['floor_fetch']:.1f}×")
    rows.append(("(a3) stock apply, 1,000-change batches (the on-hand triggers' cost)", {}))
    row("    with the on-hand triggers", lambda r: fmt_s(r["apply"]["with"]) if r.get("apply") else "—")
    row("    without them", lambda r: fmt_s(r["apply"]["without"]) if r.get("apply") else "—")
    row(
        "      ratio",
        lambda r: f"{r['apply']['with'] / r['apply']['without']:.2f}×" if r.get("apply") else "—",
    )
    rows.append((f"(b) push throughput, limit {args.rate:g} req/s", {}))

    def push(fn):
        return lambda r: "skipped" if isinstance(r["push"], str) else fn(r["push"])

    row("    targets confirmed", push(lambda p: f"{p['targets']:,} in {fmt_s(p['elapsed'])}"))
    row(
        "    req/s (utilisation of the limit)",
        push(lambda p: f"{p['requests'] / p['elapsed']:.1f} ({100 * p['requests'] / p['elapsed'] / p['rate']:.0f}%)"),
    )
    row("    429s seen", push(lambda p: f"{p['rate_limited']}"))
    rows.append(("(c) coalescing", {}))
    row("    raw master changes", lambda r: f"{r['coal']['changes']:,} in {fmt_s(r['coal']['elapsed'])}")
    row("    pushes without coalescing", lambda r: f"{r['coal']['uncoalesced']:,}")
    row(
        "    pushes confirmed via the outbox",
        lambda r: f"{r['coal']['pushes']:,} ({r['coal']['uncoalesced'] / max(1, r['coal']['pushes']):.1f}× fewer)",
    )
    row("    rows left / failed attempts", lambda r: f"{r['coal']['left']} / {r['coal']['failed']}")
    notes = [
        "† rules preloaded, 2 queries per pair; * extrapolated from a random sample (a full run would take too long)",
        "[0] = one channel, [1] = every channel; the floor and the goal are measured on [1]",
    ]
    pg = results.get("postgresql")
    if pg:
        ratio = pg["floor"]["hub_write"] / pg["floor"]["floor_write"]
        notes.append(
            _engines.goal(
                ratio <= 3,
                f"ATS within 3× of the PostgreSQL floor: {ratio:.1f}× at {pg['floor']['hub_rows']:,} rows"
                + ("" if ratio <= 3 else " — see README 'Performance' for why"),
            )
        )
        if pg["floor"].get("plan_file"):
            notes.append(f"EXPLAIN ANALYZE of the hub statement on PostgreSQL: {pg['floor']['plan_file']}")
    _engines.print_table(f"stock_sync ({'quick' if args.quick else 'full'})", rows, engines, skipped, notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (10k items: 100k rows) for a fast check")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="sandbox + connection rate limit, requests/s (default 50)"
    )
    parser.add_argument(
        "--headroom",
        type=float,
        default=0.95,
        help="the connection's configured rate as a share of the API's limit (default 0.95: request "
        "timing jitter then never trips the server's bucket; 1.0 runs right at the limit)",
    )
    parser.add_argument(
        "--ats-only", action="store_true", help="only (a): the recompute and its floor, no per-row loops"
    )
    parser.add_argument(
        "--items", type=int, default=0, help="items in (a) (default 100,000; 10,000 with --quick); × 10 channels"
    )
    _engines.add_engine_args(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
