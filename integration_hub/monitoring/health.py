"""Health endpoints for operators and orchestrators (no login, no figures, nothing secret):

* ``/healthz`` — the web process is up (no I/O);
* ``/readyz`` — the database, the Celery broker and Redis (when ``REDIS_URL`` is set) answer; 503 otherwise.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)
TIMEOUT = 3  # seconds per check


def check_database() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def check_broker() -> None:
    from integration_hub.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT)


def check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()


def readiness() -> tuple[bool, dict]:
    checks = {"database": check_database, "broker": check_broker}
    if getattr(settings, "REDIS_URL", ""):
        checks["redis"] = check_redis
    out: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            out[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness: %s unreachable: %s", name, exc)
            out[name] = "unreachable"
    if "redis" not in out:
        out["redis"] = "not configured"
    return all(v != "unreachable" for v in out.values()), out
