"""Outcomes of asynchronous bulk imports (commercetools Import API full loads, issue 12 part 4).

A full load (:mod:`.full_load`) hands a storefront with an asynchronous bulk path its targets through
``Storefront.push_full``; accepted ones come back as ``errors.ImportPending``. The push engine then keeps each row in
the outbox (``last_error`` ``"ImportPending: …"``, deferred by the error's ``retry_after``) and the pair's write-ahead
(``ChannelStock.attempted_quantity`` / ``attempted_at``) stays set: the storefront may or may not hold that figure yet.

:func:`settle` (the Celery task ``inventory.settle_imports``: chained by the full load every
``IMPORT_POLL_SECONDS`` while operations are processing, and on the beat every minute as the safety net — never a
sleep loop in a request) reads the connection's import outcomes once (``connector.import_snapshot``) and, per pending
pair:

* **imported** → the pair's confirmation: ``confirmed_quantity`` = the figure sent, ``confirmed_at``, the write-ahead
  cleared (only if no later attempt replaced it) — the same confirmation the push engine records; the outbox row is
  deleted, or, if the pair changed after the submission, released at once for a delta push;
* **validationFailed / unresolved / rejected / canceled / partiallyImported** → a ``bad_payload`` exception record
  on the pair (same key as the push engine's, so one record per SKU and channel) naming the SKU, the channel and the
  operation's errors / unresolved references; the row stops being pending and is retried by the drain when its
  deferral ends (through the delta path, which reports what it finds itself);
* still **processing** / **unknown** → left as is; past the deferral the drain pushes the row through the delta path.

Queries: one to list the pending pairs (streamed), then per 1,000 settled pairs a fixed handful (update the
confirmations, delete / release the rows), whatever the load's size.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from celery import shared_task
from django.db import transaction
from django.db.models import Exists, F, Min, OuterRef, Q, Subquery
from django.utils import timezone

from connectors import errors
from exceptions_app import kinds
from exceptions_app.services import Problem, clear, raise_many
from integration_hub.core.models import Channel, Connection

from .models import ChannelStock, PendingPush

log = logging.getLogger(__name__)

PENDING_PREFIX = f"{errors.ImportPending.__name__}:"  # how the push engine records a deferred row's error
OPERATION = "set_stock"  # the push engine's operation name (its bad_payload keys)
IMPORT_POLL_SECONDS = 10
CHUNK = 1000


def _pending_rows(connection_id: int):
    """ChannelStock rows of ``connection_id`` whose outbox row waits on an import outcome and is not held by a
    worker (a claimed row is the push engine's: its write-ahead may be a newer delta push whose outcome is unknown)."""
    rows = PendingPush.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=timezone.now()),
        channel_id=OuterRef("channel_id"),
        item_id=OuterRef("item_id"),
        last_error__startswith=PENDING_PREFIX,
    )
    return ChannelStock.objects.filter(channel__connection_id=connection_id, attempted_at__isnull=False).filter(
        Exists(rows)
    )


def pending_connections() -> list[int]:
    """Connections with rows waiting on an import outcome (one query)."""
    channels = PendingPush.objects.filter(last_error__startswith=PENDING_PREFIX).values("channel_id")
    return sorted(set(Channel.objects.filter(id__in=channels).values_list("connection_id", flat=True)))


