"""commercetools full resync: one request per entry vs the Import API (issue 12, part 4) — prints, side by side:

* requests sent for a first sync of N (SKU × channel) rows by the synchronous path (per-entry create / update,
  100 SKUs per read) and by the Import API (20 entries per InventoryImportRequest, outcomes read 500 per page),
  and their ratio;
* wall time to a *confirmed* full resync (every target's outcome read back) against the sandbox over HTTP at a
  configured request rate, measured at N and extrapolated to 1,000,000 rows at the same rate (marked).

``python bench/ct_import_resync.py`` (N = 4,000 by default; ``--rows`` to change, ``--rate`` requests/s per
connection). Runs on its own: on every reachable engine side by side (bench/_engines.py), its own sandbox server on a free port. Prints numbers,
asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


import _engines  # noqa: E402  (bench/_engines.py: one child process per engine)

BENCH = "ct_import_resync"


fmt_s = _engines.fmt_s


def run(server, rows: int, rate: float, use_import: bool) -> tuple[int, float, int]:
    import requests

    from connectors.base import InventoryTarget
    from connectors.commercetools import CommercetoolsConnector
    from integration_hub.core.models import Connection

    emu = server.emulators["commercetools"]
    emu.reset_all()
    channels = ["web", "app"]
    skus = [f"B{i:07d}" for i in range(rows // len(channels))]
    requests.post(f"{server.url}/_sandbox/commercetools/seed_catalog", json={"channels": channels, "skus": skus, "quantity": None},
                  timeout=600).raise_for_status()
    name = f"bench-{'import' if use_import else 'sync'}"
    Connection.objects.filter(name=name).delete()
    conn = Connection(name=name, system_type="commercetools", base_url=f"{server.url}/commercetools",
                      auth_url=f"{server.url}/commercetools", client_id="hub-demo",
                      options={"project_key": "demo", "import_api": use_import, "import_poll_seconds": 0.05,
                               "import_wait_seconds": 600, "write_concurrency": 4},
                      rate_limit_per_second=rate, rate_limit_burst=int(rate), timeout_seconds=30, max_retries=3)
    conn.set_secret("hub-demo-secret")
    conn.save()
    ct = CommercetoolsConnector(conn)
    start = time.monotonic()
    before = emu.stats.requests
    ok = 0
    batch = 200  # what one push batch hands the connector
    targets = [InventoryTarget(s, ch, 5, ledger=5) for ch in channels for s in skus]
    for i in range(0, len(targets), batch):
        ok += sum(r.ok for r in ct.set_stock(targets[i:i + batch]))
    return emu.stats.requests - before, time.monotonic() - start, ok


def child(args, engine: str, tmp: str) -> dict:
    from connectors.sandbox import make_server

    server = make_server(port=0)
    server.start_in_thread()
    out = {}
    for use_import in (False, True):
        out["import" if use_import else "sync"] = run(server, args.rows, args.rate, use_import)
    server.shutdown()
    return out


def report(results: dict, skipped: dict, args) -> None:
    rows: list[tuple[str, dict]] = [(f"first sync of {args.rows:,} SKU×channel rows at {args.rate:.0f} req/s", {})]
    for key, label in (("sync", "per entry"), ("import", "import API")):
        rows.append((label, {}))
        rows.append(("    requests (per row)", {e: f"{r[key][0]:,} ({r[key][0] / args.rows:.3f})" for e, r in results.items()}))
        rows.append(("    confirmed / time", {e: f"{r[key][2]:,} / {fmt_s(r[key][1])}" for e, r in results.items()}))
        rows.append(("    1M rows (extrapolated)*", {e: fmt_s(r[key][1] * 1_000_000 / args.rows) for e, r in results.items()}))
    rows.append(("request ratio", {e: f"{r['sync'][0] / max(1, r['import'][0]):.1f}× fewer with the Import API" for e, r in results.items()}))
    _engines.print_table("ct_import_resync", rows, list(results), skipped,
                         ["* extrapolated linearly from the measured run at the same request rate (the sandbox applies imports at "
                          "once; real ct processes them asynchronously, which adds latency, not requests)"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 rows unless --rows says otherwise")
    ap.add_argument("--rows", type=int, default=0, help="rows (default 4,000; 2,000 with --quick)")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s allowed per connection (the client's limiter)")
    _engines.add_engine_args(ap)
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    args.rows = args.rows or (2000 if args.quick else 4000)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
