"""Memory benchmark (issue 19, item 6): peak resident memory (VmHWM) of

(a) a worker process running a full master resync (``services.resync_master``: the WAIR sandbox's whole stock
    snapshot, paged over HTTP, applied in chunks) of N stock rows;
(b) the web process (waitress) streaming the CSV of an N-row stock-drift report (``/reports/<pk>/csv/``, a
    server-side cursor read in chunks) to a client that reads it as it arrives;

each next to the same process's resident memory before the work (its baseline) and a stated bound, on every
reachable engine (bench/_engines.py). The figure that matters is peak − baseline: it must not grow with N.

``python bench/memory.py`` (N = 1,000,000) or ``--quick`` (N = 100,000). Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _engines  # noqa: E402

BENCH = "memory"
BOUND_MB = 300.0  # the stated bound on peak − baseline for either process, at any N
LOCATIONS = 4


def resync_worker(args) -> int:
    """A worker process: baseline RSS, full resync, peak RSS — as JSON on its last line."""
    _engines.setup(args.engine, BENCH, args.tmp, migrate=False)
    from django.conf import settings

    settings.HUB["STOCK_PUSH_ON_COMMIT"] = False
    # production workers run with debug off; the bench runs with it on (development keys), and then Django keeps the
    # last 9,000 queries' SQL — bulk upserts of thousands of rows each — in memory (Celery warns of this leak): a first
    # 1M-row run here measured it as +200 MiB that production never has. Keep debug, drop the query log.
    from collections import deque

    from django.db import connection

    connection.queries_log = deque(maxlen=0)
    import connectors.registry  # noqa: F401 - imports the connectors before the baseline is taken
    from integration_hub.core.models import Connection
    from integration_hub.inventory import services

    conn = Connection.objects.get(name="bench-wair")
    Connection.objects.filter(pk=conn.pk).exists()
    base = _rss_mb()
    t0 = time.perf_counter()
    res = services.resync_master(conn)
    print(
        json.dumps(
            {
                "baseline": base,
                "peak": _engines.peak_rss_mb(),
                "seconds": time.perf_counter() - t0,
                "applied": res.applied,
                "unchanged": getattr(res, "unchanged", 0),
                "rejected": getattr(res, "rejected", 0),
            }
        ),
        flush=True,
    )
    return 0


def _rss_mb(pid: int | None = None) -> float:
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def build_items(n_rows: int):
    from django.db import connection, transaction

    from integration_hub.catalog.models import Item
    from integration_hub.core.models import Connection, Location

    master = Connection(
        name="bench-wair", system_type="wair", base_url="http://127.0.0.1:9/wair", options={"page_size": 1000}
    )
    master.set_secret("wair-demo-key")
    master.save()
    locs = [
        Location.objects.create(code=f"l{i}", name=f"L{i}", connection=master, external_id=f"L{i}")
        for i in range(LOCATIONS)
    ]
    n_items = n_rows // LOCATIONS
    with transaction.atomic(), connection.cursor() as cur:
        for start in range(0, n_items, 20000):
            cur.executemany(
                f"INSERT INTO {Item._meta.db_table} (sku, name, parent_sku, attributes, is_bundle, active, "
                "barcode, weight_unit, pending, source, updated_at) "
                "VALUES (%s, '', '', '{}', %s, %s, '', '', FALSE, 'bench', CURRENT_TIMESTAMP)",
                [(f"M{n:07d}", False, True) for n in range(start, min(n_items, start + 20000))],
            )
    return master, locs, n_items


def bench_resync(engine: str, tmp: str, server, n_rows: int, master, n_items: int) -> dict:
    master.base_url = f"{server.url}/wair"
    master.rate_limit_per_second, master.rate_limit_burst = 1000, 100  # memory, not the limiter, is measured here
    master.set_secret("wair-demo-key")  # a URL change clears stored secrets unless the same save sets them
    master.save()
    emu = server.emulators["wair"]
    emu.control_seed_locations({"locations": [{"id": f"L{i}"} for i in range(LOCATIONS)]})
    for start in range(0, n_items, 50000):
        emu.control_seed_stock(
            {
                "rows": [
                    {"sku": f"M{n:07d}", "location": f"L{k}", "quantity": (n + k) % 40}
                    for n in range(start, min(n_items, start + 50000))
                    for k in range(LOCATIONS)
                ]
            }
        )
    from django.db import connections

    connections.close_all()
    p = _engines.spawn(
        engine, BENCH, tmp, [sys.executable, __file__, "--resync-worker", "--engine", engine, "--tmp", tmp], "resync"
    )
    p.wait(timeout=7200)
    lines = (Path(tmp) / "resync.log").read_text().strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"error": "\n".join(lines[-8:])}


def build_report(n_rows: int) -> int:
    from django.db import connection, transaction
    from django.utils import timezone

    from integration_hub.reconciliation.models import Report, ReportKind, ReportRow

    now = timezone.now()
    report = Report.objects.create(
        kind=ReportKind.STOCK_DRIFT,
        run_date=now.date(),
        status=Report.Status.DONE,
        started_at=now,
        finished_at=now,
        row_count=n_rows,
    )
    cols = (
        "report_id, channel_id, channel_key, order_ref, external_id, order_state, warehouse_ref, item_id, sku, storefront_sku, "
        "master_quantity, storefront_quantity, difference"
    )
    fields = [f.column for f in ReportRow._meta.concrete_fields if f.column != "id"]
    extra = [c for c in fields if c not in [x.strip() for x in cols.split(",")]]
    with transaction.atomic(), connection.cursor() as cur:
        for start in range(0, n_rows, 20000):
            rows = [
                (
                    report.pk,
                    1,
                    "web",
                    "",
                    "",
                    "",
                    "",
                    n,
                    f"M{n:07d}",
                    f"SF{n}",
                    n % 40,
                    (n + 3) % 40,
                    n % 40 - (n + 3) % 40,
                )
                + tuple(None for _ in extra)
                for n in range(start, min(n_rows, start + 20000))
            ]
            cur.executemany(
                f"INSERT INTO {ReportRow._meta.db_table} ({cols}{''.join(', ' + c for c in extra)}) VALUES "
                f"({', '.join(['%s'] * (13 + len(extra)))})",
                rows,
            )
    return report.pk


def session_cookie() -> tuple[str, str]:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_superuser("bench-admin", "bench@example.invalid", "bench-only-password-19")
    s = SessionStore()
    s[SESSION_KEY], s[BACKEND_SESSION_KEY] = str(user.pk), settings.AUTHENTICATION_BACKENDS[-1]
    s[HASH_SESSION_KEY] = user.get_session_auth_hash()
    s.create()
    return settings.SESSION_COOKIE_NAME, s.session_key


def bench_report(engine: str, tmp: str, n_rows: int) -> dict:
    import requests

    pk = build_report(n_rows)
    cookie = session_cookie()
    from django.db import connections

    connections.close_all()
    port = _engines.free_port()
    web = _engines.spawn(
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
    )
    try:
        if not _engines.wait_http(f"http://127.0.0.1:{port}/accounts/login/"):
            return {"error": f"web process did not start; see {tmp}/web.log"}
        session = requests.Session()
        session.cookies.set(*cookie)
        session.get(f"http://127.0.0.1:{port}/reports/{pk}/", timeout=60)  # warm: templates, permissions, first queries
        base = _rss_mb(web.pid)
        t0 = time.perf_counter()
        lines = size = 0
        with session.get(f"http://127.0.0.1:{port}/reports/{pk}/csv/", stream=True, timeout=600) as r:
            status = r.status_code
            for chunk in r.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                lines += chunk.count(b"\n")
        return {
            "status": status,
            "lines": lines,
            "bytes": size,
            "seconds": time.perf_counter() - t0,
            "baseline": base,
            "peak": _engines.peak_rss_mb(web.pid),
        }
    finally:
        _engines.stop([web])


def child(args, engine: str, tmp: str) -> dict:
    from connectors.sandbox import make_server

    n = args.rows or (100_000 if args.quick else 1_000_000)
    server = make_server(port=0)
    server.start_in_thread()
    try:
        t0 = time.perf_counter()
        master, _, n_items = build_items(n)
        print(
            f"    {n_items:,} items in {_engines.fmt_s(time.perf_counter() - t0)}; resync of {n:,} stock rows …",
            flush=True,
        )
        resync = bench_resync(engine, tmp, server, n, master, n_items)
        print(f"    resync: {resync}", flush=True)
        report = {"error": "skipped (--skip-report)"} if args.skip_report else bench_report(engine, tmp, n)
        print(f"    report: {report}", flush=True)
        return {"n": n, "resync": resync, "report": report, "sandbox_peak": _engines.peak_rss_mb()}
    finally:
        server.shutdown()


def report(results: dict, skipped: dict, args) -> None:
    rows: list[tuple[str, dict]] = []

    row = _engines.row_adder(rows, results)

    first = next(iter(results.values()), {"n": 0})
    rows.append((f"N = {first['n']:,} rows; bound on peak − baseline: {BOUND_MB:.0f} MiB", {}))
    rows.append(("(a) worker, full master resync", {}))
    row("    rows applied / time", lambda r: f"{r['resync']['applied']:,} / {_engines.fmt_s(r['resync']['seconds'])}")
    row("    RSS baseline → peak (MiB)", lambda r: f"{r['resync']['baseline']:.0f} → {r['resync']['peak']:.0f}")
    rows.append(("(b) web, streaming the report CSV", {}))
    row(
        "    HTTP status / lines / MiB",
        lambda r: f"{r['report']['status']} / {r['report']['lines']:,} / {r['report']['bytes'] / 2**20:.0f}",
    )
    row(
        "    time (lines/s)",
        lambda r: f"{_engines.fmt_s(r['report']['seconds'])} ({r['report']['lines'] / r['report']['seconds']:,.0f}/s)",
    )
    row("    RSS baseline → peak (MiB)", lambda r: f"{r['report']['baseline']:.0f} → {r['report']['peak']:.0f}")
    notes = []
    for e, r in results.items():
        for key, label in (("resync", "worker during the full resync"), ("report", "web process streaming the report")):
            d = r.get(key, {})
            if "peak" not in d:
                notes.append(f"{_engines.LABELS[e]}: {label}: not measured — {d.get('error', '?')}")
                continue
            grew = d["peak"] - d["baseline"]
            notes.append(
                f"{_engines.LABELS[e]}: "
                + _engines.goal(
                    grew <= BOUND_MB,
                    f"{label}: peak − baseline {grew:.0f} MiB (bound {BOUND_MB:.0f} MiB; peak {d['peak']:.0f} MiB)",
                )
            )
    _engines.print_table(f"memory ({'quick' if args.quick else 'full'})", rows, list(results), skipped, notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100,000")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--skip-report", action="store_true", help="only (a), the resync worker")
    parser.add_argument("--resync-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    _engines.add_engine_args(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.resync_worker:
        return resync_worker(args)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
