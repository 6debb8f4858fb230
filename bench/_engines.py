"""Shared bench helper: run one bench on every reachable engine, side by side, in one run (issue 19, item 1).

A bench's ``main`` calls :func:`run` with its own path, arguments and a ``child`` function. Without
``--engine`` (the parent), it starts one child process of the same script per engine that is reachable —

* ``sqlite``:   the embedded size — a throwaway SQLite file and SQLAlchemy/SQLite broker under a temp dir,
  the host's file rate-limit bucket (what ``./hub up`` runs without services);
* ``postgresql``: PostgreSQL at 127.0.0.1:5432 (trust auth, user ``postgres``) in a throwaway database
  ``bench_hub_pg_<bench>_<run>``, created per run and dropped after it, with Redis at 127.0.0.1:6379 as broker (DB 9)
  and shared rate limiter / cache (DB 8) — both DBs flushed first (they are reserved for benches);

— because Django binds one database per process. Each child sets its engine up (:func:`setup`), runs the
measurements, and writes a JSON result; the parent prints every engine's figures in one table
(:func:`print_table`) and appends it to ``$HUB_BENCH_SUMMARY`` when set (``./hub bench`` prints that file
at the end). Benchmarks print numbers; they never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_LIMITER_DB, REDIS_BROKER_DB = 8, 9  # not 14/15: `./hub test` uses those on CI
LABELS = {"sqlite": "SQLite (embedded)", "postgresql": "PostgreSQL + Redis"}


def port_open(host: str, port: int) -> bool:
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def reachable() -> tuple[list[str], dict[str, str]]:
    """Engines to run and, for the others, why they are skipped."""
    engines, skipped = ["sqlite"], {}
    if not port_open(PG_HOST, PG_PORT):
        skipped["postgresql"] = f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}"
    elif not port_open(REDIS_HOST, REDIS_PORT):
        skipped["postgresql"] = (
            f"Redis not reachable on {REDIS_HOST}:{REDIS_PORT} (the PostgreSQL size runs with Redis)"
        )
    else:
        engines.append("postgresql")
    return engines, skipped


def pg_db_name(bench: str) -> str:
    """``bench_hub_pg_<bench>_<run>``: the parent's pid names the run, so two runs of a bench never drop each other's
    database (they still share Redis DBs 8/9, which each run flushes: run one bench at a time for clean figures)."""
    return f"bench_hub_pg_{bench}_{os.environ.get('HUB_BENCH_RUN', '0')}"


def pg_url(bench: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{pg_db_name(bench)}"


def env_for(engine: str, bench: str, tmp: str) -> dict[str, str]:
    """Environment of a process (bench child or worker) on ``engine``."""
    env = {
        "HUB_VAR_DIR": tmp,
        "DJANGO_SETTINGS_MODULE": "integration_hub.settings",
        "HUB_DEBUG": "true",
        "HUB_LOG_LEVEL": os.environ.get("HUB_LOG_LEVEL", "WARNING"),
        "HUB_OUTBOUND_ALLOW": os.environ.get("HUB_OUTBOUND_ALLOW", "127.0.0.1,localhost,::1"),
    }
    if engine == "postgresql":
        env["DATABASE_URL"] = pg_url(bench)
        env["REDIS_URL"] = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_LIMITER_DB}"
        env["CELERY_BROKER_URL"] = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_BROKER_DB}"
    else:
        env["CELERY_BROKER_URL"] = f"sqla+sqlite:///{tmp}/bench-broker.sqlite3"
    return env


def _reset_pg(bench: str) -> None:
    import psycopg

    name = pg_db_name(bench)
    with psycopg.connect(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _reset_redis() -> None:
    import redis

    for db in (REDIS_LIMITER_DB, REDIS_BROKER_DB):
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()


def setup(engine: str, bench: str, tmp: str, *, migrate: bool = True) -> None:
    """In a child: point this process at ``engine`` (fresh database), ``django.setup()``, migrate."""
    for var in ("DATABASE_URL", "REDIS_URL", "HUB_DB_NAME_OVERRIDE", "CELERY_BROKER_URL"):
        os.environ.pop(var, None)
    os.environ.update(env_for(engine, bench, tmp))
    if engine == "postgresql" and migrate:
        _reset_pg(bench)
        _reset_redis()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def drop(engine: str, bench: str) -> None:
    if engine == "postgresql":
        try:
            import psycopg

            with psycopg.connect(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_db_name(bench)}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - best effort cleanup
            print(f"    (could not drop {pg_db_name(bench)}: {exc})")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", choices=list(LABELS), help="run on this engine only (a child of the side-by-side run)"
    )
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and the PostgreSQL database")


def strip_engine(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--engine":
            skip = True
        elif not a.startswith("--engine="):
            out.append(a)
    return out


def run(bench: str, script: str, argv: list[str], args, child, report) -> int:
    """Parent: one child per reachable engine (or the one ``--engine`` names), then ``report(results, skipped)``.
    Child (``--result-file`` set): ``child(args, engine, tmp) -> dict`` on a fresh engine, JSON to the file."""
    if args.result_file:
        tmp = tempfile.mkdtemp(prefix=f"hub-bench-{bench}-")
        try:
            setup(args.engine, bench, tmp)
            out = child(args, args.engine, tmp)
            Path(args.result_file).write_text(json.dumps(out, default=str))
        finally:
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
                from django.db import connections

                connections.close_all()
                drop(args.engine, bench)
        return 0
    os.environ.setdefault("HUB_BENCH_RUN", str(os.getpid()))  # children and their workers inherit it
    engines, skipped = reachable()
    if args.engine:
        engines = [args.engine]
    results: dict[str, dict] = {}
    status = 0
    for engine in engines:
        fd, path = tempfile.mkstemp(prefix=f"hub-bench-{bench}-", suffix=".json")
        os.close(fd)
        cmd = [sys.executable, script, *strip_engine(argv), "--engine", engine, "--result-file", path]
        print(f"--- {bench} on {LABELS[engine]}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=str(ROOT))
        try:
            data = json.loads(Path(path).read_text() or "{}")
        except ValueError:
            data = {}
        os.unlink(path)
        if rc or not data:
            status = status or rc or 1
            skipped[engine] = f"run failed (exit {rc})"
            continue
        data["_wall"] = time.perf_counter() - t0
        results[engine] = data
    report(results, skipped)
    return status


def print_table(
    title: str,
    rows: list[tuple[str, dict[str, str]]],
    engines: list[str],
    skipped: dict[str, str],
    notes: list[str] = (),
    width: int = 44,
) -> str:
    """Rows of (label, {engine: text}); one column per engine. Printed and appended to $HUB_BENCH_SUMMARY."""
    cols = [e for e in LABELS if e in engines]
    colw = max([24] + [len(v) for _, vals in rows for v in vals.values()]) + 2
    lines = [
        "=" * (width + colw * max(1, len(cols))),
        title,
        f"{'':<{width}}" + "".join(f"{LABELS[e]:>{colw}}" for e in cols),
    ]
    for label, vals in rows:
        if not vals:
            lines.append(label)
            continue
        lines.append(f"{label:<{width}}" + "".join(f"{vals.get(e, '—'):>{colw}}" for e in cols))
    for e, why in skipped.items():
        lines.append(f"  {LABELS[e]}: not run — {why}")
    lines.extend(f"  {n}" for n in notes)
    lines.append("=" * (width + colw * max(1, len(cols))))
    text = "\n".join(lines)
    print(text, flush=True)
    summary = os.environ.get("HUB_BENCH_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(text + "\n")
    return text


def row_adder(rows: list, results: dict):
    """The benches' ``row(label, fn)``: appends ``(label, {engine: fn(result)})`` to ``rows`` for :func:`print_table`;
    a figure an engine's result lacks (a skipped phase, nothing to divide by) prints as "—"."""

    def row(label, fn):
        vals = {}
        for e, r in results.items():
            try:
                vals[e] = fn(r)
            except (KeyError, TypeError, ZeroDivisionError, IndexError):
                vals[e] = "—"
        rows.append((label, vals))

    return row


