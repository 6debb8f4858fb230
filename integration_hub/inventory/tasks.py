"""Celery tasks of the stock engine. Thin: they call :mod:`.push`, :mod:`.services`, :mod:`.drift`.

Every task is idempotent (acks_late is global): pushing absolute targets twice is harmless, the outbox
rows are claimed with a lease, and the sweep re-dispatches whatever a killed worker left behind.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from connectors import errors
from connectors.base import InventoryMaster
from connectors.registry import connector_class
from integration_hub.core.locks import POLL_LOCK_SECONDS, cache_add, exclusive
from integration_hub.core.models import Channel, Connection
from integration_hub.core.outcomes import connection_call
from integration_hub.core.queues import is_urgent_stock
from integration_hub.monitoring import progress

from . import drift, full_load as loads, push, services
from .import_outcomes import settle_imports  # noqa: F401 - registers inventory.settle_imports with the worker
from .models import PendingPush

log = logging.getLogger(__name__)


DRAIN_SECONDS = 20.0  # one drain task's time budget; it re-kicks itself with work left
DRAIN_LOCK_SECONDS = 10  # the drain lock's lifetime, renewed while the drain runs: a dead worker's lock frees this fast
# after pushing, a drain on a worker keeps looking for newly committed rows this long before it lets go
# (push.drain ``linger``): longer than the kick window, so a change that comes within a window of the last one
# is taken by the drain that is still running, not by the trailing kick a window later
DRAIN_LINGER_SECONDS = 1.5


def _linger(request, linger: float | None) -> float:
    """``linger`` as given; by default DRAIN_LINGER_SECONDS on a worker and 0 when the task runs inline (called
    directly, or eagerly in a web request / a test): a caller waiting for the task must not wait out a linger."""
    if linger is not None:
        return max(0.0, float(linger))
    return 0.0 if (request.called_directly or request.is_eager) else DRAIN_LINGER_SECONDS


@shared_task(name="inventory.push_pending", ignore_result=True, bind=True)
def push_pending(
    self,
    max_priority: int | None = None,
    batch_size: int = push.BATCH_SIZE,
    time_budget: float = DRAIN_SECONDS,
    lease_seconds: int = push.LEASE_SECONDS,
    connection_id: int | None = None,
    linger: float | None = None,
) -> dict:
    """Drain the outbox (only ORDER rows when ``max_priority`` is 0 — the "stock" queue, see core.queues).

    Without ``connection_id`` this only fans out: one drain task per storefront connection with rows ready.
    With it, it drains that connection's rows — one drain per (connection, urgency) at a time across every
    worker (a named lock: a second one returns at once), bounded by ``time_budget``; after letting go of
    the lock it re-kicks itself if rows are ready (work left, or rows that arrived while it ran and whose
    own drain found the lock taken), so nothing waits for the beat sweep and nothing queues behind it.
    ``lease_seconds``: how long a claimed batch stays reserved if this worker dies mid-push. ``linger``: how long
    the drain keeps taking rows committed after its last claim (:func:`_linger`; ``push.drain``)."""
    if connection_id is None:
        conns = push.claimable_connections(max_priority)
        for cid in conns:
            push_pending.apply_async(
                kwargs={
                    "max_priority": max_priority,
                    "batch_size": batch_size,
                    "time_budget": time_budget,
                    "lease_seconds": lease_seconds,
                    "connection_id": cid,
                }
            )
        return {"connections": conns}
    urgent = is_urgent_stock(max_priority)
    lock = f"stock-drain-{int(connection_id)}-{'order' if urgent else 'all'}"
    kwargs = {
        "max_priority": max_priority,
        "batch_size": batch_size,
        "time_budget": time_budget,
        "lease_seconds": lease_seconds,
        "connection_id": connection_id,
    }
    with exclusive(lock, timeout=DRAIN_LOCK_SECONDS, renew=True) as got:
        if not got:
            # the holder re-kicks when it is done; but a holder that died (SIGKILL) never will: one delayed
            # retry per lock, after the lock's lifetime, picks up what it left (deduplicated: at most one waits)
            if push.has_claimable(max_priority, connection_id) and cache_add(
                f"hub:drain-retry:{lock}", 1, DRAIN_LOCK_SECONDS, unavailable=True
            ):
                push_pending.apply_async(kwargs=kwargs, countdown=DRAIN_LOCK_SECONDS + 1)
            return {"skipped": "a drain of this connection is running"}
        totals, more = push.drain(
            max_priority=max_priority,
            batch_size=batch_size,
            time_budget=time_budget,
            lease_seconds=lease_seconds,
            connection_id=connection_id,
            linger=_linger(self.request, linger),
        )
    if more or push.has_claimable(max_priority, connection_id):
        push_pending.apply_async(
            kwargs={
                "max_priority": max_priority,
                "batch_size": batch_size,
                "time_budget": time_budget,
                "lease_seconds": lease_seconds,
                "connection_id": connection_id,
            }
        )
    result = {
        "claimed": totals.claimed,
        "pushed": totals.pushed,
        "skipped": totals.skipped,
        "failed": totals.failed,
        "pending": totals.pending,
        "dropped": totals.dropped,
        "requeued": totals.requeued,
        "more": more,
    }
    if totals.claimed:
        log.info("push_pending(connection=%s, max_priority=%s): %s", connection_id, max_priority, result)
    return result


@shared_task(name="inventory.sweep_pending", ignore_result=True)
def sweep_pending() -> dict:
    """Beat: free claims a dead worker left behind and dispatch drains for anything ready to push."""
    released = push.release_expired_claims()
    counts = push.claimable_counts()
    if counts["order"]:
        push_pending.apply_async(kwargs={"max_priority": int(PendingPush.Priority.ORDER)})
    if counts["other"] or counts["order"]:
        push_pending.apply_async()
    return {"released": released, **counts}


def _master_connections():
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
    (:func:`~integration_hub.core.outcomes.connection_call`, operation ``stock_changes``) and are cleared by the
    next success; the next beat tick retries."""
    conn = Connection.objects.get(pk=connection_id)
    # one poller per master across every worker process (Redis key, or a host-wide file lock embedded)
    with exclusive(f"stock-poll-{conn.pk}", timeout=POLL_LOCK_SECONDS, renew=True) as got:
        if not got:  # another worker is polling this master right now
            return {"skipped": "already polling"}
        with connection_call(
            conn,
            "stock_changes",
            title=f"Polling stock from {conn.name} failed",
            action="retry_poll",
            cleared="poll succeeded",
        ) as call:
            res = services.poll_master(conn, max_pages=max_pages)
    if call.failed:
        return {"error": call.error_text(300)}
    if res.has_more:
        poll_stock.apply_async(args=[conn.pk])
    return {"pages": res.pages, "changes": res.changes, **(res.applied.as_dict() if res.applied else {})}


