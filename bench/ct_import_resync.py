"""commercetools first sync / full resync: the per-entry delta path vs the Import API (issue 12, part 4), measured side
by side in one run over real HTTP against the sandbox:

* **per entry** — ``CommercetoolsConnector.set_stock`` in batches of 200 (what the drain hands it): one inventory read
  per 100 SKUs, the catalogue check for the missing ones, one create per entry; confirmed = every result ok;
* **Import API** — ``CommercetoolsConnector.push_full`` in rounds of 10,000 (``full_load.MAX_ROWS``): ⌈R/20⌉
  ``InventoryImportRequest`` s, no inventory read, the catalogue read the cheaper way; then the outcome polls
  (``import_snapshot``, as the ``inventory.settle_imports`` task runs them) every ``--poll`` seconds until nothing is
  processing; confirmed = every pair's operation read back as ``imported``. The sandbox keeps each operation
  ``processing`` for ``--import-delay`` seconds (default 2) after its submission, then applies it.

Both run at the same client request rate (``--rate`` per connection, the connection's limiter) and write concurrency.
Printed: requests, requests per row, confirmed rows, wall time to the last confirmation, the request ratio and the
time ratio. ``python bench/ct_import_resync.py`` (20,000 rows, about a minute); ``--rows 1000000`` runs the Import
API at 1M rows and the per-entry path at ``--sync-rows`` (default 20,000), its 1M figures extrapolated linearly
(marked ``*``: the per-entry path is one request per row, so its time scales with rows at a fixed rate).

Measured on SQLite, before the bench ran on both engines, 2026-12-03 on 2 cores shared with other sessions (sandbox and
client in one process, ``--rate 400``, import delay 2 s; the bench prints the date, core count and load average):

* **1,000,000 rows** (``--rows 1000000``, per entry at the default 20,000; load average 6-12): Import API **53,819
  requests, 0.054 per row** (53,812 to submit: 50,000 imports, 3,812 setup and catalogue — by our count the
  catalogue check twice, ≈ 1,900 each, as the load outlasted the connector's 10-min ``CATALOGUE_TTL``; 2 outcome
  polls, 7 reads), **13.5 min to every one of the 1,000,000 pairs confirmed**; per entry 20,411 requests (1.021 per
  row), 2.4 min at 20,000 rows — 1,020,550 requests and 2.0 h at 1M, extrapolated → **19.0× fewer requests, 8.9×
  faster**. The whole run: 18.6 min wall, 306 CPU s (27% of one core on average), peak RSS 4.9 GB (the emulator
  holds the 1M operations and entries in memory).
* Before the emulator fix (issue 12) that run did not finish in 70 min: the sandbox's cost per request grew with what
  it held. The catalogue read paged by id scanned and sorted every product for each page (P²/500 work), the SKU
  queries (``masterVariant(sku in …) or variants(sku in …)``) scanned every product, every outcome read scanned
  every operation. Emulator only, in process, 200,000 products and operations (load ~10): a 500-product id page
  5.6 s → 0.13 s, a 100-SKU query 3.2 s → 2 ms, an outcome poll (processing total, a failure state newest first,
  the summary) 650 ms → < 0.1 ms. Now pending operations sit in a due-time heap and each container indexes its
  operations by state and resourceKey; products have a SKU index and an id-ordered walk that stops at the page.
  The hub side (``push_full``, ``import_snapshot``, the outcome check) was already linear per row.
* **100,000 rows**, the old and the new sandbox side by side in one window (same load, average 6; ``--sync-rows
  2000``): Import API 5,135 requests (0.051 per row) both; to every pair confirmed **2.3 min before, 1.2 min
  after** (1.9×). Run alone at load ~2 (``--sync-rows 20000``): 5,127 requests, 35.8 s (old sandbox), per entry
  20,408 requests, 50.0 s at 20,000 (4.2 min at 100,000, extrapolated) → 19.9× fewer requests, 7.0× faster.
* 20,000 rows (the default; earlier run, load average 15-20): per entry 20,411 requests, 3.7 min; Import API 1,046
  requests (1,000 imports, 30 setup and catalogue, 16 outcome reads), 47.7 s → 19.5× fewer requests, 4.7× faster.

The time ratio stays below the request ratio because the emulator's work per import request (20 resources parsed,
checked and applied in Python, on a share of a contended core) is what the run waits on; against ct, where a request
costs a network round trip whatever it carries, the time at a fixed request rate follows the request count.

Runs on every reachable engine side by side (bench/_engines.py: a throwaway SQLite database with the host's file
rate-limit bucket, and PostgreSQL with the shared Redis limiter when they run here), each child with its own sandbox
server on a free port; one table, a column per engine. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _engines  # noqa: E402  (bench/_engines.py: one child process per engine)

BENCH = "ct_import_resync"
CHANNELS = ["web", "app"]
fmt_s = _engines.fmt_s


def connector(server, name: str, rate: float):
    from connectors.commercetools import CommercetoolsConnector
    from integration_hub.core.models import Connection

    Connection.objects.filter(name=name).delete()
    conn = Connection(
        name=name,
        system_type="commercetools",
        base_url=f"{server.url}/commercetools",
        auth_url=f"{server.url}/commercetools",
        client_id="hub-demo",
        options={"project_key": "demo", "write_concurrency": 4},
        rate_limit_per_second=rate,
        rate_limit_burst=int(rate),
        timeout_seconds=60,
        max_retries=3,
    )
    conn.set_secret("hub-demo-secret")
    conn.save()
    return CommercetoolsConnector(conn)


def seed(server, rows: int):
    import requests

    emu = server.emulators["commercetools"]
    emu.reset_all()
    skus = [f"B{i:07d}" for i in range(rows // len(CHANNELS))]
    requests.post(
        f"{server.url}/_sandbox/commercetools/seed_catalog",
        json={"channels": CHANNELS, "skus": skus, "quantity": None},
        timeout=3600,
    ).raise_for_status()
    return emu, skus


def run_sync(server, rows: int, rate: float) -> tuple[int, float, int]:
    from connectors.base import InventoryTarget

    emu, skus = seed(server, rows)
    ct = connector(server, "bench-sync", rate)
    targets = [InventoryTarget(s, ch, 5, ledger=5) for ch in CHANNELS for s in skus]
    before, start, ok = emu.stats.requests, time.monotonic(), 0
    for i in range(0, len(targets), 200):
        ok += sum(r.ok for r in ct.set_stock(targets[i : i + 200]))
    return emu.stats.requests - before, time.monotonic() - start, ok


def run_import(server, rows: int, rate: float, delay: float, poll: float) -> tuple[int, float, int, dict]:
    import requests

    from connectors import errors
    from connectors.base import InventoryTarget

    emu, skus = seed(server, rows)
    requests.post(
        f"{server.url}/_sandbox/commercetools/import_settings", json={"delay": delay}, timeout=30
    ).raise_for_status()
    ct = connector(server, "bench-import", rate)
    targets = [InventoryTarget(s, ch, 5, ledger=5) for ch in CHANNELS for s in skus]
    since = datetime.now(timezone.utc)
    before, start = emu.stats.requests, time.monotonic()
    accepted = []
    for i in range(0, len(targets), 10_000):
        chunk = targets[i : i + 10_000]
        accepted += [t for t, r in zip(chunk, ct.push_full(chunk)) if isinstance(r.error, errors.ImportPending)]
    submitted = emu.stats.requests - before
    polls = 0
    while True:
        snap = ct.import_snapshot(since)
        polls += 1
        if snap.processing is not None and not snap.processing:
            break
        time.sleep(poll)
    confirmed = sum(snap.outcome(ct.import_key(t.sku, t.channel_ref), since)[0] == "imported" for t in accepted)
    took = time.monotonic() - start
    return emu.stats.requests - before, took, confirmed, {"submit requests": submitted, "polls": polls}


def options(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="4,000 rows unless --rows says otherwise (./hub bench --quick)"
    )
    ap.add_argument("--rows", type=int, default=0, help="SKU×channel rows of the Import API run (default 20,000)")
    ap.add_argument(
        "--sync-rows", type=int, default=None, help="rows of the per-entry run (default: --rows, at most 20,000)"
    )
    ap.add_argument(
        "--rate", type=float, default=400.0, help="requests/s allowed per connection (the client's limiter)"
    )
    ap.add_argument(
        "--import-delay", type=float, default=2.0, help="seconds the sandbox keeps an import operation processing"
    )
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between outcome polls")
    _engines.add_engine_args(ap)
    args = ap.parse_args(argv)
    args.rows = args.rows or (4000 if args.quick else 20_000)
    args.sync_rows = args.sync_rows or min(args.rows, 20_000)
    return args


def child(args, engine: str, tmp: str) -> dict:
    """One engine: the per-entry run, then the Import API run, against this child's own sandbox."""
    import logging

    logging.getLogger("connectors").setLevel(logging.ERROR)
    from connectors.sandbox import make_server

    server = make_server(port=0)
    server.start_in_thread()
    try:
        print(f"    per entry: {args.sync_rows:,} rows at {args.rate:g} req/s …", flush=True)
        s_req, s_time, s_ok = run_sync(server, args.sync_rows, args.rate)
        print(f"    per entry: {s_req:,} requests, {s_ok:,} confirmed, {fmt_s(s_time)}", flush=True)
        print(f"    Import API: {args.rows:,} rows …", flush=True)
        i_req, i_time, i_ok, extra = run_import(server, args.rows, args.rate, args.import_delay, args.poll)
        print(f"    Import API: {i_req:,} requests, {i_ok:,} confirmed, {fmt_s(i_time)}", flush=True)
    finally:
        server.shutdown()
    return {
        "rows": args.rows,
        "sync_rows": args.sync_rows,
        "sync": {"requests": s_req, "seconds": s_time, "confirmed": s_ok},
        "import": {"requests": i_req, "seconds": i_time, "confirmed": i_ok, **extra},
        "load": os.getloadavg(),
        "cpu_s": _engines.cpu_seconds(),
        "peak_rss_mb": _engines.peak_rss_mb(),
    }