def settle(connection: Connection) -> dict:
    """Read ``connection``'s import outcomes once and apply them (see the module docstring). Returns counts."""
    from connectors.registry import get_connector

    out = {"imported": 0, "failed": 0, "processing": 0, "unknown": 0, "released": 0}
    qs = _pending_rows(connection.pk)
    since = qs.aggregate(m=Min("attempted_at"))["m"]
    if since is None:
        return out
    connector = get_connector(connection)
    snapshot = connector.import_snapshot(since)
    pp = PendingPush.objects.filter(channel_id=OuterRef("channel_id"), item_id=OuterRef("item_id"))
    rows = qs.annotate(
        pp_id=Subquery(pp.values("id")[:1]), pp_updated=Subquery(pp.values("updated_at")[:1])
    ).values_list(
        "id",
        "channel_id",
        "storefront_sku",
        "attempted_quantity",
        "attempted_at",
        "pp_id",
        "pp_updated",
        "channel__external_id",
        "channel__key",
        "channel__connection__name",
    )
    imported: list[tuple] = []  # (channelstock id, attempted_at, ref, pending id, changed since)
    failed: list[tuple] = []
    for (
        cs_id,
        channel_id,
        sku,
        qty,
        attempted_at,
        pp_id,
        pp_updated,
        channel_ref,
        channel_key,
        conn_name,
    ) in rows.iterator(chunk_size=2000):
        state, op = snapshot.outcome(connector.import_key(sku, channel_ref), attempted_at)
        if state == "imported":
            imported.append(
                (
                    cs_id,
                    attempted_at,
                    f"key={connector.import_key(sku, channel_ref)}"[:200],
                    pp_id,
                    pp_updated is not None and pp_updated > attempted_at,
                )
            )
        elif state == "failed":
            failed.append((pp_id, channel_id, channel_key, sku, qty, connector.import_failure(sku, channel_ref, op)))
        else:
            out[state] += 1
    now = timezone.now()
    for start in range(0, len(imported), CHUNK):
        chunk = imported[start : start + CHUNK]
        with transaction.atomic():
            by_attempt: dict = defaultdict(list)
            for cs_id, attempted_at, ref, *_ in chunk:
                by_attempt[attempted_at].append(cs_id)
            live = set()
            for (
                attempted_at,
                ids,
            ) in by_attempt.items():  # a later attempt replaced the write-ahead: not ours to confirm
                live.update(
                    ChannelStock.objects.filter(id__in=ids, attempted_at=attempted_at).values_list("id", flat=True)
                )
            confirm = [ChannelStock(id=cs_id, storefront_ref=ref) for cs_id, _a, ref, *_ in chunk if cs_id in live]
            if confirm:  # SET uses the row's old values: confirmed = what was sent, then the write-ahead cleared
                ChannelStock.objects.filter(id__in=[c.id for c in confirm]).update(
                    confirmed_quantity=F("attempted_quantity"),
                    storefront_version=None,
                    confirmed_at=now,
                    attempted_quantity=None,
                    attempted_at=None,
                )
                ChannelStock.objects.bulk_update(confirm, ["storefront_ref"], batch_size=500)
            done = [pp_id for cs_id, _a, _r, pp_id, changed in chunk if cs_id in live and not changed]
            again = [pp_id for cs_id, _a, _r, pp_id, changed in chunk if cs_id in live and changed]
            free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)  # not taken by a worker meanwhile
            if done:
                PendingPush.objects.filter(free, id__in=done, last_error__startswith=PENDING_PREFIX)._raw_delete(
                    PendingPush.objects.db
                )
            if again:  # changed since the submission: push the newer figure now (relative, over the imported marker)
                out["released"] += PendingPush.objects.filter(free, id__in=again).update(
                    not_before=None, last_error="", claim_token="", claimed_until=None
                )
            out["imported"] += len(confirm)
    problems = []
    for pp_id, channel_id, channel_key, sku, qty, err in failed:
        problems.append(
            Problem(
                kind="bad_payload",
                key=kinds.key("bad_payload", connection.name, OPERATION, f"{channel_key}/{sku}"),
                title=f"{connection.name} rejected stock for {sku} on {channel_key}",
                message=str(err)[:2000],
                connection_id=connection.pk,
                channel_id=channel_id,
                sku=sku,
                context={
                    "storefront_sku": sku,
                    "channel": channel_key,
                    "quantity": qty,
                    "last_error": str(err)[:500],
                    "operation_errors": err.body if isinstance(err.body, list) else None,
                    "action": "repush_stock",
                },
            )
        )
    for start in range(0, len(failed), CHUNK):
        ids = [f[0] for f in failed[start : start + CHUNK]]
        # no longer pending: the drain retries the row when its deferral ends (the delta path reports what it finds)
        PendingPush.objects.filter(id__in=ids, last_error__startswith=PENDING_PREFIX).update(
            last_error="ImportFailed: the import operation failed; see the exception record"
        )
    out["failed"] = len(failed)
    if problems:
        raise_many(problems)
    if imported:
        Connection.objects.filter(pk=connection.pk).update(last_success_at=now)
        clear(
            [
                kinds.key("bad_payload", connection.name, OPERATION, f"{k}/{s}")
                for k, s in ChannelStock.objects.filter(id__in=[i[0] for i in imported[:10_000]]).values_list(
                    "channel__key", "storefront_sku"
                )
            ],
            reason="import succeeded",
        )
    out["requests"] = snapshot.requests
    return out


@shared_task(name="inventory.settle_imports", ignore_result=True)
def settle_imports(connection_id: int | None = None, chain: bool = False) -> dict:
    """Apply the outcomes of every connection's pending imports (or ``connection_id``'s). ``chain``: while operations
    are still processing, run again in ``IMPORT_POLL_SECONDS`` (the full load starts the chain; the beat job is the
    safety net if a link is lost)."""
    ids = [connection_id] if connection_id else pending_connections()
    totals: dict = {}
    for conn in Connection.objects.filter(pk__in=ids, enabled=True):
        try:
            res = settle(conn)
        except errors.ConnectorError as exc:  # the outcomes could not be read now: the next poll tries again
            log.warning("import outcomes of %s not read: %s", conn.name, exc)
            res = {"error": str(exc)[:200], "processing": 1}
        totals[conn.name] = res
        if chain and res.get("processing"):
            try:
                settle_imports.apply_async(
                    kwargs={"connection_id": conn.pk, "chain": True}, countdown=IMPORT_POLL_SECONDS, retry=False
                )
            except Exception as exc:  # noqa: BLE001 - broker down: the beat job polls
                log.warning("could not chain settle_imports for %s (%s)", conn.name, exc)
    return totals


def dispatch(connection_ids) -> None:
    """After a full load round: start the outcome chain for connections that now have pending imports."""
    pending = set(pending_connections()) & {int(c) for c in connection_ids}
    for conn_id in sorted(pending):
        try:
            settle_imports.apply_async(
                kwargs={"connection_id": conn_id, "chain": True}, countdown=IMPORT_POLL_SECONDS, retry=False
            )
        except Exception as exc:  # noqa: BLE001 - the beat job polls
            log.warning("could not dispatch settle_imports for connection %s (%s)", conn_id, exc)
