"""bench/_sandbox_proc.py: the benches' sandbox in its own process — it serves the emulators, counts their requests
apart from control calls, reports its own CPU, and is gone after stop(). No database, no timing."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _sandbox_proc  # noqa: E402


def test_sandbox_process_serves_counts_and_stops(tmp_path):
    sb = _sandbox_proc.SandboxProcess(str(tmp_path))
    try:
        assert sb.stats("wair")["requests"] == 0
        r = requests.get(f"{sb.url}/wair/api/v1/orders/nope", timeout=10)  # an emulator route: counted
        assert r.status_code in (401, 404)
        requests.post(f"{sb.url}/_sandbox/wair/faults", json={"latency_ms": 0}, timeout=10).raise_for_status()
        assert sb.stats("wair")["requests"] == 1  # control calls are not the API's requests
        assert sb.cpu() > 0 and sb.pid != 0
    finally:
        sb.stop()
    assert sb.proc.poll() is not None
