"""Item master import (issue 17): a streaming pass over a big item file with bounded memory — prints, for two
file sizes (the second four times the first):

* rows per second of the whole import (under tracemalloc, which slows Python down) (validation, chunked bulk upsert,
  audit entries, outbox upserts for one warehouse target), and queries per chunk;
* the peak of Python memory allocated during the import (tracemalloc), which should stay flat as the file
  grows: the file is read row by row and handled CHUNK rows at a time.

``python bench/item_import.py`` (50,000 and 200,000 rows, a few minutes on 2 cores), ``--quick`` (10,000 and
40,000), ``--rows 1000000`` (250,000 and 1,000,000: the issue's size). Runs on every reachable engine side by side
(bench/_engines.py: a throwaway SQLite database, and a throwaway PostgreSQL database when it runs here); one table, a
column per engine. Prints numbers, asserts nothing.

Measured on SQLite alone, before the bench ran on both engines (2026-12-03, 2 shared cores, a CI run alongside;
``/usr/bin/time -v``): the default run — 50,000 rows: 99.8 s, 501 rows/s, peak Python memory 5.9 MB; 200,000 rows
(11.4 MB file): 333.8 s, 599 rows/s, peak 5.9 MB (1.00×: flat); 32.0 queries per 1,000-row chunk; process max RSS
134 MB; 7 min 32 s wall in all. ``--rows 1000000`` (measured 2026-12-03 at nice 19 beside a CI run): 250,000 rows
(14.1 MB) 1,159.5 s, 216 rows/s, peak 5.9 MB; **1,000,000 rows (57.8 MB file): 1,194.3 s, 837 rows/s, peak Python
memory 5.9 MB (1.00× for 4× the rows: flat), 32.0 queries per 1,000-row chunk**, every row created.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _engines  # noqa: E402  (bench/_engines.py: one child process per engine)

BENCH = "item_import"


def write_file(path: Path, rows: int, start: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("sku,name,style,size,colour,barcode,weight,weight_unit,unit_cost\n")
        for i in range(start, start + rows):
            f.write(f"B{i:08d},Bench item {i},ST{i // 8:07d},{'SML'[i % 3]},red,,{100 + i % 900},g,{i % 50}.25\n")


def run(tmp: str, rows: int, start: int) -> dict:
    from django.db import connection

    from integration_hub.catalog import item_import

    path = Path(tmp) / f"items-{rows}.csv"
    write_file(path, rows, start)
    size = path.stat().st_size
    with path.open("rb") as f:
        tracemalloc.start()
        t0 = time.perf_counter()
        queries = [0]

        def count(execute, sql, params, many, context):  # counts without keeping the SQL (that would grow)
            queries[0] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            r = item_import.import_items(f)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    path.unlink()
    return {
        "rows": rows,
        "file_mb": size / 1e6,
        "created": r.created,
        "rejected": r.error_count,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "peak_mb": peak / 1e6,
        "queries_per_chunk": queries[0] / max(1, r.chunks),
    }


def options(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 and 40,000 rows")
    ap.add_argument("--rows", type=int, default=0, help="rows of the larger file (the smaller is a quarter)")
    _engines.add_engine_args(ap)
    args = ap.parse_args(argv)
    args.big = args.rows or (40_000 if args.quick else 200_000)
    return args


def child(args, engine: str, tmp: str) -> dict:
    """One engine: a warm-up import, then the file of a quarter of the rows and the full one."""
    from django.conf import settings

    settings.DEBUG = False  # no query log (HUB_DEBUG only supplies the dev keys here)
    from integration_hub.core.models import Connection

    Connection.objects.create(
        name="bench-wh", system_type="clarus", base_url="https://clarus.example.com"
    )  # an outbox target
    run(tmp, 1_000, 10 * args.big)  # warm-up: first-use imports and caches are not the import's memory
    results = []
    for rows, start in ((args.big // 4, 0), (args.big, args.big)):
        print(f"    importing {rows:,} rows …", flush=True)
        results.append(run(tmp, rows, start))
        x = results[-1]
        print(f"    {rows:,} rows: {x['seconds']:.1f} s, peak {x['peak_mb']:.1f} MB", flush=True)
    return {"runs": results, "peak_rss_mb": _engines.peak_rss_mb()}


def report(results: dict, skipped: dict, args) -> str:
    """One table, a column per engine: per file size rows/s, peak Python memory and queries per chunk, then the peak
    memory ratio of the larger file to the smaller (1.00× = flat)."""
    rows: list[tuple[str, dict]] = []

    row = _engines.row_adder(rows, results)

    for k, rows_k in enumerate((args.big // 4, args.big)):
        rows.append((f"{rows_k:,} rows", {}))
        row("    file MB / created / rejected", lambda r, k=k: _sizes(r["runs"][k]))
        row(
            "    seconds (rows/s, under tracemalloc)",
            lambda r, k=k: f"{r['runs'][k]['seconds']:.1f} ({r['runs'][k]['rows_per_s']:,.0f}/s)",
        )
        row("    peak Python memory (tracemalloc)", lambda r, k=k: f"{r['runs'][k]['peak_mb']:.1f} MB")
        row("    queries per chunk", lambda r, k=k: f"{r['runs'][k]['queries_per_chunk']:.1f}")
    row("peak memory ratio, 4× the rows (1.00× flat)", lambda r: f"{peak_ratio(r):.2f}×")
    row("whole child: wall / peak RSS", lambda r: f"{_engines.fmt_s(r['_wall'])} / {r['peak_rss_mb']:.0f} MiB")
    notes = ["the kept-errors list is the only thing that grows, capped at 1,000 rows"]
    return _engines.print_table(
        f"item_import ({'quick' if args.quick else 'full'})", rows, list(results), skipped, notes
    )


def _sizes(x: dict) -> str:
    return f"{x['file_mb']:.1f} / {x['created']:,} / {x['rejected']:,}"


def peak_ratio(r: dict) -> float:
    small, big = r["runs"][0], r["runs"][1]
    return big["peak_mb"] / max(small["peak_mb"], 0.001)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = options(argv)
    return _engines.run(BENCH, __file__, argv, args, child, lambda res, sk: report(res, sk, args))


if __name__ == "__main__":
    sys.exit(main())
