"""Bench helper: the sandbox emulators in their own process (``python -m connectors.sandbox``), so a bench measures the
hub's CPU apart from the emulators' (a real storefront and warehouse run elsewhere) and the two do not share one
interpreter lock. Control and stats go over HTTP (``/_sandbox/...``), as the demo seeder drives it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import _engines

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class SandboxProcess:
    """One sandbox server process on a free port; :meth:`cpu` is its CPU seconds so far."""

    def __init__(self, log_dir: str, startup_s: float = 30.0):
        import requests

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / "sandbox.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connectors.sandbox", "--port", str(self.port)],
            cwd=str(ROOT),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + startup_s
        while True:
            try:
                if requests.get(f"{self.url}/_sandbox/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox process did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return _engines.cpu_seconds(self.proc.pid)

    def stats(self, prefix: str) -> dict:
        import requests

        r = requests.get(f"{self.url}/_sandbox/{prefix}/stats", timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
