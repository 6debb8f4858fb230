"""**Send**: claimed in batches with a lease (:mod:`.claims`), posted with the idempotency key in parallel threads
(HTTP only; the database work is set-based before and after). Only a positive acknowledgement moves an order to
*acknowledged*; "received, not acknowledged" (:class:`connectors.errors.NotAcknowledgedError`), 429s and timeouts
leave it *sent* with a back-off, and the beat resends (safe: the warehouse deduplicates on the key). No
acknowledgement within ``HUB["ACK_TIMEOUT_MINUTES"]`` raises ``stuck_order`` (:mod:`.checks`). A 422 holds the
order naming the fields. Then the storefront export handshake (:func:`mark_exported`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from connectors import errors
from connectors.base import Storefront
from exceptions_app import kinds
from exceptions_app.services import clear, raise_many, transport_keys
from integration_hub.core.models import Connection
from integration_hub.inventory import reservations

from . import claims, keys, mapping, remote
from .bulkops import save_split, save_varying
from .models import Order, OrderLine, OrderState as S
from .problems import accepted_after_cancel, order_failed, refused_payload, transport_failure
from .state import transition_many

log = logging.getLogger(__name__)


# retries end (ARCHITECTURE principle 4): after this many sends without an acknowledgement the order fails
MAX_SEND_ATTEMPTS = 30


@dataclass
class SendResult:
    acknowledged: int = 0
    pending: int = 0
    retrying: int = 0
    held: int = 0
    failed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __add__(self, other: "SendResult") -> "SendResult":
        return SendResult(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))


def send_due(limit: int = claims.BATCH_SIZE, lease_seconds: int = claims.LEASE_SECONDS, actor=None) -> SendResult:
    """Claim and send up to ``limit`` validated / unacknowledged orders that are due."""
    ids = claims.claim(claims.SEND_DUE, limit, lease_seconds)
    return send_claimed(ids, actor=actor) if ids else SendResult()


def send_claimed(ids: list[int], actor=None) -> SendResult:
    """Send claimed orders: post them to their warehouses (in parallel), sort what each answered, build the
    records those answers call for, then write the rows (set-based, one transaction)."""
    jobs, answers = _post(ids, actor)
    if not jobs:
        return SendResult()
    out = _sort_outcomes(jobs, answers, timezone.now())
    problems, cleared = _records(out)
    return _write_rows(out, problems, cleared, actor)


@dataclass
class _Outcomes:
    """One send batch sorted by what the warehouse answered. Each order's row fields are already set for its
    write (``claim_token``, ``last_error``, ``next_attempt_at``, ``hold_reason``, ``warehouse_ref``)."""

    acked: list[Order] = field(default_factory=list)
    later: list[Order] = field(
        default_factory=list
    )  # not acknowledged yet / transport failure: resent after a back-off
    held: list[Order] = field(default_factory=list)  # the warehouse refused the data: held naming the fields
    failed: list[tuple[Order, str]] = field(default_factory=list)  # (order, why): no more sends
    pending: int = 0
    retrying: int = 0
    ack_at: dict[int, datetime] = field(default_factory=dict)
    allocations: dict[int, dict[str, str]] = field(default_factory=dict)
    # (order, answer, outcome, detail) in batch order: detail is the refused fields (held) or why (failed)
    answers: list[tuple[Order, object, str, object]] = field(default_factory=list)


def _post(ids: list[int], actor=None) -> tuple[list, list]:
    """Move the claimed orders to *sent* (counting the attempt), build each warehouse order and post them in
    parallel while the claim is renewed. Returns ([(order, warehouse order)], [answer or exception])."""
    with transaction.atomic():
        first = transition_many(
            ids,
            S.SENT,
            "sending to warehouse",
            actor=actor,
            from_states=[S.VALIDATED],
            send_attempts=F("send_attempts") + 1,
        )
        again = [i for i in ids if i not in set(first)]
        transition_many(
            again,
            S.SENT,
            "resending: not acknowledged yet",
            actor=actor,
            from_states=[S.SENT],
            send_attempts=F("send_attempts") + 1,
        )
    orders = list(Order.objects.filter(pk__in=ids, state=S.SENT).select_related("channel", "warehouse").defer("raw"))
    if not orders:
        return [], []
    lines: dict[int, list[OrderLine]] = defaultdict(list)
    for ln in OrderLine.objects.filter(order_id__in=[o.pk for o in orders]).select_related("item").order_by("pk"):
        lines[ln.order_id].append(ln)
    jobs = []
    for o in orders:
        wo = mapping.build_warehouse_order(o, lines[o.pk])
        jobs.append((o, wo))
    from integration_hub.catalog.warehouse_products import attach_ids

    attach_ids(jobs)  # the warehouse's own product ids, where it needs them (Clarus)

    def call(job):
        o, wo = job
        return remote.connector(o.warehouse).send_order(wo)

    with claims.renewing([o.pk for o, _ in jobs]):
        return jobs, remote.parallel(call, jobs)


def _sort_outcomes(jobs: list, answers: list, now) -> _Outcomes:
    """Sort each order by its warehouse's answer: acknowledged; refused data (held); refused for good or out of
    attempts (failed); not acknowledged yet or a transport failure (resent after a back-off). No queries."""
    out = _Outcomes()
    for (o, _), res in zip(jobs, answers):
        o.claim_token = ""
        if isinstance(res, Exception):
            o.last_error = f"{type(res).__name__}: {res}"[:2000]
            if isinstance(res, errors.BadDataError) and not isinstance(res, errors.RetryableError):
                fields = dict(getattr(res, "fields", None) or {}) or {"body": str(res)}
                o.hold_reason = "warehouse rejected: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
                out.held.append(o)
                out.answers.append((o, res, "held", fields))
                continue
            if isinstance(res, (errors.PermanentError, errors.NotFoundError)) or o.send_attempts >= MAX_SEND_ATTEMPTS:
                # a refusal resending cannot change (auth refused, order cancelled at the warehouse, bad route), or
                # retries used up: the order fails with a record naming the cause; a person retries or cancels it
                why = (
                    f"the warehouse refuses the order ({type(res).__name__}): {res}"
                    if isinstance(res, (errors.PermanentError, errors.NotFoundError))
                    else f"{o.send_attempts} sends without an acknowledgement; last: {type(res).__name__}: {res}"
                )
                o.next_attempt_at = None
                out.failed.append((o, why))
                out.answers.append((o, res, "failed", why))
                continue
            o.next_attempt_at = now + claims.backoff(o.send_attempts)
            out.later.append(o)
            out.answers.append((o, res, "later", None))
            if isinstance(res, errors.NotAcknowledgedError):
                out.pending += 1
            else:
                out.retrying += 1
            continue
        o.warehouse_ref = str(res.warehouse_ref)[:100]
        o.last_error, o.next_attempt_at, o.hold_reason = "", None, ""
        out.ack_at[o.pk] = getattr(res, "received_at", None) or now
        out.allocations[o.pk] = dict(getattr(res, "allocations", None) or {})
        out.acked.append(o)
        out.answers.append((o, res, "acked", None))
    return out


def _records(out: _Outcomes) -> tuple[list, list[str]]:
    """The records the answers call for (:mod:`.problems`), in batch order, and the keys an acknowledgement clears.
    "Received, not acknowledged" (:class:`connectors.errors.NotAcknowledgedError`) files nothing: the order is at
    the warehouse, and the stuck-order check names it if no acknowledgement follows."""
    problems, cleared = [], []
    for o, res, outcome, detail in out.answers:
        if outcome == "held":
            problems.append(refused_payload(o, detail))
        elif outcome in ("failed", "later"):
            if not isinstance(res, errors.NotAcknowledgedError):
                problems.append(transport_failure(o.warehouse, "send_order", res, o))
            if outcome == "failed":
                problems.append(order_failed(o, detail))
        else:
            cleared += [
                kinds.key("stuck_order", o.idempotency_key),
                keys.bad_key(o.warehouse.name, "order", o.idempotency_key),
                kinds.key("orphaned_order", o.channel.key, o.external_id),
            ]
    if out.acked:
        conns = {o.warehouse.name for o in out.acked}
        cleared += [k for c in conns for k in transport_keys(c, "send_order")]
    return problems, cleared


def _write_rows(out: _Outcomes, problems: list, cleared: list[str], actor=None) -> SendResult:
    """Write the sorted batch: rows and transitions per outcome (a dispatch confirmation may have moved some on
    meanwhile: those are left alone), holds marked acknowledged, records filed — one transaction; then the keys
    cleared and the storefront export handshake."""
    result = SendResult(pending=out.pending, retrying=out.retrying)
    acked, later, held, failed = out.acked, out.later, out.held, out.failed
    with transaction.atomic():
        if later or held or failed:  # a dispatch confirmation may have moved some on meanwhile: leave those alone
            still_sent = set(
                Order.objects.filter(
                    pk__in=[o.pk for o, _ in failed] + [o.pk for o in later + held], state=S.SENT
                ).values_list("pk", flat=True)
            )
            later = [o for o in later if o.pk in still_sent]
            held = [o for o in held if o.pk in still_sent]
            failed = [(o, why) for o, why in failed if o.pk in still_sent]
        if acked:
            save_split(Order, acked, ["warehouse_ref"], ["last_error", "next_attempt_at", "hold_reason", "claim_token"])
            moved = set(
                transition_many(
                    [o.pk for o in acked],
                    S.ACKNOWLEDGED,
                    "acknowledged by warehouse",
                    actor=actor,
                    from_states=[S.SENT],
                )
            )
            result.acknowledged = len(moved)
            unmoved = [o.pk for o in acked if o.pk not in moved]
            gone = (
                set(Order.objects.filter(pk__in=unmoved, state=S.CANCELLED).values_list("pk", flat=True))
                if unmoved
                else set()
            )
            for o in acked:
                if o.pk in gone:  # cancelled in the hub while this send was in flight, yet the warehouse took it
                    problems.append(accepted_after_cancel(o))
            reservations.mark_holds_acknowledged(
                [
                    (o.idempotency_key, o.warehouse_id, out.ack_at[o.pk], out.allocations[o.pk])
                    for o in acked
                    if o.pk in moved
                ]
            )
        if later:
            save_split(Order, later, ["last_error", "next_attempt_at"], ["claim_token"])
        if held:
            save_varying(Order, held, ["last_error", "hold_reason", "claim_token"])
            result.held = len(
                transition_many(
                    [o.pk for o in held],
                    S.HELD,
                    "held: warehouse rejected the order",
                    actor=actor,
                    from_states=[S.SENT],
                )
            )
        if failed:
            save_varying(Order, [o for o, _ in failed], ["last_error", "next_attempt_at", "claim_token"])
            for why, group in _group_by_cause(failed).items():
                result.failed += len(
                    transition_many(
                        [o.pk for o in group], S.FAILED, f"failed: {why}", actor=actor, from_states=[S.SENT]
                    )
                )
        if problems:
            raise_many(problems)
    if cleared:
        clear(cleared, reason="warehouse acknowledged")
    exported = [(o, True) for o in acked if o.pk in moved] if acked else []
    mark_exported(exported + [(o, False) for o, _ in failed])
    return result


def _group_by_cause(failed: list[tuple[Order, str]]) -> dict[str, list[Order]]:
    """Failed orders grouped by the cause logged on their transition (the exception type, not the message, so a
    batch refused for one reason is one transition_many)."""
    out: dict[str, list[Order]] = defaultdict(list)
    for o, why in failed:
        out[why.split(":")[0][:200]].append(o)
    return out


def mark_exported(outcomes: list[tuple[Order, bool]]) -> int:
    """The storefront export handshake (:meth:`Storefront.mark_exported`): acknowledged by the warehouse
    (True) or given up on (False). HTTP only after the database work; a failure is a warning record per
    storefront (cleared by a later success) and is repaired when the poll reads the order again still waiting
    (the hub's own shipped update bumps it). Returns the orders marked."""
    if not outcomes:
        return 0
    conns = Connection.objects.in_bulk({o.channel.connection_id for o, _ in outcomes})
    done, problems, cleared = 0, [], []
    by_conn: dict[int, list[tuple[Order, bool]]] = defaultdict(list)
    for o, ok in outcomes:
        by_conn[o.channel.connection_id].append((o, ok))
    for conn_id, group in by_conn.items():
        conn = conns.get(conn_id)
        if conn is None or not conn.enabled:
            continue
        connector = remote.connector(conn)
        if getattr(type(connector), "mark_exported", Storefront.mark_exported) is Storefront.mark_exported:
            continue  # no export handshake on this storefront
        answers = remote.parallel(lambda job, c=connector: c.mark_exported(job[0].external_id, job[1]), group)
        failures = [r for r in answers if isinstance(r, Exception)]
        done += len(answers) - len(failures)
        if failures:
            log.warning("%s: export status of %d order(s) not set: %s", conn.name, len(failures), failures[0])
            problems.append(transport_failure(conn, "mark_exported", failures[0]))
        else:
            cleared += transport_keys(conn.name, "mark_exported")
    if problems:
        raise_many(problems)
    if cleared:
        clear(cleared, reason="export status set")
    return done


def repair_exports(connection: Connection, storefront_orders) -> int:
    """Orders the storefront still shows waiting for the export handshake although the hub already has an
    answer (acknowledged or later: exported; failed: failed) — the earlier mark was lost. One query."""
    waiting = [so.external_id for so in storefront_orders if so.awaiting_export]
    if not waiting:
        return 0
    answered = {S.ACKNOWLEDGED: True, S.DISPATCHED: True, S.STOREFRONT_NOTIFIED: True, S.FAILED: False}
    orders = (
        Order.objects.filter(channel__connection=connection, external_id__in=waiting, state__in=list(answered))
        .select_related("channel")
        .defer("raw")
    )
    return mark_exported([(o, answered[o.state]) for o in orders])