def report(results: dict, skipped: dict, args) -> str:
    """One table, a column per engine: requests, requests per row, confirmed rows and time of each path, the request
    ratio and the time ratio (per row, so an extrapolated per-entry run compares at the Import API's size)."""
    rows: list[tuple[str, dict]] = []

    row = _engines.row_adder(rows, results)

    scale = args.rows / args.sync_rows
    rows.append(
        (
            f"{args.rows:,} SKU×channel rows, {len(CHANNELS)} channels, {args.rate:g} req/s, "
            f"import delay {args.import_delay:g} s",
            {},
        )
    )
    rows.append((f"per entry (set_stock, {args.sync_rows:,} rows)", {}))
    row("    requests (per row)", lambda r: f"{r['sync']['requests']:,} ({r['sync']['requests'] / r['sync_rows']:.3f})")
    row("    confirmed", lambda r: f"{r['sync']['confirmed']:,}")
    row("    time", lambda r: fmt_s(r["sync"]["seconds"]))
    if scale != 1:
        row(
            f"    at {args.rows:,} rows, extrapolated*",
            lambda r: f"{round(r['sync']['requests'] * scale):,} req, {fmt_s(r['sync']['seconds'] * scale)}",
        )
    rows.append((f"Import API (push_full, {args.rows:,} rows)", {}))
    row("    requests (per row)", lambda r: f"{r['import']['requests']:,} ({r['import']['requests'] / r['rows']:.3f})")
    row(
        "    to submit / outcome polls",
        lambda r: f"{r['import']['submit requests']:,} / {r['import']['polls']}",
    )
    row("    confirmed (read back as imported)", lambda r: f"{r['import']['confirmed']:,}")
    row("    time to every pair confirmed", lambda r: fmt_s(r["import"]["seconds"]))
    row("request ratio (fewer with the Import API)", lambda r: f"{request_ratio(r):.1f}×")
    row("time ratio (faster with the Import API)", lambda r: f"{time_ratio(r):.1f}×")
    row(
        "whole child: wall / CPU s / peak RSS",
        lambda r: f"{fmt_s(r['_wall'])} / {r['cpu_s']:.0f} / {r['peak_rss_mb']:.0f} MiB",
    )
    row("load average at the end (1 / 5 / 15 min)", lambda r: " / ".join(f"{x:.1f}" for x in r["load"]))
    notes = [
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; sandbox and client in one process"
    ]
    if scale != 1:
        notes.append(f"* per entry at {args.rows:,} rows extrapolated linearly from the measured {args.sync_rows:,}")
    return _engines.print_table(
        f"ct_import_resync ({'quick' if args.quick else 'full'})", rows, list(results), skipped, notes
    )


def request_ratio(r: dict) -> float:
    return (r["sync"]["requests"] / r["sync_rows"]) / (r["import"]["requests"] / r["rows"])


def time_ratio(r: dict) -> float:
    return (r["sync"]["seconds"] / r["sync_rows"]) / (r["import"]["seconds"] / r["rows"])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = options(argv)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
