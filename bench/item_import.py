"""Item master import (issue 17): a streaming pass over a big item file with bounded memory — prints, for two
file sizes (the second four times the first):

* rows per second of the whole import (under tracemalloc, which slows Python down) (validation, chunked bulk upsert,
audit entries, outbox upserts for one
  warehouse target), and queries per chunk;
* the peak of Python memory allocated during the import (tracemalloc), which should stay flat as the file
  grows: the file is read row by row and handled CHUNK rows at a time.

``python bench/item_import.py`` (50,000 and 200,000 rows, a few minutes on 2 cores), ``--quick`` (10,000 and
40,000), ``--rows 1000000`` (250,000 and 1,000,000: the issue's size). Runs on its own: a throwaway SQLite
database. Prints numbers, asserts nothing.

Measured (2026-12-03, 2 shared cores, SQLite, a CI run alongside; ``/usr/bin/time -v``): the default run —
50,000 rows: 99.8 s, 501 rows/s, peak Python memory 5.9 MB; 200,000 rows (11.4 MB file): 333.8 s, 599 rows/s,
peak 5.9 MB (1.00×: flat); 32.0 queries per 1,000-row chunk; process max RSS 134 MB; 7 min 32 s wall in all.
``--rows 1000000`` (measured 2026-12-03 at nice 19 beside a CI run): 250,000 rows (14.1 MB) 1,159.5 s, 216 rows/s,
peak 5.9 MB; **1,000,000 rows (57.8 MB file): 1,194.3 s, 837 rows/s, peak Python memory 5.9 MB (1.00× for 4× the
rows: flat), 32.0 queries per 1,000-row chunk**, every row created.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, default=0, help="rows of the larger file (the smaller is a quarter)")
    args = ap.parse_args()
    big = args.rows or (40_000 if args.quick else 200_000)
    tmp = tempfile.mkdtemp(prefix="hub-bench-items-")
    try:
        setup_django(tmp)
        from django.conf import settings

        settings.DEBUG = False  # no query log (HUB_DEBUG only supplies the dev keys here)
        from integration_hub.core.models import Connection

        Connection.objects.create(
            name="bench-wh", system_type="clarus", base_url="https://clarus.example.com"
        )  # an outbox target
        run(tmp, 1_000, 10 * big)  # warm-up: first-use imports and caches are not the import's memory
        results = [run(tmp, big // 4, 0), run(tmp, big, big)]
        print(
            f"{'rows':>10} {'file MB':>8} {'created':>9} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} {'queries/chunk':>14}"
        )
        for x in results:
            print(
                f"{x['rows']:>10,} {x['file_mb']:>8.1f} {x['created']:>9,} {x['seconds']:>8.1f} {x['rows_per_s']:>8,.0f} "
                f"{x['peak_mb']:>8.1f} {x['queries_per_chunk']:>14.1f}"
            )
        print(
            f"peak memory ratio (4x the rows): {results[1]['peak_mb'] / max(results[0]['peak_mb'], 0.001):.2f}x "
            "(1.00x = flat; the kept-errors list is the only thing that grows, capped at 1,000 rows)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