def goal(met: bool | None, text: str) -> str:
    return ("MET " if met else "n/a " if met is None else "MISSED ") + text


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one when None), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return 0.0


def peak_rss_mb(pid: int | None = None) -> float:
    """VmHWM (peak resident set) of a process in MiB, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(
    engine: str, bench: str, tmp: str, cmd: list[str], log_name: str, extra_env: dict | None = None
) -> subprocess.Popen:
    """A real hub process (web, Celery worker, bench worker) on ``engine``'s database, broker and limiter;
    its output goes to ``tmp/<log_name>.log``."""
    env = {**os.environ, **env_for(engine, bench, tmp), **(extra_env or {})}
    for var in ("HUB_BENCH_SUMMARY",):
        env.pop(var, None)
    log = open(Path(tmp) / f"{log_name}.log", "wb")
    return subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)


def celery_worker(
    engine: str,
    bench: str,
    tmp: str,
    name: str,
    concurrency: int = 2,
    queues: str = "default,stock",
    extra_env: dict | None = None,
) -> subprocess.Popen:
    return spawn(
        engine,
        bench,
        tmp,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "integration_hub",
            "worker",
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        name,
        extra_env,
    )


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_http(url: str, seconds: float = 60) -> bool:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return True
        except requests.RequestException:
            time.sleep(0.3)
    return False


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]
