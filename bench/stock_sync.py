"""Stock sync benchmark — prints, side by side in one run:

(a) ATS recompute for 100k and 1M (SKU × channel) rows: the set-based query vs a naive per-row loop
    (``ats.naive_for_pair``, the executable spec: ORM queries per pair). The preloaded per-row loop is
    run over every row of the 100k set; at 1M, and for the naive spec, loops are timed on a sample and
    extrapolated — the output marks which figures are extrapolated.
(b) push throughput against the commercetools sandbox with a configured rate limit: requests/s achieved
    vs the limit (utilisation %), 429s seen.
(c) coalescing: 100k raw master changes (webhook-sized batches through ``apply_stock_changes``) →
    outbox rows → storefront pushes actually sent to the commercetools sandbox over HTTP.

Runs on its own: a throwaway SQLite database and broker under a temp dir, its own sandbox server on a
free port. ``python bench/stock_sync.py`` (about 3–4 minutes on 2 cores) or ``--quick`` (under a minute).
Benchmarks are never tests: this prints numbers, it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(tmp: str) -> None:
    os.environ["HUB_VAR_DIR"] = tmp
    os.environ["DJANGO_SETTINGS_MODULE"] = "integration_hub.settings"
    for var in ("DATABASE_URL", "REDIS_URL", "HUB_DB_NAME_OVERRIDE"):
        os.environ.pop(var, None)  # always the embedded size: a throwaway SQLite file
    os.environ["CELERY_BROKER_URL"] = f"sqla+sqlite:///{tmp}/bench-broker.sqlite3"
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("HUB_OUTBOUND_ALLOW", "127.0.0.1,localhost,::1")  # the bench's own loopback sandbox
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.HUB["STOCK_PUSH_ON_COMMIT"] = False  # the bench drains explicitly; no broker round trips
    call_command("migrate", verbosity=0)


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


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
    shop = Connection.objects.create(name="bench-shop", system_type="commercetools", base_url="http://127.0.0.1:9/commercetools")
    locs = [Location.objects.create(code=f"l{i}", name=f"L{i}", connection=master, external_id=f"L{i}") for i in range(8)]
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
        cur.executemany(f"INSERT INTO {t_item} (sku, name, parent_sku, attributes, is_bundle, active) VALUES (%s, '', '', '{{}}', %s, %s)",
                        [(f"M{n:07d}", n >= n_items - n_bundles, True) for n in range(n_items)])
        ids = list(Item.objects.order_by("id").values_list("id", flat=True))
        plain, bundles = ids[:-n_bundles], ids[-n_bundles:]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cur.executemany(f"INSERT INTO {SkuMapping._meta.db_table} (item_id, channel_id, storefront_sku, storefront_product, "
                        f"safety_buffer, active, created_at, updated_at) VALUES (%s, NULL, %s, '', %s, %s, %s, %s)",
                        [(i, f"SF{i}", (rnd.choice([0, 1, 4]) if rnd.random() < 0.02 else None), True, now, now) for i in ids])
        cur.executemany(f"INSERT INTO {BundleComponent._meta.db_table} (bundle_id, component_id, quantity) VALUES (%s, %s, %s)",
                        [(b, c, q) for b in bundles for c, q in zip(rnd.sample(plain, 2), (1, rnd.randint(1, 3)))])
        rows = []
        for i in plain:
            for loc in rnd.sample(locs, 3):
                rows.append((i, loc.pk, "available", rnd.randint(0, 40), now))
            r = rnd.random()
            if r < 0.10:
                rows.append((i, rnd.choice(locs).pk, "reserved", rnd.randint(1, 5), now))
            elif r < 0.15:
                rows.append((i, rnd.choice(locs).pk, "damaged", rnd.randint(1, 5), now))
        cur.executemany("INSERT OR IGNORE INTO inventory_stocklevel (item_id, location_id, state, quantity, updated_at) VALUES (%s, %s, %s, %s, %s)", rows)
        cur.executemany("INSERT INTO inventory_reservation (item_id, channel_id, order_ref, quantity, created_at, released_at, release_reason) "
                        "VALUES (%s, %s, %s, %s, %s, NULL, '')",
                        [(rnd.choice(plain), rnd.choice(channels).pk, f"o{n}", rnd.randint(1, 2), now) for n in range(max(10, n_items // 50))])
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
        for item_id, channel_id, buf in SkuMapping.objects.filter(active=True).order_by("id").values_list("item_id", "channel_id", "safety_buffer"):
            self.mapping.setdefault((item_id, channel_id), buf)
        self.recipe = defaultdict(list)
        for b, c, q in BundleComponent.objects.values_list("bundle_id", "component_id", "quantity"):
            self.recipe[b].append((c, q))

    def raw(self, channel_id, item_id):
        from django.db.models import Q, Sum

        from integration_hub.inventory.models import Reservation, StockLevel

        agg = StockLevel.objects.filter(item_id=item_id, location_id__in=self.locs[channel_id]).aggregate(
            a=Sum("quantity", filter=Q(state="available")), r=Sum("quantity", filter=Q(state="reserved")))
        held = Reservation.objects.filter(item_id=item_id, channel_id__in=self.overlap[channel_id],
                                          released_at__isnull=True).aggregate(s=Sum("quantity"))["s"] or 0
        return max(0, (agg["a"] or 0) - (agg["r"] or 0) - held)

    def own_buffer(self, channel_id, item_id):
        key = (item_id, channel_id) if (item_id, channel_id) in self.mapping else (item_id, None)
        return self.mapping.get(key)

    def ats(self, channel_id, item_id):
        if ((item_id, channel_id) not in self.mapping and (item_id, None) not in self.mapping) or channel_id not in self.locs:
            return None
        own = self.own_buffer(channel_id, item_id)
        if item_id in self.recipe:
            def comp_ats(c):
                b = self.own_buffer(channel_id, c)
                return max(0, self.raw(channel_id, c) - (b if b is not None else self.buffer[channel_id]))
            base = min(comp_ats(c) // q for c, q in self.recipe[item_id])
            return max(0, base - (own or 0))
        return max(0, self.raw(channel_id, item_id) - (own if own is not None else self.buffer[channel_id]))


def bench_ats(quick: bool) -> list[tuple]:
    from django.db import connection

    from integration_hub.inventory import ats

    n_items, n_channels = (10_000, 10) if quick else (100_000, 10)
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
    for k, (label, chans) in enumerate(((f"{n_items // 1000}k", channels[:1]), (f"{n_items * n_channels // 1000}k", channels))):
        t0 = time.perf_counter()
        rows = ats.compute([c.pk for c in chans])
        elapsed = time.perf_counter() - t0
        print(f"    {label:>6} rows: set-based {fmt_s(elapsed)}", flush=True)
        loop_time, loop_measured = per_pair_loop * len(rows), False
        if k == 0:  # the smaller set: run the whole per-row loop (about 1.5 min at 100k on 2 cores)
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
    connection.close()
    return out


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
        name="bench-ct", system_type="commercetools", base_url=f"{base}/commercetools", auth_url=f"{base}/commercetools",
        client_id="hub-demo", options={"project_key": "bench"},
        rate_limit_per_second=rate * headroom, rate_limit_burst=max(1, int(rate // 5 * headroom)), max_retries=8, timeout_seconds=10)
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
    requests.post(f"{base}/_sandbox/commercetools/seed_catalog", json={"channels": ["bench-supply"], "skus": skus, "quantity": 0}, timeout=60).raise_for_status()
    requests.post(f"{base}/_sandbox/commercetools/faults", json={"rate_limit_per_second": rate, "rate_limit_burst": max(1, int(rate // 5))}, timeout=10).raise_for_status()
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
    return {"targets": totals.pushed, "failed": totals.failed, "elapsed": elapsed, "requests": stats.get("requests", 0),
            "rate_limited": stats.get("rate_limited", 0), "rate": rate, "headroom": headroom, "sample_state": state.get("inventory", {})}


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
    hot_items = list(Item.objects.filter(is_bundle=False, sku__startswith="M").order_by("id").values_list("id", "sku")[:hot])
    skus = [sku for _, sku in hot_items]
    # every storefront SKU a change to the hot items can push: theirs and their bundles'
    affected = {i for i, _ in hot_items} | set(BundleComponent.objects.filter(component_id__in=[i for i, _ in hot_items])
                                               .values_list("bundle_id", flat=True))
    sf_skus = sorted(set(SkuMapping.objects.filter(item_id__in=affected, active=True).values_list("storefront_sku", flat=True)))
    ext = list(Channel.objects.filter(connection=shop).values_list("external_id", flat=True))
    requests.post(f"{base}/_sandbox/commercetools/faults", json={"rate_limit_per_second": 0}, timeout=10).raise_for_status()
    requests.post(f"{base}/_sandbox/commercetools/seed_catalog", json={"channels": ext, "skus": sf_skus, "quantity": 0},
                  timeout=120).raise_for_status()
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
        changes = [StockChange(rnd.choice(skus), rnd.choice(locs), rnd.randint(0, 60)) for _ in range(min(batch, n_changes - start))]
        applied += apply_stock_changes(master, changes).applied
        if n % drain_every == 0:
            drain()
    if PendingPush.objects.exists():
        drain()
    elapsed = time.perf_counter() - t0
    stats = requests.get(f"{base}/_sandbox/commercetools/stats", timeout=10).json()
    return {"changes": n_changes, "applied": applied, "pushes": totals.pushed, "failed": totals.failed,
            "requests": stats.get("requests", 0), "drains": drains, "elapsed": elapsed, "uncoalesced": uncoalesced,
            "skus": hot, "left": PendingPush.objects.count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (10k items) for a fast check")
    parser.add_argument("--rate", type=float, default=50.0, help="sandbox + connection rate limit, requests/s (default 50)")
    parser.add_argument("--headroom", type=float, default=0.95,
                        help="the connection's configured rate as a share of the API's limit (default 0.95: request "
                             "timing jitter then never trips the server's bucket; 1.0 runs right at the limit)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="hub-bench-stock-")
    started = time.perf_counter()
    try:
        setup_django(tmp)
        print(f"stock_sync bench ({'quick' if args.quick else 'full'}) — SQLite under {tmp}", flush=True)
        print("(a) ATS recompute", flush=True)
        ats_rows = bench_ats(args.quick)
        server = start_sandbox()
        print(f"(b) push throughput (sandbox at {server.url}, limit {args.rate:g} req/s)", flush=True)
        pushed = bench_push(server, args.quick, args.rate, args.headroom)
        print("(c) coalescing", flush=True)
        coal = bench_coalescing(server, args.quick)
        server.shutdown()

        print()
        print("=" * 96)
        print("(a) ATS recompute          rows   set-based   per-row loop†          ratio   naive ORM spec‡        ratio")
        for label, n, t_set, t_naive, t_loop, sample, measured in ats_rows:
            print(f"    {label:>6} SKU×channel {n:>9,}   {fmt_s(t_set):>9}   {fmt_s(t_loop):>9}{'' if measured else '*'}"
                  f"{' ' if measured else ''}  {t_loop / t_set:>9,.0f}×   {fmt_s(t_naive):>9}*  {t_naive / t_set:>9,.0f}×")
        print(f"    † rules preloaded, 2 queries per pair; ‡ inventory.ats.naive_for_pair. Without *: measured over every row. "
              f"* extrapolated from {ats_rows[0][5]} random pairs (a full run would take too long).")
        print("(b) push throughput")
        if isinstance(pushed, str):
            print(f"    {pushed}")
        else:
            rps = pushed["requests"] / pushed["elapsed"] if pushed["elapsed"] else 0.0
            print(f"    targets confirmed {pushed['targets']:,} (failed attempts {pushed['failed']}) in {fmt_s(pushed['elapsed'])}: "
                  f"{pushed['targets'] / pushed['elapsed']:.1f} SKUs/s")
            print(f"    HTTP requests {pushed['requests']:,} → {rps:.1f} req/s vs limit {pushed['rate']:g} req/s "
                  f"(connection set to {pushed['headroom']:.0%} of it; burst {max(1, int(pushed['rate'] // 5))}, connection {max(1, int(pushed['rate'] // 5 * pushed['headroom']))}, which a run starts with): "
                  f"utilisation {100 * rps / pushed['rate']:.0f}%, 429s seen {pushed['rate_limited']}")
        print("(c) coalescing")
        print(f"    {coal['changes']:,} raw master changes ({coal['skus']} hot SKUs × 8 locations, {coal['applied']:,} moved a quantity; "
              f"{fmt_s(coal['elapsed'])} incl. pushing)")
        print(f"    without coalescing: {coal['uncoalesced']:,} channel pushes (every change × every channel it feeds)")
        print(f"    with the outbox:    {coal['pushes']:,} pushes confirmed by the commercetools sandbox over HTTP in "
              f"{coal['drains']} drains ({coal['requests']:,} HTTP requests served, {coal['failed']} failed attempts, "
              f"{coal['left']} rows left) → {coal['uncoalesced'] / max(1, coal['pushes']):.1f}× fewer; "
              f"{coal['changes'] / max(1, coal['pushes']):.1f} raw changes per push")
        print("=" * 96)
        print(f"total {fmt_s(time.perf_counter() - started)}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
