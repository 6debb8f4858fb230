"""The embedded broker (kombu's SQLAlchemy transport on SQLite) is polled every 0.1 s, not kombu's 1 s: each hop of
a stock push through it (kick → fan-out → drain) waited up to a second (issue 19, item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kombu import Connection

from integration_hub.core.embedded_broker import POLLING_INTERVAL, Transport

ROOT = Path(__file__).resolve().parents[2]


def test_settings_route_sqlalchemy_broker_urls_to_the_fast_polling_transport(tmp_path):
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps([settings.CELERY_BROKER_URL, getattr(settings, 'CELERY_BROKER_TRANSPORT', None)]))"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="integration_hub.settings", HUB_VAR_DIR=str(tmp_path))
    for url, expected in [
        (
            f"sqla+sqlite:///{tmp_path}/b.sqlite3",
            [f"sqlite:///{tmp_path}/b.sqlite3", "integration_hub.core.embedded_broker:Transport"],
        ),
        ("redis://127.0.0.1:6379/9", ["redis://127.0.0.1:6379/9", None]),
    ]:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "CELERY_BROKER_URL": url},
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert json.loads(out.stdout.strip().splitlines()[-1]) == expected, out.stderr[-2000:]


def test_the_transport_polls_every_tenth_of_a_second_and_carries_messages(tmp_path):
    with Connection(f"sqlite:///{tmp_path}/broker.sqlite3", transport=Transport) as conn:
        assert conn.transport.polling_interval == POLLING_INTERVAL == 0.1
        queue = conn.SimpleQueue("hub-embedded-broker-test")
        queue.put({"task": "inventory.push_pending"})
        message = queue.get(timeout=5)
        assert message.payload == {"task": "inventory.push_pending"}
        message.ack()
        queue.close()
