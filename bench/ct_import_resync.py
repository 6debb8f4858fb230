"""commercetools full resync: one request per entry vs the Import API (issue 12, part 4) — prints, side by side:

* requests sent for a first sync of N (SKU × channel) rows by the synchronous path (per-entry create / update,
  100 SKUs per read) and by the Import API (20 entries per InventoryImportRequest, outcomes read 500 per page),
  and their ratio;
* wall time to a *confirmed* full resync (every target's outcome read back) against the sandbox over HTTP at a
  configured request rate, measured at N and extrapolated to 1,000,000 rows at the same rate (marked).

``python bench/ct_import_resync.py`` (N = 4,000 by default; ``--rows`` to change, ``--rate`` requests/s per
connection). Runs on its own: a throwaway SQLite database, its own sandbox server on a free port. Prints numbers,
asserts nothing.
"""
from __future__ import annotations

import argparse
import os
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
        os.environ.pop(var, None)
    os.environ["CELERY_BROKER_URL"] = f"sqla+sqlite:///{tmp}/bench-broker.sqlite3"
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s allowed per connection (the client's limiter)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ct-import-bench-")
    try:
        setup_django(tmp)
        from connectors.sandbox import make_server

        server = make_server(port=0)
        server.start_in_thread()
        out = {}
        for use_import in (False, True):
            out[use_import] = run(server, args.rows, args.rate, use_import)
        server.shutdown()
        print(f"first sync of {args.rows:,} SKU×channel rows at {args.rate:.0f} req/s")
        print(f"{'path':<12}{'requests':>10}{'req/row':>10}{'confirmed':>11}{'time':>10}{'1M rows*':>10}")
        for use_import, (reqs, secs, ok) in out.items():
            label = "import API" if use_import else "per entry"
            print(f"{label:<12}{reqs:>10,}{reqs / args.rows:>10.3f}{ok:>11,}{fmt_s(secs):>10}{fmt_s(secs * 1_000_000 / args.rows):>10}")
        print(f"request ratio: {out[False][0] / max(1, out[True][0]):.1f}x fewer with the Import API")
        print("* extrapolated linearly from the measured run at the same request rate (the sandbox applies imports at "
              "once; real ct processes them asynchronously, which adds latency, not requests)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
