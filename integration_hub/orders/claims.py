"""Which orders are due and who holds them: the due-sets of every phase, claims with a lease (``claim_token`` +
``next_attempt_at``: a killed worker's orders come back when the lease runs out, and a live lease is renewed while
its remote calls run), the back-off, and :func:`kick` — the nudge that asks a worker to process due orders now.

Workers are nudged by task name through :func:`integration_hub.core.nudge.enqueue` (``"orders.process"``): no order
module imports :mod:`.tasks`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration_hub.core import nudge
from integration_hub.core.leases import LeaseKeeper

from .models import Order, OrderState as S

log = logging.getLogger(__name__)


BATCH_SIZE = 200

# Orders per HTTP batch (send / notify): small enough that a batch finishes well inside its lease even when
# 429s and timeouts slow some calls down, so no other worker re-claims (and re-sends) orders still in flight.
HTTP_BATCH_SIZE = 48
LEASE_SECONDS = 30  # short: renewed while the warehouse / storefront calls are in flight (core.leases)
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 300
EDITABLE_BEFORE_SEND = {S.CAPTURED, S.VALIDATED, S.HELD, S.FAILED}


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, min(attempts - 1, 10))))


# a disabled connection is not talked to: its orders wait (and the orphan / stuck checks report them)
SEND_DUE = Q(state__in=[S.VALIDATED, S.SENT], warehouse__enabled=True, cancel_requested_at__isnull=True)

# orders the warehouse may have: sent / acknowledged, and failed ones that were ever sent (FAILED follows 30
# NotAcknowledged answers, which for WAIR mean it holds the order) — cancelling those asks the warehouse
AT_WAREHOUSE = Q(state__in=[S.SENT, S.ACKNOWLEDGED]) | (
    Q(state=S.FAILED) & (Q(send_attempts__gt=0) | Q(sent_at__isnull=False))
)
CANCEL_DUE = AT_WAREHOUSE & Q(warehouse__enabled=True, cancel_requested_at__isnull=False)
NOTIFY_DUE = Q(state=S.DISPATCHED, channel__connection__enabled=True)
VALIDATE_DUE = Q(state=S.CAPTURED)


def claim(base_q: Q, limit: int, lease_seconds: int) -> list[int]:
    """Lease up to ``limit`` due orders matching ``base_q`` to this worker (ids returned)."""
    now = timezone.now()
    due = base_q & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    token = uuid.uuid4().hex
    # rows another worker is claiming right now are skipped, not waited for (FOR UPDATE SKIP LOCKED on PostgreSQL;
    # SQLite serialises writers anyway): two loops never lock overlapping order rows in different orders, which
    # deadlocked a claim against the other loop's notify update
    with transaction.atomic():
        ids = list(
            Order.objects.filter(due)
            .order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        Order.objects.filter(due, pk__in=ids).update(
            claim_token=token, next_attempt_at=now + timedelta(seconds=lease_seconds)
        )
    return list(Order.objects.filter(claim_token=token).values_list("pk", flat=True))


def maybe_at_warehouse(o: Order) -> bool:
    """:data:`AT_WAREHOUSE` for one loaded order."""
    return o.state in (S.SENT, S.ACKNOWLEDGED) or (
        o.state == S.FAILED and (o.send_attempts > 0 or o.sent_at is not None)
    )


def lease_free(now) -> Q:
    """Orders no worker holds a live lease on: a send in flight keeps its lease, so a cancel never runs alongside it."""
    return Q(claim_token="") | Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def renewing(ids: list[int], lease_seconds: int | None = None) -> LeaseKeeper:
    """Keep the claim on ``ids`` alive while their remote calls run (orders still leased, i.e. not
    released or moved on meanwhile); a killed worker stops renewing and its orders are due again soon."""

    def renew(new_until):
        Order.objects.filter(pk__in=ids, claim_token__gt="", next_attempt_at__gt=timezone.now()).update(
            next_attempt_at=new_until
        )

    return LeaseKeeper(renew, lease_seconds or LEASE_SECONDS, "order claim")


def release_expired_claims() -> int:
    """Orders a dead worker claimed: the lease (next_attempt_at) ran out, so they are due again anyway;
    clear the stale token so the console does not show them as in progress."""
    return Order.objects.filter(claim_token__gt="", next_attempt_at__lte=timezone.now()).update(claim_token="")


def pending_work() -> int:
    now = timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return Order.objects.filter((VALIDATE_DUE | SEND_DUE | NOTIFY_DUE | CANCEL_DUE) & due).count()


def kick(delay: float = 0) -> None:
    """Ask a worker to process due orders now (after the current transaction commits). Best effort: the
    beat sweep finds anything a lost nudge leaves behind. At most one nudge per second (shared cache);
    with the cache server down it nudges anyway — the caller's committed work never fails over a nudge."""
    from integration_hub.core.locks import cache_add

    def send_nudge():
        if not cache_add("orders:kick", 1, timeout=1, unavailable=True):
            return
        try:
            nudge.enqueue("orders.process", queue="priority", countdown=delay or None, retry=False)
        except Exception as exc:  # broker down: rows are safe in the database
            log.warning("could not dispatch orders.process (%s); the sweep will pick the orders up", exc)

    transaction.on_commit(send_nudge)
