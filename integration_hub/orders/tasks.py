"""Celery tasks of the order flow. Thin: they call the phase modules (:mod:`.processing`, :mod:`.polls`,
:mod:`.checks`, :mod:`.fulfilments`, :mod:`.claims`).

Safe to run twice (acks_late is global): capture deduplicates on the idempotency key, work is claimed
per order with a lease (a killed worker's orders are due again when the lease ends and the beat sweep
re-dispatches them), the warehouse deduplicates resends, and marking shipped is idempotent.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task

from integration_hub.core.locks import POLL_LOCK_SECONDS, exclusive
from integration_hub.core.models import Connection
from integration_hub.core.outcomes import connection_call

from . import checks, claims, fulfilments, polls, processing

log = logging.getLogger(__name__)


@shared_task(name="orders.process", ignore_result=True)
def process(
    batch_size: int = claims.BATCH_SIZE, lease_seconds: int = claims.LEASE_SECONDS, time_budget: float = 10.0
) -> dict:
    """Validate captured orders, send due ones, notify dispatched ones, until nothing is due or the time
    budget is used (then continue in a fresh task, so polls and other queued work get a worker slot in
    between — a flash sale must not starve the capture poll)."""
    deadline = time.monotonic() + time_budget
    totals: dict[str, int] = {}
    more = False
    while True:
        counts = processing.process_due(batch_size=batch_size, lease_seconds=lease_seconds)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        if not any(counts.values()):
            break
        if time.monotonic() > deadline:
            more = True
            break
    if more:
        process.apply_async(
            kwargs={"batch_size": batch_size, "lease_seconds": lease_seconds, "time_budget": time_budget},
            queue="priority",
        )
    if any(totals.values()):
        log.info("orders.process: %s", totals)
    return totals


@shared_task(name="orders.sweep", ignore_result=True)
def sweep(lease_seconds: int = claims.LEASE_SECONDS, workers: int = 1) -> dict:
    """Beat: clear stale claims of dead workers and dispatch processing for anything due."""
    released = claims.release_expired_claims()
    due = claims.pending_work()
    if due:
        for _ in range(max(1, min(int(workers), 1 + due // claims.BATCH_SIZE))):
            process.apply_async(kwargs={"lease_seconds": lease_seconds}, queue="priority")
    return {"released": released, "due": due}


def _guarded(conn: Connection, operation: str, fn):
    """Run one poll of ``conn``; its outcome is recorded by :func:`~integration_hub.core.outcomes.connection_call`."""
    with exclusive(f"orders:{operation}:{conn.pk}", timeout=POLL_LOCK_SECONDS, renew=True) as got:
        if not got:
            return {"skipped": "already running"}
        with connection_call(
            conn, operation, title=f"{operation} from {conn.name} failed", action="retry_poll", cleared="poll succeeded"
        ) as call:
            result = fn(conn)
    return {"error": call.error_text(300)} if call.failed else result


@shared_task(name="orders.poll_orders", ignore_result=True)
def poll_orders(connection_id: int | None = None, max_pages: int = 20) -> dict:
    """Beat (catch-up behind the subscription): capture orders since the cursor from every storefront, and
    record the returns the modified orders carry for the planner (``capture.capture_many``)."""
    conns = polls.storefront_connections()
    if connection_id:
        conns = conns.filter(pk=connection_id)
    return {
        c.name: _guarded(c, "orders_since", lambda conn: polls.poll_orders(conn, max_pages=max_pages)) for c in conns
    }


@shared_task(name="orders.poll_dispatches", ignore_result=True)
def poll_dispatches(connection_id: int | None = None, max_pages: int = 20) -> dict:
    """Beat (behind the dispatch webhook): record dispatch confirmations since the cursor from every warehouse."""
    conns = polls.warehouse_connections()
    if connection_id:
        conns = conns.filter(pk=connection_id)
    return {
        c.name: _guarded(c, "dispatches_since", lambda conn: polls.poll_dispatches(conn, max_pages=max_pages))
        for c in conns
    }


@shared_task(name="orders.fetch_orders", ignore_result=True)
def fetch_orders(connection_id: int, external_ids: list[str], refresh_ids: list[str] | None = None) -> dict:
    """Orders a subscription message only named: fetch and capture; ``refresh_ids``: orders a message said
    changed (returns, cancellation), re-read even when known (the poll catches up if this is lost)."""
    conn = Connection.objects.get(pk=connection_id)
    return polls.fetch_and_capture(conn, list(external_ids), refresh_ids=list(refresh_ids or [])).as_dict()


@shared_task(name="orders.consume_sqs", ignore_result=True)
def consume_sqs(wait_seconds: int = 20, time_budget: float = 25.0) -> dict:
    """Long-poll every commercetools SQS relay (see :mod:`.relays`); messages are deleted once their orders are in."""
    from . import relays

    return relays.consume_all_sqs(wait_seconds=wait_seconds, time_budget=time_budget)


@shared_task(name="orders.resend_unacknowledged", ignore_result=True)
def resend_unacknowledged() -> dict:
    return checks.resend_unacknowledged()


@shared_task(name="orders.find_orphans", ignore_result=True)
def find_orphans() -> dict:
    return checks.find_orphans()


@shared_task(name="orders.find_missing_dispatches", ignore_result=True)
def find_missing_dispatches() -> dict:
    return checks.find_missing_dispatches()


@shared_task(name="orders.send_fulfilments", ignore_result=True)
def send_fulfilments() -> dict:
    return fulfilments.send_fulfilments()
