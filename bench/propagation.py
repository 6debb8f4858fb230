"""Propagation latency benchmark (issue 19, item 3): a master change arriving by webhook → the storefront
confirming the new figure, p50 / p95 / p99, at sustained change rates over a rate-limited storefront, with the
queue depth over time — on every reachable engine (bench/_engines.py), printed side by side.

The production path, in real processes: signed WAIR stock webhooks are POSTed to the hub's web process
(waitress, ``/hooks/stock/<connection>/``) → ``apply_stock_changes`` → outbox → the on-commit kick → a real
Celery worker (``inventory.push_pending``) → the commercetools sandbox (its own limit, 50 req/s by default; the
connection at 95% of it). Each change sets a SKU to the next number of its own counter, so a storefront write
of figure ``n`` confirms every change up to ``n`` (coalesced ones included); the sandbox records every write's
time. A change's latency is from just before its webhook is sent to the first storefront write that shows it
(or a newer figure).

References, printed next to the measurement:
* the rate-limit bound: the same changes pushed by an ideal coalescing pusher — the oldest pending SKU's
  latest figure at once whenever the storefront's limit allows a request, no processing or network time at all
  (no design does better);
* a scheduled full feed every 15 minutes (what many integrations ship): wait for the next feed, then the
  SKU's turn in a feed of every SKU at the limit.
Goals: p99 < 2 s whenever the coalesced change rate is under the limit; beyond it, every SKU's latest figure
lands within one queue drain (the queue at the end of the changes ÷ the limit, +25% and 2 s of slack).

``python bench/propagation.py`` (30 s per rate, 5,000 SKUs) or ``--quick`` (8 s per rate, 1,000 SKUs).
Benchmarks are never tests: this prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import sys
import threading
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _engines  # noqa: E402

BENCH = "propagation"
HOOK_SECRET = "bench-hook-secret"
FEED_PERIOD = 900.0


def build(url: str, n_skus: int, rate: float, headroom: float):
    import requests

    from integration_hub.catalog.models import Item, SkuMapping
    from integration_hub.core.models import Channel, Connection, Location
    from integration_hub.inventory.models import ChannelStock, ChannelStockRule, PendingPush, StockLevel

    master = Connection(name="bench-wair", system_type="wair", base_url=f"{url}/wair")
    master.set_secret("wair-demo-key")
    master.set_webhook_secret(HOOK_SECRET)
    master.save()
    ct = Connection(
        name="bench-ct",
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
    loc = Location.objects.create(code="dc1", name="DC1", connection=master, external_id="DC1")
    items = Item.objects.bulk_create([Item(sku=f"P{n:05d}") for n in range(n_skus)])
    items = list(Item.objects.order_by("id"))
    SkuMapping.objects.bulk_create([SkuMapping(item=i, storefront_sku=i.sku) for i in items])
    StockLevel.objects.bulk_create([StockLevel(item=i, location=loc, quantity=0) for i in items])
    ch = Channel.objects.create(key="web", name="web", connection=ct, external_id="bench-supply")
    rule = ChannelStockRule.objects.create(channel=ch, mode="segregated")
    rule.locations.set([loc])
    # the storefront already shows 0 for every SKU, and the hub knows it: no first sync to wait for
    PendingPush.objects.all().delete()
    ChannelStock.objects.bulk_create(
        [ChannelStock(channel=ch, item=i, storefront_sku=i.sku, confirmed_quantity=0) for i in items],
        ignore_conflicts=True,
    )
    skus = [i.sku for i in items]
    requests.post(
        f"{url}/_sandbox/commercetools/seed_catalog",
        json={"channels": ["bench-supply"], "skus": skus, "quantity": 0},
        timeout=120,
    ).raise_for_status()
    requests.post(
        f"{url}/_sandbox/commercetools/faults",
        json={"rate_limit_per_second": rate, "rate_limit_burst": max(1, int(rate // 5))},
        timeout=10,
    ).raise_for_status()
    from integration_hub.celery import app

    app.control.purge()  # the rule's first-sync dispatch: nothing waits in the broker before the run
    return skus


def hook_confirmations(emu, log: list, lock: threading.Lock) -> None:
    """Record (time, sku, quantityOnStock) of every inventory write the sandbox answers with 2xx."""
    for k, (method, rx, handler) in enumerate(emu.routes):
        if getattr(handler, "__name__", "") not in ("inventory_update", "inventory_create"):
            continue

        def wrapped(req, _h=handler):
            resp = _h(req)
            body = getattr(resp, "body", None)
            if isinstance(body, dict) and "sku" in body and getattr(resp, "status", 200) < 300:
                with lock:
                    log.append((time.monotonic(), body["sku"], int(body.get("quantityOnStock") or 0)))
            return resp

        wrapped.__name__ = handler.__name__
        emu.routes[k] = (method, rx, wrapped)


def send_changes(hook_url: str, skus: list[str], counters: dict, rate: float, seconds: float, seed: int) -> list[tuple]:
    """Sustained ``rate`` changes/s for ``seconds``: one signed webhook every 100 ms carrying the changes due.
    Returns (t_sent, sku, figure) per change."""
    import requests

    from connectors import signatures

    rnd = random.Random(seed)
    session = requests.Session()
    sent, t0, n_done, errors = [], time.monotonic(), 0, 0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        due = int((now - t0) * rate) + 1 - n_done
        if due > 0:
            rows, batch = [], []
            for _ in range(due):
                sku = rnd.choice(skus)
                counters[sku] += 1
                rows.append({"skuId": sku, "locationId": "DC1", "quantity": counters[sku]})
                batch.append((sku, counters[sku]))
            body = json.dumps({"type": "stock.changed", "batchId": f"b{n_done}", "changes": rows}).encode()
            t_sent = time.monotonic()
            r = session.post(
                hook_url,
                data=body,
                timeout=30,
                headers={"Content-Type": "application/json", signatures.HEADER: signatures.sign(HOOK_SECRET, body)},
            )
            if r.status_code != 200:
                errors += 1
                if errors < 3:
                    print(f"    webhook answered {r.status_code}: {r.text[:200]}", flush=True)
            else:
                sent.extend((t_sent, s, q) for s, q in batch)
            n_done += due
        time.sleep(max(0.0, 0.1 - (time.monotonic() - now)))
    return sent


def latencies(sent: list[tuple], confirms: list[tuple]) -> tuple[list[float], int]:
    by_sku = defaultdict(list)
    for t, sku, q in confirms:
        by_sku[sku].append((t, q))
    out, missing = [], 0
    for t_sent, sku, q in sent:
        writes = by_sku.get(sku, [])
        i = bisect.bisect_left(writes, (t_sent, -1))
        while i < len(writes) and writes[i][1] < q:
            i += 1
        if i < len(writes):
            out.append(writes[i][0] - t_sent)
        else:
            missing += 1
    return out, missing


def ideal(sent: list[tuple], limit: float) -> list[float]:
    """Latencies of an ideal coalescing pusher at ``limit`` requests/s (one request per SKU push, no
    processing time): whenever a request is allowed, the SKU pending longest is pushed with its latest figure."""
    pending: OrderedDict[str, list[float]] = OrderedDict()
    out, t_next, gap = [], 0.0, 1.0 / limit
    events = sorted((t, sku) for t, sku, _ in sent)

    def flush(until: float):
        nonlocal t_next
        while pending:
            sku, times = next(iter(pending.items()))
            t_push = max(t_next, times[0])
            if t_push >= until:  # changes arriving at that instant (one webhook's batch) ride on the same push
                return
            pending.popitem(last=False)
            out.extend(t_push - t for t in times)
            t_next = t_push + gap

    for t, sku in events:
        flush(t)
        pending.setdefault(sku, []).append(t)
    flush(float("inf"))
    return out


def full_feed(n_skus: int, limit: float, samples: int = 20000, seed: int = 5) -> list[float]:
    """Latency under a full feed every 15 minutes: a uniform wait for the next feed + the SKU's turn in it."""
    rnd = random.Random(seed)
    return [rnd.uniform(0, FEED_PERIOD) + rnd.uniform(0, n_skus) / limit for _ in range(samples)]


