"""Draining the stock outbox: claim pending rows, compute ATS for them, push absolute targets.

One batch (:func:`push_batch`) runs a fixed number of queries whatever its size:

1. claim — pick up to ``batch_size`` claimable rows in priority order (ORDER before ROUTINE before
   SWEEP, oldest first). PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` so many workers take disjoint
   rows; SQLite: the hub opens every transaction ``BEGIN IMMEDIATE`` (settings), which holds the write
   lock for the claim. Either way the UPDATE re-checks the claim conditions and the rows are then read
   back by a fresh claim token, so a row is never held by two workers while its lease is valid.
2. ATS for all claimed pairs in one query (:mod:`.ats`), the last confirmed values in one query, the
   channels and their connections in one query.
3. pairs whose ATS equals ``ChannelStock.confirmed_quantity`` are not sent (state, not events);
   pairs that are no longer pushable (mapping deleted / deactivated, channel inactive or without a
   rule) but were last confirmed (or seen) positive are *withdrawn*: 0 is pushed to the storefront SKU
   they were confirmed under, so the storefront does not keep selling a quantity nobody maintains; a
   mapping moved to another storefront SKU zeroes the old one too (one query for the SKUs' current
   owners, only when there is something to withdraw);
   Every target carries ``ledger`` = ATS + the units of the channel's own orders the hub has captured under
   that storefront SKU (:func:`.ats.captured_units`); storefronts that decrement their own stock on an order (commercetools)
   apply the ledger's change relatively, so what they show is always
   ``master available − buffers − hub reservations − their own orders the hub has not captured yet``
   (see :mod:`connectors.commercetools`); the others write ``quantity`` absolutely and ignore it.
   A renamed mapping's old SKU is zeroed absolutely (it is no longer the item's);
4. one ``Storefront.set_stock`` call per storefront connection, concurrently when a batch spans several
   (no database access inside; the HttpClient rate-limits per connection — shared by every process
   through Redis, or through a file bucket on the host in embedded mode — and honours Retry-After; the
   connector handles 409 by re-reading the version). Nothing else serialises pushes to a connection,
   so an order-decrement drain never waits behind a routine batch;
5. ChannelStock upserted in bulk, then only the claimed rows whose ``claim_token`` is still ours are
   deleted: an ``enqueue`` that arrived while we were pushing cleared the token, so that row is
   released and pushed again with the newer figure. Failed rows get ``attempts + 1``, an exponential
   ``not_before`` (at least the server's Retry-After) and ``last_error``; repeated failures raise
   ``rate_limited`` / ``sync_timeout`` exception records (a 409 that outlasts the connector's re-reads
   is a ``sync_timeout`` titled and marked as a conflict), which a later success clears.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection as db, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from connectors import errors
from connectors.base import InventoryTarget
from exceptions_app import kinds
from exceptions_app.services import Problem, clear, kind_for_error, raise_many
from integration_hub.core.leases import LeaseKeeper
from integration_hub.core.models import Channel, Connection

from . import ats
from .models import ChannelStock, PendingPush
from .sql import upsert

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Short, renewed leases (issue 20): a live worker renews its batch's claim every LEASE_SECONDS / 3 while
# the push is in flight (:class:`integration_hub.core.leases.LeaseKeeper`), so a slow storefront never loses the claim, and a killed
# worker's rows are claimable again within LEASE_SECONDS instead of waiting out a long lease.
LEASE_SECONDS = 30
FAILURES_BEFORE_EXCEPTION = 3
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0
OPERATION = "set_stock"

# roles of a target in a batch
SET = "set"  # the pair's ATS under its current storefront SKU
WITHDRAW = "withdraw"  # the pair is no longer pushable: zero the SKU it was last confirmed under
RENAMED = "renamed"  # the mapping moved to another storefront SKU: zero the old one


@dataclass
class BatchResult:
    claimed: int = 0
    pushed: int = 0  # targets the storefront confirmed
    skipped: int = 0  # ATS already equal to the confirmed quantity
    dropped: int = 0  # no longer pushable (mapping removed, channel inactive / without a rule)
    failed: int = 0
    pending: int = 0  # accepted by an asynchronous bulk import (``errors.ImportPending``): outcome read back later
    requeued: int = 0  # changed while being pushed: released for another pass
    connections: dict = field(default_factory=dict)  # connection name -> targets sent

    def add(self, other: "BatchResult") -> None:
        for name in ("claimed", "pushed", "skipped", "dropped", "failed", "pending", "requeued"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.connections.items():
            self.connections[k] = self.connections.get(k, 0) + v


def _claimable(now, max_priority: int | None, connection_id: int | None = None):
    qs = PendingPush.objects.filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now), Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    if max_priority is not None:
        qs = qs.filter(priority__lte=max_priority)
    if connection_id is not None:  # one storefront connection's rows (a per-connection drain)
        qs = qs.filter(channel_id__in=Channel.objects.filter(connection_id=connection_id).values("id"))
    return qs


def claim(
    batch_size: int = BATCH_SIZE,
    max_priority: int | None = None,
    lease_seconds: int = LEASE_SECONDS,
    connection_id: int | None = None,
    channel_ids=None,
):
    """Claim up to ``batch_size`` rows (of one storefront connection when ``connection_id`` is given; of
    ``channel_ids`` only, when given). Returns (token, lease_until, rows as dicts)."""
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds)
    token = uuid.uuid4().hex
    with transaction.atomic():
        candidates = _claimable(now, max_priority, connection_id).order_by("priority", "created_at", "id")
        if channel_ids is not None:  # a full load (full_load.push_channels) claims one channel's rows
            candidates = candidates.filter(channel_id__in=list(channel_ids))
        if db.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("id", flat=True)[:batch_size])
        if not ids:
            return token, lease, []
        _claimable(now, max_priority, connection_id).filter(id__in=ids).update(claimed_until=lease, claim_token=token)
        rows = list(
            PendingPush.objects.filter(claim_token=token).values(
                "id", "channel_id", "item_id", "priority", "attempts", "changes"
            )
        )
    return token, lease, rows


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** min(20, max(0, attempts - 1))))
    delay = delay * random.uniform(0.5, 1.0)
    if retry_after:
        delay = max(delay, float(retry_after))
    return delay


def _plan_withdrawals(
    withdraw: list[tuple], per_conn: dict, done: list, problems: list, out: BatchResult, captured: dict | None = None
) -> None:
    """Add a quantity-0 target for every storefront SKU the hub last confirmed positive and no longer
    maintains (ARCHITECTURE principle 1: the storefront must not keep selling stock nobody updates).
    A SKU that another item's active mapping now owns on that channel is left to that item's push.
    One query (the owners)."""
    from integration_hub.catalog.models import SkuMapping

    skus = {cs["storefront_sku"] for _, _, _, cs, _ in withdraw if cs["storefront_sku"]}
    owners: dict[str, list[tuple]] = defaultdict(list)
    for ch_id, sku, item_id in SkuMapping.objects.filter(storefront_sku__in=skus, active=True).values_list(
        "channel_id", "storefront_sku", "item_id"
    ):
        owners[sku].append((ch_id, item_id))
    for pair, row, channel, cs, role in withdraw:
        sku = cs["storefront_sku"]
        owned = any(item_id != pair[1] and ch_id in (None, pair[0]) for ch_id, item_id in owners.get(sku, ()))
        if role == RENAMED:
            if sku and not owned:
                per_conn[channel.connection_id].append(
                    (
                        pair,
                        row,
                        InventoryTarget(
                            sku=sku,
                            channel_ref=channel.external_id,
                            quantity=0,
                            known_version=cs["storefront_version"],
                            known_ref=cs["storefront_ref"] or "",
                        ),
                        RENAMED,
                    )
                )
            continue
        if owned:  # another item sells under this SKU now: its own push sets the quantity
            out.dropped += 1
            done.append(row["id"])
            continue
        if not sku:
            out.dropped += 1
            done.append(row["id"])
            last = cs["confirmed_quantity"] if cs["confirmed_quantity"] is not None else cs["observed_quantity"]
            problems.append(
                Problem(
                    kind="stock_drift",
                    key=kinds.key("stock_drift", channel.key, f"item-{pair[1]}"),
                    severity="error",
                    channel_id=channel.pk,
                    connection_id=channel.connection_id,
                    title=f"Item {pair[1]} is no longer sold on {channel.key} but the storefront may still show {last}",
                    message="The pair stopped being pushable (mapping removed, channel inactive or without a rule) and the "
                    "storefront SKU it was last confirmed under is unknown, so the hub cannot set it to 0. "
                    "Set the storefront quantity to 0 by hand.",
                    context={
                        "channel": channel.key,
                        "item_id": pair[1],
                        "last_confirmed_quantity": last,
                        "action": "repush_stock",
                    },
                )
            )
            continue
        # ledger 0 + captured: a self-decrementing storefront ends at 0 less its own orders not captured yet
        per_conn[channel.connection_id].append(
            (
                pair,
                row,
                InventoryTarget(
                    sku=sku,
                    channel_ref=channel.external_id,
                    quantity=0,
                    known_version=cs["storefront_version"],
                    known_ref=cs["storefront_ref"] or "",
                    ledger=(captured or {}).get((pair[0], sku), 0),
                ),
                WITHDRAW,
            )
        )


def _fill_held(per_conn: dict, channels: dict) -> None:
    """For storefronts that keep their own reservation per order (``Storefront.reserves_own_orders``): how many
    units of each target's SKU the hub's open orders from that channel hold (placed there, not cancelled, not yet
    shipped there) → ``InventoryTarget.held``. One query, only when such a storefront is in the batch."""
    from connectors.registry import get_connector
    from integration_hub.orders.models import OrderLine, OrderState

    def reserves(conn) -> bool:
        try:
            return bool(getattr(get_connector(conn), "reserves_own_orders", False))
        except errors.ConnectorError:  # e.g. misconfigured: recorded by the connection's own push below
            return False

    own = {cid for cid, work in per_conn.items() if reserves(channels[work[0][0][0]].connection)}
    if not own:
        return
    wanted = [(pair[0], target) for cid in own for pair, _, target, role in per_conn[cid] if role == SET]
    if not wanted:
        return
    held = {
        (c, s): q
        for c, s, q in OrderLine.objects.filter(
            order__channel_id__in={c for c, _ in wanted},
            storefront_sku__in={t.sku for _, t in wanted},
            parent__isnull=True,
        )
        .exclude(order__state__in=[OrderState.CANCELLED, OrderState.STOREFRONT_NOTIFIED])
        .values("order__channel_id", "storefront_sku")
        .annotate(q=Sum("quantity"))
        .values_list("order__channel_id", "storefront_sku", "q")
    }
    for channel_id, target in wanted:
        target.held = int(held.get((channel_id, target.sku)) or 0)


def _repeated_failure(conn: Connection, err: Exception, attempts: int, rows_waiting: int) -> Problem:
    """The exception record for a connection whose pushes keep failing after the outbox's retries.
    A version conflict (409) that outlasted the connector's re-reads is a ``sync_timeout`` too (the kinds
    are fixed) but says so in its title and context: someone else keeps writing those entries."""
    if isinstance(err, errors.RateLimitedError):
        kind, what, reason = "rate_limited", "rate limited", "rate_limited"
    elif isinstance(err, errors.ConflictError):
        kind, what, reason = "sync_timeout", "version conflict (409) after every re-read", "conflict"
    elif kind_for_error(err) == "auth_failure":  # one record on the connection, for whoever holds its credentials
        kind, what, reason = "auth_failure", "credentials refused", "auth"
    else:
        kind, what, reason = "sync_timeout", type(err).__name__, "error"
    return Problem(
        kind=kind,
        key=kinds.key(kind, conn.name) if kind == "auth_failure" else kinds.key(kind, conn.name, OPERATION),
        severity="error",
        title=f"Stock pushes to {conn.name} keep failing ({what})",
        message=str(err)[:2000],
        connection_id=conn.pk,
        context={
            "operation": OPERATION,
            "reason": reason,
            "error": type(err).__name__,
            "attempts": attempts,
            "rows_waiting": rows_waiting,
            "retry_after": getattr(err, "retry_after", None),
            "last_error": str(err)[:500],
            "action": "retry_push",
        },
    )


def push_batch(
    batch_size: int = BATCH_SIZE,
    max_priority: int | None = None,
    lease_seconds: int = LEASE_SECONDS,
    connection_id: int | None = None,
    *,
    channel_ids=None,
    full: bool = False,
) -> BatchResult:
    """``full``: the batch is a full load (:mod:`.full_load`) — sent with ``Storefront.push_full``, not ``set_stock``."""
    from connectors.registry import get_connector

    out = BatchResult()
    token, lease, rows = claim(batch_size, max_priority, lease_seconds, connection_id, channel_ids=channel_ids)
    if not rows:
        return out
    out.claimed = len(rows)
    by_pair = {(r["channel_id"], r["item_id"]): r for r in rows}
    snapshot = timezone.now()  # the figures below hold as of this instant (InventoryTarget.as_of)
    channel_ids = {c for c, _ in by_pair}
    item_ids = {i for _, i in by_pair}
    captured = ats.captured_units(channel_ids, item_ids)  # before ATS: a capture in between errs low, not high
    targets_ats = ats.for_pairs(by_pair)
    confirmed = {
        (cs["channel_id"], cs["item_id"]): cs
        for cs in ChannelStock.objects.filter(channel_id__in=channel_ids, item_id__in=item_ids).values(
            "channel_id",
            "item_id",
            "storefront_sku",
            "confirmed_quantity",
            "observed_quantity",
            "storefront_version",
            "storefront_ref",
            "attempted_at",
        )
    }
    channels = Channel.objects.select_related("connection").in_bulk(channel_ids)

    done: list[int] = []  # rows finished (pushed, skipped, dropped): delete if untouched since the claim
    failures: dict[int, tuple[str, float | None]] = {}  # row id -> (error text, retry_after)
    per_conn: dict[int, list] = defaultdict(list)  # connection id -> [(pair, row, target, role)]
    withdraw: list[tuple] = []  # (pair, row, channel, cs, role): a storefront SKU that must be zeroed
    problems: list[Problem] = []
    skip_clears: list[str] = []
    for pair, row in by_pair.items():
        a = targets_ats.get(pair)
        channel = channels.get(pair[0])
        cs = confirmed.get(pair)
        if a is None or channel is None or not channel.active:
            # No longer pushable. If the storefront was last told a positive quantity it would keep selling
            # it: withdraw it (push 0 to the SKU it was confirmed under) before letting the pair go.
            if (
                channel is not None
                and cs
                and ((cs["confirmed_quantity"] or 0) > 0 or (cs["observed_quantity"] or 0) > 0)
            ):
                withdraw.append((pair, row, channel, cs, WITHDRAW))
            else:
                out.dropped += 1
                done.append(row["id"])
            continue
        # skip only on a confirmation observed after the last attempt: an attempt whose outcome is unknown
        # (worker killed mid-batch, answer lost) may have left another figure in the storefront
        if (
            cs
            and cs["storefront_sku"] == a.storefront_sku
            and cs["confirmed_quantity"] == a.quantity
            and cs["attempted_at"] is None
        ):
            out.skipped += 1
            done.append(row["id"])
            # the storefront already confirmed this SKU at this quantity: the mapping works
            skip_clears.extend(
                [
                    kinds.key("unknown_sku", channel.key, a.storefront_sku),
                    kinds.key("sku_mismatch", channel.key, a.storefront_sku),
                ]
            )
            continue
        target = InventoryTarget(
            sku=a.storefront_sku,
            channel_ref=channel.external_id,
            quantity=a.quantity,
            known_version=cs["storefront_version"] if cs and cs["storefront_sku"] == a.storefront_sku else None,
            known_ref=(cs["storefront_ref"] or "") if cs and cs["storefront_sku"] == a.storefront_sku else "",
            as_of=snapshot,
            ledger=a.quantity + captured.get((pair[0], a.storefront_sku), 0),
        )
        per_conn[channel.connection_id].append((pair, row, target, SET))
        if (
            cs
            and cs["storefront_sku"] != a.storefront_sku
            and ((cs["confirmed_quantity"] or 0) > 0 or (cs["observed_quantity"] or 0) > 0)
        ):
            # the mapping now points at another storefront SKU: the old one still shows the old quantity
            withdraw.append((pair, row, channel, cs, RENAMED))
    if withdraw:
        _plan_withdrawals(withdraw, per_conn, done, problems, out, captured)

    now = timezone.now()
    # write-ahead: record every quantity about to be sent before it leaves (committed on its own), so a
    # worker killed after the write landed leaves "outcome unknown", never a stale "confirmed"
    upsert(
        ChannelStock,
        ["channel_id", "item_id", "storefront_sku", "storefront_ref", "attempted_quantity", "attempted_at"],
        ["channel_id", "item_id"],
        ["attempted_quantity", "attempted_at"],
        [
            (pair[0], pair[1], target.sku, "", target.quantity, now)
            for work in per_conn.values()
            for pair, _row, target, role in work
            if role == SET
        ],
    )
    confirmations: list[tuple] = []
    clear_keys: list[str] = list(skip_clears)
    conn_status: dict[int, tuple[bool, BaseException | str]] = {}

    def send(conn: Connection, targets: list[InventoryTarget]):
        """(results, whole-call error). Pure HTTP — no database access, so it can run in a thread."""
        if not conn.enabled:
            return [], errors.PermanentError(f"connection {conn.name} is disabled")
        try:
            connector = get_connector(conn)
            return (connector.push_full(targets) if full else connector.set_stock(targets)), None
        except errors.ConnectorError as exc:
            return [], exc
        except Exception as exc:  # a connector bug must not lose the rows: back off and record it
            log.exception("set_stock on %s failed unexpectedly", conn.name)
            return [], exc

    _fill_held(per_conn, channels)
    calls = {conn_id: (channels[work[0][0][0]].connection, [w[2] for w in work]) for conn_id, work in per_conn.items()}
    held = {"ids": [r["id"] for r in rows], "lease": lease}

    def renew(new_lease):  # only rows still under the lease this worker set (released ones stay released)
        if PendingPush.objects.filter(id__in=held["ids"], claimed_until=held["lease"]).update(claimed_until=new_lease):
            held["lease"] = new_lease

    with LeaseKeeper(renew, lease_seconds, "stock push lease"):  # renewed while the storefront calls are in flight
        if len(calls) > 1:  # storefronts are independent: a slow or rate-limited one must not hold up the others
            with ThreadPoolExecutor(max_workers=min(8, len(calls)), thread_name_prefix="set-stock") as pool:
                futures = {conn_id: pool.submit(send, conn, targets) for conn_id, (conn, targets) in calls.items()}
                answers = {conn_id: f.result() for conn_id, f in futures.items()}
        else:
            answers = {conn_id: send(conn, targets) for conn_id, (conn, targets) in calls.items()}
    lease = held["lease"]

    for conn_id, work in per_conn.items():
        conn, targets = calls[conn_id]
        out.connections[conn.name] = out.connections.get(conn.name, 0) + len(targets)
        results, whole_error = answers[conn_id]
        by_target = {(r.sku, r.channel_ref): r for r in results or []}
        retry_errors: list[tuple[Exception, dict]] = []
        any_ok = False
        # a row may carry two targets (its new SKU and the withdrawal of its old one): it is done only
        # when every target of it is confirmed, and only then is its confirmation recorded
        row_ok: dict[int, bool] = {}
        row_confirm: dict[int, tuple] = {}
        row_error: dict[int, Exception] = {}
        row_of: dict[int, dict] = {}
        for pair, row, target, role in work:
            channel = channels[pair[0]]
            row_of[row["id"]] = row
            res = None if whole_error else by_target.get((target.sku, target.channel_ref))
            withdrawn_missing = (
                role != SET and res is not None and not res.ok and isinstance(res.error, errors.NotFoundError)
            )  # nothing there to oversell
            if res is not None and (res.ok or withdrawn_missing):
                any_ok = any_ok or res.ok
                row_ok.setdefault(row["id"], True)
                if role == SET:
                    row_confirm[row["id"]] = (
                        pair[0],
                        pair[1],
                        target.sku,
                        res.quantity,
                        res.version,
                        (res.ref or target.known_ref or "")[:200],
                        now,
                        None,
                        None,
                    )
                    clear_keys.extend(
                        [
                            kinds.key("unknown_sku", channel.key, target.sku),
                            kinds.key("sku_mismatch", channel.key, target.sku),  # the mapping works
                            kinds.key("bad_payload", conn.name, OPERATION, f"{channel.key}/{target.sku}"),
                        ]
                    )
                elif role == WITHDRAW:
                    row_confirm[row["id"]] = (
                        pair[0],
                        pair[1],
                        target.sku,
                        0,
                        res.version if res.ok else None,
                        ((res.ref if res.ok else "") or target.known_ref or "")[:200],
                        now,
                        None,
                        None,
                    )
                continue
            row_ok[row["id"]] = False
            err = (
                whole_error
                or (res.error if res is not None and res.error else None)
                or errors.RetryableError(f"{conn.name} returned no result for {target.sku} on {target.channel_ref}")
            )
            row_error.setdefault(row["id"], err)
            if isinstance(err, errors.ImportPending) and not whole_error:
                continue  # accepted, not failed: no attempt counted, no error on the connection (import_outcomes settles it)
            if isinstance(err, errors.NotFoundError) and not whole_error and role == SET:
                problems.append(
                    Problem(
                        kind="unknown_sku",
                        key=kinds.key("unknown_sku", channel.key, target.sku),
                        title=f"{conn.name} has no SKU {target.sku} on {channel.key}",
                        message=f"Stock push refused: {err}",
                        connection_id=conn.pk,
                        channel_id=channel.pk,
                        sku=target.sku,
                        context={
                            "storefront_sku": target.sku,
                            "channel": channel.key,
                            "quantity": target.quantity,
                            "last_error": str(err)[:500],
                            "action": "map_sku",
                        },
                    )
                )
            elif isinstance(err, errors.BadDataError) and not whole_error:
                problems.append(
                    Problem(
                        kind="bad_payload",
                        key=kinds.key("bad_payload", conn.name, OPERATION, f"{channel.key}/{target.sku}"),
                        title=f"{conn.name} rejected stock for {target.sku} on {channel.key}",
                        message=str(err)[:2000],
                        connection_id=conn.pk,
                        channel_id=channel.pk,
                        sku=target.sku,
                        context={
                            "storefront_sku": target.sku,
                            "channel": channel.key,
                            "quantity": target.quantity,
                            "last_error": str(err)[:500],
                            "action": "repush_stock",
                        },
                    )
                )
            elif not (isinstance(err, (errors.NotFoundError, errors.BadDataError)) and not whole_error):
                retry_errors.append((err, row))
        for row_id, ok in row_ok.items():
            if ok:
                out.pushed += 1
                done.append(row_id)
                if row_id in row_confirm:
                    confirmations.append(row_confirm[row_id])
            else:
                err = row_error[row_id]
                pending = isinstance(err, errors.ImportPending) and not whole_error
                if pending:
                    out.pending += 1
                else:
                    out.failed += 1
                failures[row_id] = (f"{type(err).__name__}: {err}"[:2000], getattr(err, "retry_after", None), pending)
        if any_ok:
            clear_keys += [kinds.key(k, conn.name, OPERATION) for k in ("rate_limited", "sync_timeout")] + [
                kinds.key("auth_failure", conn.name)
            ]
        if retry_errors:
            worst = max(row["attempts"] + 1 for _, row in retry_errors)
            err = retry_errors[0][0]
            # a misconfigured connection (ConfigurationError) is reported at once: no retry can fix it
            if (worst >= FAILURES_BEFORE_EXCEPTION or isinstance(err, errors.ConfigurationError)) and not any_ok:
                problems.append(_repeated_failure(conn, err, worst, len({r["id"] for _, r in retry_errors})))
        conn_status[conn.pk] = (
            any_ok or not (whole_error or retry_errors),
            whole_error or (retry_errors[0][0] if retry_errors else ""),
        )

    # failed rows, grouped by error (a whole-call failure is one group): one UPDATE per distinct error
    groups: dict[tuple[str, float | None, bool], list[dict]] = defaultdict(list)
    for row in rows:
        if row["id"] in failures:
            groups[failures[row["id"]]].append(row)
    with transaction.atomic():
        upsert(
            ChannelStock,
            [
                "channel_id",
                "item_id",
                "storefront_sku",
                "confirmed_quantity",
                "storefront_version",
                "storefront_ref",
                "confirmed_at",
                "attempted_quantity",
                "attempted_at",
            ],
            ["channel_id", "item_id"],
            [
                "storefront_sku",
                "confirmed_quantity",
                "storefront_version",
                "storefront_ref",
                "confirmed_at",
                "attempted_quantity",
                "attempted_at",
            ],
            confirmations,
        )
        for (text, retry_after, pending), group in groups.items():
            if pending:  # deferred until the import's outcome is due; the row's attempts are not a failure count
                PendingPush.objects.filter(id__in=[r["id"] for r in group]).update(
                    last_error=text,
                    claimed_until=None,
                    claim_token="",
                    not_before=now + timedelta(seconds=retry_after or BACKOFF_BASE_SECONDS),
                )
                continue
            attempts = max(r["attempts"] for r in group) + 1
            PendingPush.objects.filter(id__in=[r["id"] for r in group]).update(
                attempts=F("attempts") + 1,
                last_error=text,
                claimed_until=None,
                claim_token="",
                not_before=now + timedelta(seconds=backoff_seconds(attempts, retry_after)),
            )
        if done:
            finished = PendingPush.objects.filter(id__in=done, claim_token=token)
            deleted = finished._raw_delete(finished.db)  # no signals/cascades on the outbox: one DELETE
            out.requeued = len(done) - deleted
        # rows changed mid-push (token cleared by enqueue): hand them back for another pass now
        PendingPush.objects.filter(id__in=[r["id"] for r in rows], claimed_until=lease).update(
            claimed_until=None, claim_token=""
        )
        for conn_pk, (ok, err) in conn_status.items():
            if ok:
                Connection.objects.filter(pk=conn_pk).update(last_success_at=now)
            else:  # the summary for ops; what the remote answered for admins only
                Connection.record_error(conn_pk, err, at=now)
    if problems:
        raise_many(problems)
    if clear_keys:
        clear(clear_keys, reason="stock push succeeded")
    return out


LINGER_POLL_SECONDS = 0.05  # how often a lingering drain looks for rows committed after its last claim


def drain(
    max_priority: int | None = None,
    batch_size: int = BATCH_SIZE,
    time_budget: float = 50.0,
    lease_seconds: int = LEASE_SECONDS,
    connection_id: int | None = None,
    *,
    linger: float = 0.0,
    poll: float = LINGER_POLL_SECONDS,
    sleep=time.sleep,
) -> tuple[BatchResult, bool]:
    """Push batches until nothing is claimable or ``time_budget`` seconds are used.
    Returns (totals, more) — ``more`` is True when it stopped on the budget with work left.

    ``linger``: once a drain that claimed rows finds nothing more to claim, it keeps looking (one cheap
    ``EXISTS`` every ``poll`` seconds) for rows committed since, for up to ``linger`` seconds, and drain them
    at once. While changes keep arriving the drain that is already running takes them within ``poll``
    seconds instead of each waiting for a kick, a Celery hop and a new drain (issue 19, item 3); a drain that
    found nothing at all returns at once. Lingering counts against ``time_budget``."""
    total = BatchResult()
    started = time.monotonic()
    while True:
        res = push_batch(batch_size, max_priority, lease_seconds, connection_id)
        total.add(res)
        out_of_time = time.monotonic() - started >= time_budget
        if res.claimed == 0:
            if total.claimed == 0 or out_of_time:
                return total, False
            if not _rows_arrive(linger, poll, max_priority, connection_id, started + time_budget, sleep):
                return total, False
            continue
        if out_of_time:
            return total, has_claimable(max_priority, connection_id)


def _rows_arrive(linger: float, poll: float, max_priority, connection_id, budget_end: float, sleep) -> bool:
    """True as soon as rows are claimable again; False after ``linger`` seconds of polls (or the budget) without."""
    poll = max(0.001, poll)
    for _ in range(math.ceil(max(0.0, linger) / poll)):
        if time.monotonic() >= budget_end:
            return False
        sleep(poll)
        if has_claimable(max_priority, connection_id):
            return True
    return False


def has_claimable(max_priority: int | None = None, connection_id: int | None = None) -> bool:
    return _claimable(timezone.now(), max_priority, connection_id).exists()


def claimable_connections(max_priority: int | None = None) -> list[int]:
    """Storefront connections with rows ready to push now (one query): one drain each."""
    return sorted(
        set(
            Channel.objects.filter(id__in=_claimable(timezone.now(), max_priority).values("channel_id")).values_list(
                "connection_id", flat=True
            )
        )
    )


def release_expired_claims() -> int:
    """Claims whose lease ran out (worker killed mid-push) become claimable again."""
    return PendingPush.objects.filter(claimed_until__lt=timezone.now()).update(claimed_until=None, claim_token="")


def claimable_counts() -> dict[str, int]:
    """{"order": n, "other": m} rows ready to push now (used by the sweep)."""
    now = timezone.now()
    qs = _claimable(now, None)
    order = qs.filter(priority__lte=PendingPush.Priority.ORDER).count()
    return {"order": order, "other": qs.filter(priority__gt=PendingPush.Priority.ORDER).count()}
