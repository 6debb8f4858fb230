"""Celery tasks of the stock engine. Thin: they call :mod:`.push`, :mod:`.services`, :mod:`.drift`.

Every task is idempotent (acks_late is global): pushing absolute targets twice is harmless, the outbox
rows are claimed with a lease, and the sweep re-dispatches whatever a killed worker left behind.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from connectors import errors
from exceptions_app.services import (
    clear,
    error_key,
    make_key,
    raise_exception,
    transport_keys,
)
from integration_hub.core.models import Connection

from . import drift, push
from .models import PendingPush

log = logging.getLogger(__name__)


@shared_task(name="inventory.push_pending", ignore_result=True)
def push_pending(max_priority: int | None = None, batch_size: int = push.BATCH_SIZE, time_budget: float = 50.0,
                 lease_seconds: int = push.LEASE_SECONDS) -> dict:
    """Drain the outbox (only ORDER rows when ``max_priority`` is 0 — the "priority" queue).
    ``lease_seconds``: how long a claimed batch stays reserved if this worker dies mid-push."""
    totals, more = push.drain(max_priority=max_priority, batch_size=batch_size, time_budget=time_budget,
                              lease_seconds=lease_seconds)
    if more:  # time budget used up with work left: continue in a fresh task so other work interleaves
        urgent = max_priority is not None and max_priority <= PendingPush.Priority.ORDER
        push_pending.apply_async(kwargs={"max_priority": max_priority, "batch_size": batch_size, "time_budget": time_budget,
                                         "lease_seconds": lease_seconds},
                                 queue="priority" if urgent else "default")
    result = {"claimed": totals.claimed, "pushed": totals.pushed, "skipped": totals.skipped, "failed": totals.failed,
              "dropped": totals.dropped, "requeued": totals.requeued, "more": more}
    if totals.claimed:
        log.info("push_pending(max_priority=%s): %s", max_priority, result)
    return result


@shared_task(name="inventory.sweep_pending", ignore_result=True)
def sweep_pending() -> dict:
    """Beat: free claims a dead worker left behind and dispatch drains for anything ready to push."""
    released = push.release_expired_claims()
    counts = push.claimable_counts()
    if counts["order"]:
        push_pending.apply_async(kwargs={"max_priority": int(PendingPush.Priority.ORDER)}, queue="priority")
    if counts["other"] or counts["order"]:
        push_pending.apply_async(queue="default")
    return {"released": released, **counts}


def _master_connections():
    from connectors.base import InventoryMaster
    from connectors.registry import connector_class

    for conn in Connection.objects.filter(enabled=True).order_by("pk"):
        if not conn.is_master:
            continue
        try:
            cls = connector_class(conn.system_type)
        except (LookupError, ImportError):
            continue
        if issubclass(cls, InventoryMaster):
            yield conn


@shared_task(name="inventory.poll_masters", ignore_result=True)
def poll_masters() -> int:
    """Beat: one poll task per enabled inventory-master connection."""
    n = 0
    for conn in _master_connections():
        poll_stock.apply_async(args=[conn.pk])
        n += 1
    return n


@shared_task(name="inventory.poll_stock", ignore_result=True)
def poll_stock(connection_id: int, max_pages: int = 50) -> dict:
    """Fetch stock changes since the cursor from one master. Failures become exception records
    (``rate_limited`` / ``sync_timeout`` keyed on the connection) and are cleared by the next success;
    the next beat tick retries."""
    from integration_hub.core.locks import exclusive

    from .services import poll_master

    conn = Connection.objects.get(pk=connection_id)
    keys = transport_keys(conn.name, "stock_changes")
    # one poller per master across every worker process (Redis key, or a host-wide file lock embedded)
    with exclusive(f"stock-poll-{conn.pk}", timeout=300) as got:
        if not got:  # another worker is polling this master right now
            return {"skipped": "already polling"}
        try:
            res = poll_master(conn, max_pages=max_pages)
        except errors.ConnectorError as exc:
            kind, key = error_key(exc, conn.name, "stock_changes")
            raise_exception(kind, key, f"Polling stock from {conn.name} failed",
                            message=str(exc)[:2000], connection=conn,
                            context={"operation": "stock_changes", "error": type(exc).__name__, "action": "retry_poll"})
            Connection.record_error(conn.pk, exc)
            return {"error": str(exc)[:300]}
    clear(keys, reason="poll succeeded")
    Connection.objects.filter(pk=conn.pk).update(last_success_at=timezone.now())
    if res.has_more:
        poll_stock.apply_async(args=[conn.pk])
    return {"pages": res.pages, "changes": res.changes, **(res.applied.as_dict() if res.applied else {})}


@shared_task(name="inventory.resync_masters", ignore_result=True)
def resync_masters(connection_id: int | None = None) -> list[dict]:
    """Beat (nightly): apply every master's full stock snapshot. Failures become sync_timeout /
    rate_limited records keyed ``<kind>:<connection>:stock_snapshot``, cleared by the next success."""
    from .services import resync_master

    out = []
    for conn in _master_connections():
        if connection_id and conn.pk != int(connection_id):
            continue
        keys = transport_keys(conn.name, "stock_snapshot")
        try:
            res = resync_master(conn)
        except (errors.ConnectorError, NotImplementedError) as exc:
            kind, key = error_key(exc, conn.name, "stock_snapshot")
            raise_exception(kind, key, f"Stock snapshot from {conn.name} failed",
                            message=str(exc)[:2000] or type(exc).__name__, connection=conn,
                            context={"operation": "stock_snapshot", "error": type(exc).__name__, "action": "retry_resync"})
            out.append({"connection": conn.name, "error": str(exc)[:300]})
            continue
        clear(keys, reason="snapshot applied")
        out.append({"connection": conn.name, **res.as_dict()})
    return out


@shared_task(name="inventory.drift_check", ignore_result=True)
def drift_check(channel_ids: list[int] | None = None) -> list[dict]:
    """Beat: compare hub ATS with storefront quantities for every channel (or the given ones). A
    storefront that cannot be read is logged for that channel and the others still run."""
    from dataclasses import asdict

    out = []
    for channel in drift.channels_to_check(channel_ids):
        key = make_key("sync_timeout", channel.connection.name, f"drift_check/{channel.key}")
        try:
            out.append(asdict(drift.check_channel(channel)))
        except errors.ConnectorError as exc:
            log.warning("drift check of %s failed: %s", channel.key, exc)
            raise_exception("sync_timeout", key, f"Drift check of {channel.key} could not read {channel.connection.name}",
                            message=str(exc)[:2000], connection=channel.connection, channel=channel,
                            context={"operation": "get_stock", "error": type(exc).__name__, "action": "retry_drift_check"})
            out.append({"channel": channel.key, "error": str(exc)[:300]})
        else:
            clear(key, reason="drift check completed")
    return out
