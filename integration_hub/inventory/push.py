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
4. one ``Storefront.set_stock`` call per storefront connection, concurrently when a batch spans several
   (no database access inside; the HttpClient rate-limits per
   connection — shared through Redis when configured — and honours Retry-After; the connector
   handles 409 by re-reading the version);
5. ChannelStock upserted in bulk, then only the claimed rows whose ``claim_token`` is still ours are
   deleted: an ``enqueue`` that arrived while we were pushing cleared the token, so that row is
   released and pushed again with the newer figure. Failed rows get ``attempts + 1``, an exponential
   ``not_before`` (at least the server's Retry-After) and ``last_error``; repeated failures raise
   ``rate_limited`` / ``sync_timeout`` exception records, which a later success clears.
"""
from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from django.db import connection as db, transaction
from django.db.models import F, Q
from django.utils import timezone

from connectors import errors
from connectors.base import InventoryTarget
from exceptions_app.services import Problem, clear, make_key, raise_many
from integration_hub.core.models import Channel, Connection

from . import ats
from .models import ChannelStock, PendingPush
from .sql import upsert

log = logging.getLogger(__name__)

BATCH_SIZE = 200
LEASE_SECONDS = 300
FAILURES_BEFORE_EXCEPTION = 3
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0
OPERATION = "set_stock"


@dataclass
class BatchResult:
    claimed: int = 0
    pushed: int = 0  # targets the storefront confirmed
    skipped: int = 0  # ATS already equal to the confirmed quantity
    dropped: int = 0  # no longer pushable (mapping removed, channel inactive / without a rule)
    failed: int = 0
    requeued: int = 0  # changed while being pushed: released for another pass
    connections: dict = field(default_factory=dict)  # connection name -> targets sent

    def add(self, other: "BatchResult") -> None:
        for name in ("claimed", "pushed", "skipped", "dropped", "failed", "requeued"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.connections.items():
            self.connections[k] = self.connections.get(k, 0) + v


def _claimable(now, max_priority: int | None):
    qs = PendingPush.objects.filter(Q(not_before__isnull=True) | Q(not_before__lte=now),
                                    Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    if max_priority is not None:
        qs = qs.filter(priority__lte=max_priority)
    return qs


def claim(batch_size: int = BATCH_SIZE, max_priority: int | None = None, lease_seconds: int = LEASE_SECONDS):
    """Claim up to ``batch_size`` rows. Returns (token, lease_until, rows as dicts)."""
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds)
    token = uuid.uuid4().hex
    with transaction.atomic():
        candidates = _claimable(now, max_priority).order_by("priority", "created_at", "id")
        if db.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("id", flat=True)[:batch_size])
        if not ids:
            return token, lease, []
        _claimable(now, max_priority).filter(id__in=ids).update(claimed_until=lease, claim_token=token)
        rows = list(PendingPush.objects.filter(claim_token=token)
                    .values("id", "channel_id", "item_id", "priority", "attempts", "changes"))
    return token, lease, rows


@contextlib.contextmanager
def connection_lock(conn: Connection):
    """Embedded mode only: one process at a time talks to a storefront connection.

    Without Redis the HttpClient's token bucket lives in process memory, so two prefork worker children
    would each spend the full rate. On one machine (which is what the embedded size is) an exclusive
    ``flock`` per connection in the var dir serialises their ``set_stock`` calls, so the per-process
    bucket is the only one spending; the kernel drops the lock if the holder dies. With ``REDIS_URL``
    set the bucket is shared by every worker on every host and pushes run in parallel, unlocked."""
    from django.conf import settings

    if getattr(settings, "REDIS_URL", "") or fcntl is None:
        yield
        return
    lock_dir = Path(settings.VAR_DIR) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"stock-push-conn-{conn.pk}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** min(20, max(0, attempts - 1))))
    delay = delay * random.uniform(0.5, 1.0)
    if retry_after:
        delay = max(delay, float(retry_after))
    return delay


def push_batch(batch_size: int = BATCH_SIZE, max_priority: int | None = None, lease_seconds: int = LEASE_SECONDS) -> BatchResult:
    from connectors.registry import get_connector

    out = BatchResult()
    token, lease, rows = claim(batch_size, max_priority, lease_seconds)
    if not rows:
        return out
    out.claimed = len(rows)
    by_pair = {(r["channel_id"], r["item_id"]): r for r in rows}
    targets_ats = ats.for_pairs(by_pair)
    channel_ids = {c for c, _ in by_pair}
    item_ids = {i for _, i in by_pair}
    confirmed = {(cs["channel_id"], cs["item_id"]): cs for cs in ChannelStock.objects.filter(
        channel_id__in=channel_ids, item_id__in=item_ids).values(
        "channel_id", "item_id", "storefront_sku", "confirmed_quantity", "storefront_version", "storefront_ref")}
    channels = Channel.objects.select_related("connection").in_bulk(channel_ids)

    done: list[int] = []  # rows finished (pushed, skipped, dropped): delete if untouched since the claim
    failures: dict[int, tuple[str, float | None]] = {}  # row id -> (error text, retry_after)
    per_conn: dict[int, list] = defaultdict(list)
    for pair, row in by_pair.items():
        a = targets_ats.get(pair)
        channel = channels.get(pair[0])
        if a is None or channel is None or not channel.active:
            out.dropped += 1
            done.append(row["id"])
            continue
        cs = confirmed.get(pair)
        if cs and cs["storefront_sku"] == a.storefront_sku and cs["confirmed_quantity"] == a.quantity:
            out.skipped += 1
            done.append(row["id"])
            continue
        target = InventoryTarget(sku=a.storefront_sku, channel_ref=channel.external_id, quantity=a.quantity,
                                 known_version=cs["storefront_version"] if cs and cs["storefront_sku"] == a.storefront_sku else None,
                                 known_ref=(cs["storefront_ref"] or "") if cs and cs["storefront_sku"] == a.storefront_sku else "")
        per_conn[channel.connection_id].append((pair, row, target))

    now = timezone.now()
    confirmations: list[tuple] = []
    problems: list[Problem] = []
    clear_keys: list[str] = []
    conn_status: dict[int, tuple[bool, str]] = {}

    def send(conn: Connection, targets: list[InventoryTarget]):
        """(results, whole-call error). Pure HTTP — no database access, so it can run in a thread."""
        if not conn.enabled:
            return [], errors.PermanentError(f"connection {conn.name} is disabled")
        try:
            with connection_lock(conn):
                return get_connector(conn).set_stock(targets), None
        except errors.ConnectorError as exc:
            return [], exc
        except Exception as exc:  # a connector bug must not lose the rows: back off and record it
            log.exception("set_stock on %s failed unexpectedly", conn.name)
            return [], exc

    calls = {conn_id: (channels[work[0][0][0]].connection, [t for _, _, t in work]) for conn_id, work in per_conn.items()}
    if len(calls) > 1:  # storefronts are independent: a slow or rate-limited one must not hold up the others
        with ThreadPoolExecutor(max_workers=min(8, len(calls)), thread_name_prefix="set-stock") as pool:
            futures = {conn_id: pool.submit(send, conn, targets) for conn_id, (conn, targets) in calls.items()}
            answers = {conn_id: f.result() for conn_id, f in futures.items()}
    else:
        answers = {conn_id: send(conn, targets) for conn_id, (conn, targets) in calls.items()}

    for conn_id, work in per_conn.items():
        conn, targets = calls[conn_id]
        out.connections[conn.name] = out.connections.get(conn.name, 0) + len(targets)
        results, whole_error = answers[conn_id]
        by_target = {(r.sku, r.channel_ref): r for r in results or []}
        retry_errors: list[tuple[Exception, dict]] = []
        any_ok = False
        for pair, row, target in work:
            channel = channels[pair[0]]
            res = None if whole_error else by_target.get((target.sku, target.channel_ref))
            if res is not None and res.ok:
                any_ok = True
                out.pushed += 1
                done.append(row["id"])
                confirmations.append((pair[0], pair[1], target.sku, res.quantity, res.version,
                                      (res.ref or target.known_ref or "")[:200], now))
                clear_keys += [make_key("unknown_sku", channel.key, target.sku),
                               make_key("bad_payload", conn.name, OPERATION, f"{channel.key}/{target.sku}")]
                continue
            out.failed += 1
            err = whole_error or (res.error if res is not None and res.error else None) \
                or errors.RetryableError(f"{conn.name} returned no result for {target.sku} on {target.channel_ref}")
            failures[row["id"]] = (f"{type(err).__name__}: {err}"[:2000], getattr(err, "retry_after", None))
            if isinstance(err, errors.NotFoundError) and not whole_error:
                problems.append(Problem(
                    kind="unknown_sku", key=make_key("unknown_sku", channel.key, target.sku),
                    title=f"{conn.name} has no SKU {target.sku} on {channel.key}",
                    message=f"Stock push refused: {err}", connection_id=conn.pk, channel_id=channel.pk, sku=target.sku,
                    context={"storefront_sku": target.sku, "channel": channel.key, "quantity": target.quantity,
                             "last_error": str(err)[:500], "action": "map_sku"}))
            elif isinstance(err, errors.BadDataError) and not whole_error:
                problems.append(Problem(
                    kind="bad_payload", key=make_key("bad_payload", conn.name, OPERATION, f"{channel.key}/{target.sku}"),
                    title=f"{conn.name} rejected stock for {target.sku} on {channel.key}",
                    message=str(err)[:2000], connection_id=conn.pk, channel_id=channel.pk, sku=target.sku,
                    context={"storefront_sku": target.sku, "channel": channel.key, "quantity": target.quantity,
                             "last_error": str(err)[:500], "action": "repush_stock"}))
            else:
                retry_errors.append((err, row))
        if any_ok:
            clear_keys += [make_key("rate_limited", conn.name, OPERATION), make_key("sync_timeout", conn.name, OPERATION)]
        if retry_errors:
            worst = max(row["attempts"] + 1 for _, row in retry_errors)
            err = retry_errors[0][0]
            if worst >= FAILURES_BEFORE_EXCEPTION and not any_ok:
                kind = "rate_limited" if isinstance(err, errors.RateLimitedError) else "sync_timeout"
                problems.append(Problem(
                    kind=kind, key=make_key(kind, conn.name, OPERATION),
                    title=f"Stock pushes to {conn.name} keep failing ({'rate limited' if kind == 'rate_limited' else type(err).__name__})",
                    message=str(err)[:2000], connection_id=conn.pk, severity="error",
                    context={"operation": OPERATION, "attempts": worst, "rows_waiting": len(retry_errors),
                             "retry_after": getattr(err, "retry_after", None), "last_error": str(err)[:500],
                             "action": "retry_push"}))
        conn_status[conn.pk] = (any_ok or not (whole_error or retry_errors), str(whole_error or (retry_errors[0][0] if retry_errors else ""))[:2000])

    # failed rows, grouped by error (a whole-call failure is one group): one UPDATE per distinct error
    groups: dict[tuple[str, float | None], list[dict]] = defaultdict(list)
    for row in rows:
        if row["id"] in failures:
            groups[failures[row["id"]]].append(row)
    with transaction.atomic():
        upsert(ChannelStock, ["channel_id", "item_id", "storefront_sku", "confirmed_quantity", "storefront_version",
                              "storefront_ref", "confirmed_at"], ["channel_id", "item_id"],
               ["storefront_sku", "confirmed_quantity", "storefront_version", "storefront_ref", "confirmed_at"], confirmations)
        for (text, retry_after), group in groups.items():
            attempts = max(r["attempts"] for r in group) + 1
            PendingPush.objects.filter(id__in=[r["id"] for r in group]).update(
                attempts=F("attempts") + 1, last_error=text, claimed_until=None, claim_token="",
                not_before=now + timedelta(seconds=backoff_seconds(attempts, retry_after)))
        if done:
            finished = PendingPush.objects.filter(id__in=done, claim_token=token)
            deleted = finished._raw_delete(finished.db)  # no signals/cascades on the outbox: one DELETE
            out.requeued = len(done) - deleted
        # rows changed mid-push (token cleared by enqueue): hand them back for another pass now
        PendingPush.objects.filter(id__in=[r["id"] for r in rows], claimed_until=lease).update(claimed_until=None, claim_token="")
        for conn_pk, (ok, text) in conn_status.items():
            if ok:
                Connection.objects.filter(pk=conn_pk).update(last_success_at=now)
            else:
                Connection.objects.filter(pk=conn_pk).update(last_error_at=now, last_error=text)
    if problems:
        raise_many(problems)
    if clear_keys:
        clear(clear_keys, reason="stock push succeeded")
    return out


def drain(max_priority: int | None = None, batch_size: int = BATCH_SIZE, time_budget: float = 50.0,
          lease_seconds: int = LEASE_SECONDS) -> tuple[BatchResult, bool]:
    """Push batches until nothing is claimable or ``time_budget`` seconds are used.
    Returns (totals, more) — ``more`` is True when it stopped on the budget with work left."""
    total = BatchResult()
    started = time.monotonic()
    while True:
        res = push_batch(batch_size, max_priority, lease_seconds)
        total.add(res)
        if res.claimed == 0:
            return total, False
        if time.monotonic() - started >= time_budget:
            return total, _claimable(timezone.now(), max_priority).exists()


def release_expired_claims() -> int:
    """Claims whose lease ran out (worker killed mid-push) become claimable again."""
    return PendingPush.objects.filter(claimed_until__lt=timezone.now()).update(claimed_until=None, claim_token="")


def claimable_counts() -> dict[str, int]:
    """{"order": n, "other": m} rows ready to push now (used by the sweep)."""
    now = timezone.now()
    qs = _claimable(now, None)
    order = qs.filter(priority__lte=PendingPush.Priority.ORDER).count()
    return {"order": order, "other": qs.filter(priority__gt=PendingPush.Priority.ORDER).count()}
