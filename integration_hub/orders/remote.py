"""Calling the systems: the connector of a connection and a small thread pool for the HTTP calls of a batch (no
database work in the threads; the phases do theirs set-based before and after).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from integration_hub.core.models import Connection


HTTP_THREADS = 8


def parallel(fn, jobs: list) -> list:
    """Run ``fn(job)`` for each job in a small thread pool (HTTP only, no database); results in order,
    an exception instance where a call failed."""

    def safe(job):
        try:
            return fn(job)
        except Exception as exc:  # noqa: BLE001 — returned, classified by the caller
            return exc

    if len(jobs) <= 1:
        return [safe(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(HTTP_THREADS, len(jobs))) as pool:
        return list(pool.map(safe, jobs))


def connector(conn: Connection):
    from connectors.registry import get_connector

    return get_connector(conn)
