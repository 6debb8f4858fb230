"""Scale-out benchmark (issue 19, item 5): 1, 2 and 4 real worker processes draining the stock outbox to one
rate-limited storefront and to two, on every reachable engine (bench/_engines.py), side by side.

Each storefront is its own commercetools sandbox server (its own limit, 50 req/s by default); the hub's
connections run at 95% of it. For every (storefronts, workers) the bench queues N SKUs per storefront with new
figures, then starts that many worker processes, each running the push engine the ``inventory.push_pending``
task runs (``push.drain`` — claims with ``SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite; HTTP
rate-limited per connection through the shared limiter: Redis with PostgreSQL, the host's file bucket
embedded) until nothing is claimable. Printed: requests/s per storefront over the push window and its share of
the limit, 429s, rows left, and the workers' CPU seconds per 1,000 pushes (hub processes only; the database
server's and the sandbox's CPU are not in it).

Goal: per storefront ≥ 95% of its limit with 0 × 429 from any number of workers; total throughput grows with
the number of storefronts until the CPU is the limit.

``python bench/scaleout.py`` (1,500 SKUs per storefront) or ``--quick`` (300). Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _engines  # noqa: E402

BENCH = "scaleout"


def worker_main(args) -> int:
    """One worker process: drain until nothing is claimable, then print its CPU seconds and totals as JSON."""
    _engines.setup(args.engine, BENCH, args.tmp, migrate=False)
    from django.conf import settings

    settings.HUB["STOCK_PUSH_ON_COMMIT"] = False
    from integration_hub.inventory import push

    pushed = failed = 0
    idle_since = None
    while True:
        totals, _ = push.drain(batch_size=args.batch, time_budget=600)
        pushed, failed = pushed + totals.pushed, failed + totals.failed
        if totals.claimed:
            idle_since = None
            continue
        if not push.has_claimable():
            # other workers may still hold leased rows; a row in back-off becomes claimable later
            from integration_hub.inventory.models import PendingPush

            if not PendingPush.objects.exists():
                break
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 30:
                break
        time.sleep(0.05)
    t = os.times()
    print(json.dumps({"cpu": t.user + t.system, "pushed": pushed, "failed": failed}), flush=True)
    return 0


def build(urls: list[str], n: int, rate: float, headroom: float):
    import requests

    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Channel, Connection, Location
    from integration_hub.inventory.models import ChannelStockRule, PendingPush, StockLevel

    master = Connection.objects.create(name="bench-wair", system_type="wair", base_url="http://127.0.0.1:9/wair")
    loc = Location.objects.create(code="dc1", name="DC1", connection=master, external_id="DC1")
    channels = []
    for k, url in enumerate(urls):
        ct = Connection(
            name=f"bench-ct{k}",
            system_type="commercetools",
            base_url=f"{url}/commercetools",
            auth_url=f"{url}/commercetools",
            client_id="hub-demo",
            options={"project_key": "bench"},
            rate_limit_per_second=rate * headroom,
            rate_limit_burst=max(1, int(rate // 5 * headroom)),
            max_retries=8,
            timeout_seconds=10,
        )
        ct.set_secret("hub-demo-secret")
        ct.save()
        items = Item.objects.bulk_create([Item(sku=f"S{k}-{i:05d}") for i in range(n)])
        items = list(Item.objects.filter(sku__startswith=f"S{k}-").order_by("id"))
        ch = Channel.objects.create(key=f"web{k}", name=f"web{k}", connection=ct, external_id="bench-supply")
        SkuMapping.objects.bulk_create([SkuMapping(item=i, channel=ch, storefront_sku=i.sku) for i in items])
        StockLevel.objects.bulk_create([StockLevel(item=i, location=loc, quantity=1) for i in items])
        rule = ChannelStockRule.objects.create(channel=ch, mode="segregated")
        rule.locations.set([loc])
        requests.post(
            f"{url}/_sandbox/commercetools/seed_catalog",
            json={"channels": ["bench-supply"], "skus": [i.sku for i in items], "quantity": 0},
            timeout=120,
        ).raise_for_status()
        requests.post(
            f"{url}/_sandbox/commercetools/faults",
            json={"rate_limit_per_second": rate, "rate_limit_burst": max(1, int(rate // 5))},
            timeout=10,
        ).raise_for_status()
        channels.append((ch, items))
    PendingPush.objects.all().delete()
    from integration_hub.celery import app

    app.control.purge()
    return channels


def hook_writes(emu, log: list, lock: threading.Lock) -> None:
    for k, (method, rx, handler) in enumerate(emu.routes):

        def wrapped(req, _h=handler):
            with lock:
                log.append(time.monotonic())
            return _h(req)

        wrapped.__name__ = getattr(handler, "__name__", "handler")
        emu.routes[k] = (method, rx, wrapped)


def run_once(engine: str, tmp: str, channels, servers, logs, lock, n_workers: int, figure: int, batch: int) -> dict:
    from django.db import transaction

    from integration_hub.inventory import outbox
    from integration_hub.inventory.models import PendingPush, StockLevel

    item_ids = [i.pk for _, items in channels for i in items]
    StockLevel.objects.filter(item_id__in=item_ids).update(quantity=figure)  # a new figure for every SKU
    with transaction.atomic():
        outbox.enqueue(item_ids, channel_ids=[ch.pk for ch, _ in channels])
    queued = PendingPush.objects.count()
    stats0 = [
        (s.emulators["commercetools"].stats.requests, s.emulators["commercetools"].stats.rate_limited) for s in servers
    ]
    with lock:
        for log in logs:
            log.clear()
    procs = [
        _engines.spawn(
            engine,
            BENCH,
            tmp,
            [sys.executable, __file__, "--worker", "--engine", engine, "--tmp", tmp, "--batch", str(batch)],
            f"worker{k}",
        )
        for k in range(n_workers)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.wait(timeout=3600)
    wall = time.monotonic() - t0
    cpu = pushed = failed = 0
    for k in range(n_workers):
        lines = (Path(tmp) / f"worker{k}.log").read_text().strip().splitlines()
        try:
            data = json.loads(lines[-1])
        except (IndexError, ValueError):
            print(f"    worker{k} gave no result: {lines[-5:]}", flush=True)
            continue
        cpu, pushed, failed = cpu + data["cpu"], pushed + data["pushed"], failed + data["failed"]
    per = []
    for s, log, (r0, l0) in zip(servers, logs, stats0):
        st = s.emulators["commercetools"].stats
        with lock:
            times = sorted(log)
        window = (times[-1] - times[0]) if len(times) > 1 else float("nan")
        per.append(
            {
                "requests": st.requests - r0,
                "rate_limited": st.rate_limited - l0,
                "window": window,
                "rps": (len(times) - 1) / window if len(times) > 1 else 0.0,
            }
        )
    return {
        "workers": n_workers,
        "storefronts": len(channels),
        "queued": queued,
        "pushed": pushed,
        "failed": failed,
        "left": PendingPush.objects.count(),
        "cpu": cpu,
        "wall": wall,
        "per": per,
    }


def child(args, engine: str, tmp: str) -> dict:
    from django.conf import settings

    from connectors.sandbox import make_server

    settings.HUB["STOCK_PUSH_ON_COMMIT"] = False
    servers = [make_server(port=0), make_server(port=0)]
    for s in servers:
        s.start_in_thread()
    logs, lock = [[], []], threading.Lock()
    for s, log in zip(servers, logs):
        hook_writes(s.emulators["commercetools"], log, lock)
    n = args.skus or (300 if args.quick else 1500)
    try:
        all_channels = build([s.url for s in servers], n, args.limit, args.headroom)
        out, figure = [], 10
        for n_sf in (1, 2):
            for w in args.workers:
                figure += 1
                r = run_once(engine, tmp, all_channels[:n_sf], servers[:n_sf], logs[:n_sf], lock, w, figure, args.batch)
                print(
                    f"    {n_sf} storefront(s), {w} worker(s): "
                    + ", ".join(f"{p['rps']:.1f} req/s ({p['rate_limited']} × 429)" for p in r["per"])
                    + f"; {r['pushed']:,} pushed, {r['left']} left, {r['cpu']:.1f} CPU s",
                    flush=True,
                )
                out.append(r)
        return {"runs": out, "limit": args.limit, "headroom": args.headroom, "skus": n, "cores": os.cpu_count()}
    finally:
        for s in servers:
            s.shutdown()


def report(results: dict, skipped: dict, args) -> None:
    engines = list(results)
    rows: list[tuple[str, dict]] = []
    first = next(iter(results.values()), None)
    if not first:
        _engines.print_table("scaleout", rows, engines, skipped)
        return
    rows.append(
        (
            f"{first['skus']:,} SKUs per storefront, limit {first['limit']:g} req/s each (connections at {first['headroom']:.0%})",
            {},
        )
    )
    notes = []
    for k, run in enumerate(first["runs"]):
        label = (
            f"{run['storefronts']} storefront{'s' if run['storefronts'] > 1 else ''}, {run['workers']} "
            f"worker{'s' if run['workers'] > 1 else ''}"
        )

        def get(fn, k=k):
            vals = {}
            for e, res in results.items():
                try:
                    vals[e] = fn(res["runs"][k], res)
                except (KeyError, IndexError, TypeError, ZeroDivisionError):
                    vals[e] = "—"
            return vals

        rows.append((label, {}))
        rows.append(
            (
                "    req/s per storefront (% of limit)",
                get(
                    lambda r, res: " + ".join(
                        f"{p['rps']:.1f} ({100 * p['rps'] / res['limit']:.0f}%)" for p in r["per"]
                    )
                ),
            )
        )
        rows.append(
            ("    429s / rows left", get(lambda r, res: f"{sum(p['rate_limited'] for p in r['per'])} / {r['left']}"))
        )
        rows.append(("    total pushes/s", get(lambda r, res: f"{sum(p['rps'] for p in r['per']):.1f}")))
        rows.append(
            ("    worker CPU s per 1,000 pushes", get(lambda r, res: f"{1000 * r['cpu'] / max(1, r['pushed']):.1f}"))
        )
        for e, res in results.items():
            r = res["runs"][k]
            worst = min(p["rps"] / res["limit"] for p in r["per"])
            limited = sum(p["rate_limited"] for p in r["per"])
            ok = worst >= 0.95 and limited == 0 and r["left"] == 0
            notes.append(
                f"{_engines.LABELS[e]}, {label}: "
                + _engines.goal(
                    ok,
                    f"every storefront ≥ 95% of its limit with 0 × 429: worst {worst:.0%}, {limited} × 429, {r['left']} rows left",
                )
            )
    notes.append(
        "the connections are configured at 95% of the API's limit (their burst lets a short run show a little more); "
        "req/s are measured over each storefront's first to last request"
    )
    _engines.print_table(f"scaleout ({'quick' if args.quick else 'full'})", rows, engines, skipped, notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 SKUs per storefront")
    parser.add_argument("--skus", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--batch", type=int, default=50, help="rows per claimed batch (default 50: work spreads over workers)"
    )
    parser.add_argument("--limit", type=float, default=50.0)
    parser.add_argument("--headroom", type=float, default=0.95)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    _engines.add_engine_args(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
