"""Monitoring fixtures: a small topology and a local HTTP receiver (a tiny http.server thread)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def w(db):
    from tests.support.factories import console_world

    return console_world()


class Receiver:
    """Records every POST; ``fail`` makes it answer 500 (or any status) for a path prefix."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = next((s for p, s in receiver.status.items() if self.path.startswith(p)), 200)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"nope")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def json(self, path: str) -> list[dict]:
        return [json.loads(r["body"]) for r in self.to(path)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_channel(name, kind, url="", secret="", recipients="", min_severity="warning"):
    from integration_hub.monitoring.models import NotificationChannel

    c = NotificationChannel(name=name, kind=kind, recipients=recipients, min_severity=min_severity)
    c.set_url(url)
    c.set_secret(secret)
    c.save()
    return c


def make_rule(name="queue", figure="push_queue_depth", key="", threshold=10, channels=(), **kw):
    from integration_hub.monitoring.models import AlertRule

    rule = AlertRule.objects.create(name=name, figure=figure, key=key, threshold=threshold, **kw)
    rule.channels.set(channels)
    return rule