@shared_task(name="inventory.resync_masters", ignore_result=True)
def resync_masters(connection_id: int | None = None) -> list[dict]:
    """Beat (nightly): apply every master's full stock snapshot. Failures (a master that cannot give one too)
    become records keyed ``<kind>:<connection>:stock_snapshot`` (:func:`~integration_hub.core.outcomes.connection_call`),
    cleared by the next success."""
    out = []
    conns = [c for c in _master_connections() if not connection_id or c.pk == int(connection_id)]
    bar = progress.start("stock-resync", "Full stock resync from the masters", total=len(conns))  # dashboard bar
    for conn in conns:
        with connection_call(
            conn,
            "stock_snapshot",
            title=f"Stock snapshot from {conn.name} failed",
            action="retry_resync",
            catch=(errors.ConnectorError, NotImplementedError),
            cleared="snapshot applied",
        ) as call:
            res = services.resync_master(conn)
        out.append(
            {"connection": conn.name, "error": call.error_text(300)}
            if call.failed
            else {"connection": conn.name, **res.as_dict()}
        )
        bar.advance(force=True)
    bar.finish()
    return out


@shared_task(name="inventory.expire_holds", ignore_result=True)
def expire_holds() -> int:
    """Beat: release acknowledged holds older than the masters' feed lag, with a record (reservations.expire_holds)."""
    from .reservations import expire_holds as expire

    return expire()


@shared_task(name="inventory.repair_sweep", ignore_result=True)
def repair_sweep(limit: int = drift.SWEEP_PAIRS_PER_CHANNEL) -> list[dict]:
    """Beat (every two minutes): the light drift check — at most ``limit`` pairs per channel read back,
    least recently observed first, drifted ones re-pushed. One sweep at a time across workers."""
    out = []
    with exclusive("stock-repair-sweep", timeout=POLL_LOCK_SECONDS, renew=True) as got:
        if not got:
            return [{"skipped": "a sweep is running"}]
        for channel in drift.channels_to_check():
            try:
                out.append(asdict(drift.sweep_channel(channel, limit=limit)))
            except errors.ConnectorError as exc:  # that storefront cannot be read now: the next sweep retries
                log.warning("repair sweep of %s failed: %s", channel.key, exc)
                out.append({"channel": channel.key, "error": str(exc)[:300]})
    return out


@shared_task(name="inventory.drift_check", ignore_result=True)
def drift_check(channel_ids: list[int] | None = None) -> list[dict]:
    """Beat: compare hub ATS with storefront quantities for every channel (or the given ones). A
    storefront that cannot be read is logged and recorded for that channel (operation ``drift_check/<channel>``,
    :func:`~integration_hub.core.outcomes.connection_call`) and the others still run."""
    out = []
    for channel in drift.channels_to_check(channel_ids):
        with connection_call(
            channel.connection,
            f"drift_check/{channel.key}",
            channel=channel,
            action="retry_drift_check",
            title=f"Drift check of {channel.key} could not read {channel.connection.name}",
            cleared="drift check completed",
        ) as call:
            out.append(asdict(drift.check_channel(channel)))
        if call.failed:
            log.warning("drift check of %s failed: %s", channel.key, call.error)
            out.append({"channel": channel.key, "error": call.error_text(300)})
    return out


@shared_task(name="inventory.full_load", ignore_result=True)
def full_load(channel_ids: list[int], reason: str = "full resync") -> dict:
    """A channel's first sync / full resync as one full load per storefront (:mod:`.full_load`)."""
    totals = loads.push_channels(
        list(Channel.objects.select_related("connection").filter(pk__in=channel_ids)), reason=reason
    )
    return {"claimed": totals.claimed, "pushed": totals.pushed, "skipped": totals.skipped, "failed": totals.failed}
