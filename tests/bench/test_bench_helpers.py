"""The measuring parts of the benches (bench/_engines.py, bench/propagation.py): what they compute must be right,
or the printed figures mean nothing. No database, no timing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _engines  # noqa: E402
import propagation  # noqa: E402


def test_child_command_drops_the_parents_engine_choice():
    assert _engines.strip_engine(["--quick", "--engine", "sqlite", "--rate", "5", "--engine=postgresql"]) == [
        "--quick",
        "--rate",
        "5",
    ]


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert _engines.percentile(values, 50) in (50.0, 51.0)
    assert _engines.percentile(values, 99) == 99.0
    assert _engines.percentile(values, 100) == 100.0


def test_a_write_confirms_every_change_up_to_its_figure_and_none_before_it_was_sent():
    sent = [(1.0, "A", 1), (1.5, "A", 2), (2.0, "A", 3), (1.0, "B", 1)]
    writes = [(1.2, "A", 1), (2.5, "A", 3), (0.5, "B", 1)]  # B's write came before its change was sent
    lat, missing = propagation.latencies(sent, writes)
    assert lat == pytest.approx([0.2, 1.0, 0.5])  # A1 by the first write; A2 and A3 by the write of 3
    assert missing == 1  # B1 never confirmed after it was sent


def test_ideal_pusher_coalesces_and_respects_the_limit():
    # 10 changes to one SKU at once: one push carries them all, at once
    assert propagation.ideal([(0.0, "A", n) for n in range(10)], limit=10) == [0.0] * 10
    # 3 different SKUs at t=0 with 2 requests/s: pushed at 0, 0.5, 1.0
    assert sorted(propagation.ideal([(0.0, s, 1) for s in "ABC"], limit=2)) == pytest.approx([0.0, 0.5, 1.0])
