"""Bench helper: a catch-up poll in its own process, as the deployment runs it (a Celery worker process of its own,
beside the order loops' processes: they do not share one interpreter lock, and on SQLite the poll's commits compete
with theirs for the write lock as they would there).

``python bench/_poll_proc.py orders|dispatches <connection pk>`` in the bench child's environment (its database, its
rate-limit buckets): sets Django up, prints ``ready``, waits for a line on stdin, runs the poll to the end and prints
one JSON line — the poll's totals and this process's CPU seconds. :class:`PollProcess` drives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class PollProcess:
    """Start the poll process and wait until it is ready (Django imported, nothing timed yet); :meth:`run` lets it
    go and returns its JSON line (``cpu``: its CPU seconds)."""

    def __init__(self, kind: str, connection_pk: int):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), kind, str(connection_pk)],
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        line = self.proc.stdout.readline().strip()  # "" when it exited before it was ready
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"the {kind} poll process did not start (said {line!r})")

    def run(self) -> dict:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        self.proc.wait(timeout=60)
        if self.proc.returncode:
            raise RuntimeError(f"the poll process failed (exit {self.proc.returncode})")
        return json.loads(out)


def main(kind: str, connection_pk: int) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    from integration_hub.core.models import Connection
    from integration_hub.orders import claims, polls

    settings.HUB["STOCK_PUSH_ON_COMMIT"] = False  # as in the bench child: no broker round trips
    claims.kick = lambda delay=0: None  # the bench's loops are already running
    conn = Connection.objects.get(pk=connection_pk)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0 = time.process_time()
    poll = polls.poll_orders if kind == "orders" else polls.poll_dispatches
    totals = poll(conn, max_pages=1000)
    print(json.dumps({"totals": totals, "cpu": time.process_time() - cpu0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
