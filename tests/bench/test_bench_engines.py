"""Every bench runs on every reachable engine through bench/_engines.py (issue 19, item 1), keeps its options, and
its table puts each engine in a column with the ratios computed as before. No database, no timing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import _engines  # noqa: E402
import ct_import_resync  # noqa: E402
import item_import  # noqa: E402

BENCHES = sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))


def test_the_benches_are_found():
    assert {"ct_import_resync.py", "item_import.py", "stock_sync.py"} <= {p.name for p in BENCHES}


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.stem)
def test_every_bench_runs_through_engines(path):
    tree = ast.parse(path.read_text())
    imports = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    assert "_engines" in imports, f"{path.name} does not import bench/_engines.py"
    bench = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "BENCH" for t in n.targets)
    ]
    assert bench == [path.stem], f"{path.name}: BENCH names its throwaway PostgreSQL database; expected {path.stem!r}"
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    calls = {
        (n.func.value.id, n.func.attr)
        for n in ast.walk(main)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
    }
    assert ("_engines", "run") in calls, f"{path.name}: main does not hand its run to _engines.run"


def test_ct_import_resync_keeps_its_options():
    quick = ct_import_resync.options(["--quick"])
    assert (quick.rows, quick.sync_rows, quick.rate, quick.import_delay, quick.poll) == (4000, 4000, 400.0, 2.0, 1.0)
    assert ct_import_resync.options([]).rows == 20_000
    big = ct_import_resync.options(["--rows", "1000000"])
    assert (big.rows, big.sync_rows) == (1_000_000, 20_000)
    child = ct_import_resync.options(
        ["--rows", "500", "--sync-rows", "100", "--rate", "50", "--import-delay", "0.5", "--poll", "0.2"]
        + ["--engine", "postgresql", "--result-file", "/tmp/x.json"]
    )
    assert (child.rows, child.sync_rows, child.rate, child.import_delay, child.poll) == (500, 100, 50.0, 0.5, 0.2)
    assert (child.engine, child.result_file) == ("postgresql", "/tmp/x.json")


def test_item_import_keeps_its_options():
    assert item_import.options(["--quick"]).big == 40_000
    assert item_import.options([]).big == 200_000
    child = item_import.options(["--rows", "1000000", "--engine", "sqlite"])
    assert (child.big, child.engine) == (1_000_000, "sqlite")


def _ct_result(sync_req, sync_s, import_req, import_s, rows=20_000, sync_rows=20_000):
    return {
        "rows": rows,
        "sync_rows": sync_rows,
        "sync": {"requests": sync_req, "seconds": sync_s, "confirmed": sync_rows},
        "import": {
            "requests": import_req,
            "seconds": import_s,
            "confirmed": rows,
            "submit requests": import_req - 16,
            "polls": 16,
        },
        "load": [1.0, 1.0, 1.0],
        "cpu_s": 10.0,
        "peak_rss_mb": 120.0,
        "_wall": 300.0,
    }


def _lines(text: str, label: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(label)]


def test_ct_import_resync_table_has_a_column_per_engine_and_the_same_ratios(tmp_path, monkeypatch):
    summary = tmp_path / "summary.txt"
    monkeypatch.setenv("HUB_BENCH_SUMMARY", str(summary))
    results = {
        "sqlite": _ct_result(20_411, 222.0, 1_046, 47.7),  # the README's 20,000-row run: 19.5×, 4.7×
        "postgresql": _ct_result(20_000, 100.0, 1_000, 50.0),
    }
    text = ct_import_resync.report(results, {}, ct_import_resync.options(["--rows", "20000"]))
    header = next(line for line in text.splitlines() if "SQLite (embedded)" in line)
    assert "PostgreSQL + Redis" in header
    (req,) = _lines(text, "request ratio")
    assert req.split()[-2:] == ["19.5×", "20.0×"]
    (tim,) = _lines(text, "time ratio")
    assert tim.split()[-2:] == ["4.7×", "2.0×"]
    assert "extrapolated" not in text  # the per-entry run was the Import API's size
    assert summary.read_text().strip() == text.strip()  # what `./hub bench` prints again at the end


def test_ct_import_resync_extrapolates_per_row_and_names_a_skipped_engine(monkeypatch):
    monkeypatch.delenv("HUB_BENCH_SUMMARY", raising=False)
    args = ct_import_resync.options(["--rows", "1000000"])
    results = {"sqlite": _ct_result(20_411, 144.0, 53_819, 810.0, rows=1_000_000)}
    text = ct_import_resync.report(results, {"postgresql": "PostgreSQL not reachable"}, args)
    (extra,) = _lines(text, "    at 1,000,000 rows, extrapolated*")
    assert extra.split()[-4:] == ["1,020,550", "req,", "2.0", "h"]
    (req,) = _lines(text, "request ratio")
    assert req.split()[-1] == "19.0×"  # the README's 1M run: 19.0× fewer requests, 8.9× faster
    (tim,) = _lines(text, "time ratio")
    assert tim.split()[-1] == "8.9×"
    assert "PostgreSQL + Redis: not run — PostgreSQL not reachable" in text


def _item_run(rows, peak, seconds=10.0, queries=32.0):
    return {
        "rows": rows,
        "file_mb": rows / 18_000,
        "created": rows,
        "rejected": 0,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_mb": peak,
        "queries_per_chunk": queries,
    }


def test_item_import_table_has_a_column_per_engine_and_the_peak_ratio(monkeypatch):
    monkeypatch.delenv("HUB_BENCH_SUMMARY", raising=False)
    args = item_import.options(["--quick"])
    results = {
        "sqlite": {"runs": [_item_run(10_000, 5.9), _item_run(40_000, 5.9)], "peak_rss_mb": 131.0, "_wall": 70.0},
        "postgresql": {
            "runs": [_item_run(10_000, 6.0, queries=10.1), _item_run(40_000, 12.0, queries=10.0)],
            "peak_rss_mb": 121.0,
            "_wall": 70.0,
        },
    }
    text = item_import.report(results, {}, args)
    assert [line for line in text.splitlines() if line.endswith(" rows") and not line.startswith(" ")] == [
        "10,000 rows",
        "40,000 rows",
    ]
    (ratio,) = _lines(text, "peak memory ratio")
    assert ratio.split()[-2:] == ["1.00×", "2.00×"]
    queries = _lines(text, "    queries per chunk")
    assert [q.split()[-2:] for q in queries] == [["32.0", "10.1"], ["32.0", "10.0"]]


def test_a_missing_figure_prints_a_dash_and_a_failed_engine_its_reason(monkeypatch):
    monkeypatch.delenv("HUB_BENCH_SUMMARY", raising=False)
    args = item_import.options(["--quick"])
    results = {"sqlite": {"runs": [_item_run(10_000, 5.9)], "peak_rss_mb": 131.0, "_wall": 70.0}}  # one run only
    text = item_import.report(results, {"postgresql": "run failed (exit 1)"}, args)
    (ratio,) = _lines(text, "peak memory ratio")
    assert ratio.split()[-1] == "—"
    assert f"{_engines.LABELS['postgresql']}: not run — run failed (exit 1)" in text