def run_rate(
    url: str,
    hook: str,
    skus: list[str],
    counters: dict,
    rate: float,
    seconds: float,
    limit: float,
    conn_limit: float,
    confirms: list,
    lock: threading.Lock,
    emu=None,
) -> dict:
    from django.db import connection

    from integration_hub.inventory.models import PendingPush

    with lock:
        confirms.clear()
    depth: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            depth.append((time.monotonic(), PendingPush.objects.count()))
            stop.wait(0.25)
        connection.close()

    sampler = threading.Thread(target=sample, daemon=True)
    limited0 = emu.stats.rate_limited if emu else 0
    t0 = time.monotonic()
    sampler.start()
    sent = send_changes(hook, skus, counters, rate, seconds, seed=int(rate))
    t_end = time.monotonic()
    depth_at_end = PendingPush.objects.count()
    final = {}
    for _, sku, q in sent:
        final[sku] = max(final.get(sku, 0), q)
    deadline = t_end + max(60.0, 2.5 * len(final) / conn_limit + 30)
    landed_at = None
    while time.monotonic() < deadline:
        with lock:
            seen = {}
            for _, sku, q in confirms:
                seen[sku] = max(seen.get(sku, 0), q)
        if all(seen.get(s, 0) >= q for s, q in final.items()):
            with lock:
                landed_at = max((t for t, sku, q in confirms if q == final.get(sku)), default=t_end)
            break
        time.sleep(0.2)
    stop.set()
    sampler.join()
    with lock:
        conf = list(confirms)
    lat, missing = latencies(sent, conf)
    distinct_per_s = len({(sku, int(t - t0)) for t, sku, _ in sent}) / seconds
    ideal_lat = ideal(sent, limit)
    series = [(round(t - t0, 1), d) for t, d in depth]
    step = max(1, len(series) // 16)
    return {
        "rate": rate,
        "seconds": seconds,
        "changes": len(sent),
        "skus_changed": len(final),
        "distinct_per_s": distinct_per_s,
        "p50": _engines.percentile(lat, 50),
        "p95": _engines.percentile(lat, 95),
        "p99": _engines.percentile(lat, 99),
        "max": max(lat) if lat else float("nan"),
        "missing": missing,
        "pushes": len(conf),
        "ideal_p50": _engines.percentile(ideal_lat, 50),
        "ideal_p95": _engines.percentile(ideal_lat, 95),
        "ideal_p99": _engines.percentile(ideal_lat, 99),
        "depth_at_end": depth_at_end,
        "depth_max": max((d for _, d in depth), default=0),
        "landed_after": (landed_at - t_end) if landed_at is not None else None,
        "series": series[::step],
        "rate_limited": (emu.stats.rate_limited - limited0) if emu else 0,
        "push_rate": len(conf) / max(1e-9, ((conf[-1][0] - conf[0][0]) if len(conf) > 1 else 1)),
    }


def child(args, engine: str, tmp: str) -> dict:
    from connectors.sandbox import make_server

    server = make_server(port=0)
    server.start_in_thread()
    confirms, lock = [], threading.Lock()
    hook_confirmations(server.emulators["commercetools"], confirms, lock)
    n_skus = args.skus or (1000 if args.quick else 5000)
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    skus = build(server.url, n_skus, args.limit, args.headroom)
    port = _engines.free_port()
    procs = [
        _engines.spawn(
            engine,
            BENCH,
            tmp,
            [
                sys.executable,
                "-m",
                "waitress",
                f"--listen=127.0.0.1:{port}",
                "--threads=4",
                "integration_hub.wsgi:application",
            ],
            "web",
        ),
        _engines.celery_worker(engine, BENCH, tmp, "bench-prop", concurrency=2),
    ]
    try:
        if not _engines.wait_http(f"http://127.0.0.1:{port}/accounts/login/"):
            raise RuntimeError(f"web process did not start; see {tmp}/web.log")
        time.sleep(3)  # the worker's first connection to the broker
        hook = f"http://127.0.0.1:{port}/hooks/stock/bench-wair/"
        counters = dict.fromkeys(skus, 0)
        out = []
        for rate in args.rates:
            print(f"    {rate:g} changes/s for {seconds:g} s over {n_skus:,} SKUs …", flush=True)
            r = run_rate(
                server.url,
                hook,
                skus,
                counters,
                rate,
                seconds,
                args.limit,
                args.limit * args.headroom,
                confirms,
                lock,
                server.emulators["commercetools"],
            )
            print(
                f"      p50 {r['p50']:.2f} s, p95 {r['p95']:.2f} s, p99 {r['p99']:.2f} s; queue max {r['depth_max']}, "
                f"at the end {r['depth_at_end']}; all landed {r['landed_after']} s after the last change",
                flush=True,
            )
            out.append(r)
        feed = full_feed(n_skus, args.limit)
        return {
            "rates": out,
            "n_skus": n_skus,
            "limit": args.limit,
            "headroom": args.headroom,
            "feed": {
                "p50": _engines.percentile(feed, 50),
                "p95": _engines.percentile(feed, 95),
                "p99": _engines.percentile(feed, 99),
            },
        }
    finally:
        _engines.stop(procs)
        server.shutdown()


def judge(r: dict, limit: float, conn_limit: float) -> tuple[bool, str]:
    if r["distinct_per_s"] < conn_limit:
        ok = r["p99"] < 2.0 and r["missing"] == 0
        return ok, f"coalesced {r['distinct_per_s']:.0f}/s < limit: p99 {r['p99']:.2f} s (goal < 2 s)"
    bound = r["depth_at_end"] / conn_limit * 1.25 + 2.0
    landed = r["landed_after"]
    ok = landed is not None and landed <= bound and r["missing"] == 0
    return ok, (
        f"coalesced {r['distinct_per_s']:.0f}/s > limit: latest figures landed "
        f"{'never' if landed is None else f'{landed:.1f} s'} after the last change; one queue drain = "
        f"{r['depth_at_end']} rows ÷ {conn_limit:.1f}/s = {r['depth_at_end'] / conn_limit:.1f} s (goal ≤ {bound:.1f} s)"
    )


def report(results: dict, skipped: dict, args) -> None:
    engines = list(results)
    rows: list[tuple[str, dict]] = []
    first = next(iter(results.values()), None)
    if first:
        rows.append(
            (
                f"{first['n_skus']:,} SKUs, storefront limit {first['limit']:g} req/s (connection at {first['headroom']:.0%})",
                {},
            )
        )
    for k, rate in enumerate(args.rates):

        def get(fn, k=k):
            vals = {}
            for e, res in results.items():
                try:
                    vals[e] = fn(res["rates"][k])
                except (KeyError, IndexError, TypeError, ValueError):
                    vals[e] = "—"
            return vals

        rows.append((f"{rate:g} changes/s", {}))
        rows.append(
            (
                "    changes sent / SKUs / coalesced per s",
                get(lambda r: f"{r['changes']:,} / {r['skus_changed']:,} / {r['distinct_per_s']:.0f}"),
            )
        )
        rows.append(
            ("    latency p50 / p95 / p99", get(lambda r: f"{r['p50']:.2f} / {r['p95']:.2f} / {r['p99']:.2f} s"))
        )
        rows.append(
            (
                "    rate-limit bound p50 / p95 / p99",
                get(lambda r: f"{r['ideal_p50']:.2f} / {r['ideal_p95']:.2f} / {r['ideal_p99']:.2f} s"),
            )
        )
        rows.append(
            ("    storefront writes (req/s while pushing)", get(lambda r: f"{r['pushes']:,} ({r['push_rate']:.1f}/s)"))
        )
        rows.append(("    429s from the storefront", get(lambda r: f"{r['rate_limited']}")))
        rows.append(("    queue depth max / at the end", get(lambda r: f"{r['depth_max']:,} / {r['depth_at_end']:,}")))
        rows.append(
            (
                "    all latest figures landed after",
                get(lambda r: "never" if r["landed_after"] is None else f"{r['landed_after']:.1f} s"),
            )
        )
        rows.append(("    changes never confirmed", get(lambda r: f"{r['missing']}")))
    rows.append(
        (
            "full feed every 15 min: p50 / p95 / p99",
            {
                e: f"{r['feed']['p50']:.0f} / {r['feed']['p95']:.0f} / {r['feed']['p99']:.0f} s"
                for e, r in results.items()
            },
        )
    )
    notes = []
    for e, res in results.items():
        for r in res["rates"]:
            ok, text = judge(r, res["limit"], res["limit"] * res["headroom"])
            notes.append(f"{_engines.LABELS[e]}, {r['rate']:g}/s: " + _engines.goal(ok, text))
        for r in res["rates"]:
            notes.append(
                f"{_engines.LABELS[e]}, {r['rate']:g}/s queue depth (s: rows): "
                + " ".join(f"{t:g}:{d}" for t, d in r["series"])
            )
    _engines.print_table(f"propagation ({'quick' if args.quick else 'full'})", rows, engines, skipped, notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 s per rate over 1,000 SKUs")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[20.0, 100.0, 500.0], help="changes/s (default 20 100 500)"
    )
    parser.add_argument("--seconds", type=float, default=0, help="seconds of sustained changes per rate")
    parser.add_argument("--skus", type=int, default=0, help="SKUs the changes fall on")
    parser.add_argument(
        "--limit", type=float, default=50.0, help="the storefront's rate limit, requests/s (default 50)"
    )
    parser.add_argument("--headroom", type=float, default=0.95, help="the connection's configured share of the limit")
    _engines.add_engine_args(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
