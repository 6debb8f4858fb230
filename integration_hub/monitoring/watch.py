"""Issue 20, item 9: what a flash sale under faults must put in the exception queue, not only on the dashboard.

Called by the ``monitoring.tick`` beat job with the figures it just computed (no query of its own to decide):
each condition is one hub-wide record, raised (merged) while it holds and cleared when it no longer does.

  no worker heartbeat     sync_timeout:hub:worker-heartbeat   the last heartbeat older than ``HEARTBEAT_STALE_SECONDS``
  work of a dead worker   sync_timeout:hub:expired-leases     push rows / orders claimed past their lease
  intake behind           stuck_order:hub:intake-behind       oldest captured-but-unsent order older than
                                                              ``HUB["INTAKE_BEHIND_SECONDS"]`` (120)
  holds piling up         stock_drift:hub:holds-overdue       acknowledged holds older than the feed lag

Pairs drifting already are records of their own (``stock_drift:<channel>:<sku>``, from the repair sweep), and
expired holds one per master (``stock_drift:<master>:holds-expired``, from the hold bound).
"""

from __future__ import annotations

from django.conf import settings

from exceptions_app import kinds
from exceptions_app.services import Problem, clear, raise_many

HEARTBEAT_STALE_SECONDS = 180  # the beat's heartbeat job runs every minute: three missed is a dead worker pool
NEVER = 10 * 365 * 86400  # figures report a heartbeat never seen as "since 1970"


def record(values: dict[tuple[str, str], float]) -> dict[str, bool]:
    """Raise or clear the four records from ``values`` (:func:`integration_hub.monitoring.figures.compute`)."""
    hub = settings.HUB
    beat = values.get(("worker_heartbeat_age_seconds", ""), 0.0)
    leases = values.get(("leases_expired", ""), 0.0)
    intake = values.get(("intake_oldest_seconds", ""), 0.0)
    overdue = values.get(("holds_overdue", ""), 0.0)
    lag = int(hub.get("MASTER_FEED_LAG_SECONDS", 120))
    intake_limit = int(hub.get("INTAKE_BEHIND_SECONDS", 120))
    checks = {
        # never seen (a fresh install: this tick itself ran on a worker) is the dashboard's alone, not a record
        kinds.key("sync_timeout", "hub", "worker-heartbeat"): (
            HEARTBEAT_STALE_SECONDS < beat < NEVER,
            lambda k: Problem(
                kind="sync_timeout",
                key=k,
                severity="critical",
                title="No Celery worker has run the heartbeat job recently",
                message=f"The last worker heartbeat is {int(beat)} s old (the beat sends one a minute). Orders and stock are not "
                "moving: check the worker processes and the broker.",
                context={"heartbeat_age_seconds": int(beat), "action": "check_workers"},
            ),
        ),
        kinds.key("sync_timeout", "hub", "expired-leases"): (
            leases > 0,
            lambda k: Problem(
                kind="sync_timeout",
                key=k,
                severity="error",
                title=f"{int(leases)} claim(s) left by a worker that stopped",
                message="Stock push rows or orders are still claimed after their lease ran out: the worker holding them died "
                "(or hangs). The sweeps hand them to live workers; if this stays, check the workers.",
                context={"expired_leases": int(leases), "action": "check_workers"},
            ),
        ),
        kinds.key("stuck_order", "hub", "intake-behind"): (
            intake > intake_limit,
            lambda k: Problem(
                kind="stuck_order",
                key=k,
                severity="error",
                title=f"Order intake is {int(intake)} s behind",
                message=f"The oldest order captured but not yet sent to the warehouse was captured {int(intake)} s ago "
                f"(limit {intake_limit} s). Workers are busy, stopped or the order queue is blocked.",
                context={
                    "oldest_unsent_seconds": int(intake),
                    "limit_seconds": intake_limit,
                    "action": "check_workers",
                },
            ),
        ),
        kinds.key("stock_drift", "hub", "holds-overdue"): (
            overdue > 0,
            lambda k: Problem(
                kind="stock_drift",
                key=k,
                severity="warning",
                title=f"{int(overdue)} order hold(s) beyond the masters' feed lag",
                message=f"Acknowledged orders still hold stock {lag} s after the warehouse took them: the master's stock feed "
                "has not shown their allocation (a lost feed, or a master allocating where the hub does not look). "
                "They are released with a record at HUB_HOLD_MAX_SECONDS.",
                context={"holds_overdue": int(overdue), "feed_lag_seconds": lag, "action": "check_master_stock"},
            ),
        ),
    }
    raise_many([make(k) for k, (on, make) in checks.items() if on])
    off = [k for k, (on, _) in checks.items() if not on]
    if off:
        clear(off, reason="back within bounds")
    return {k: on for k, (on, _) in checks.items()}
