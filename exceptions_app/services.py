"""Raise, merge and resolve exception records.

``raise_exception`` is idempotent per ``dedupe_key``: a repeat bumps ``count`` and ``last_seen``
and refreshes the context; a repeat of a resolved/ignored failure reopens it (ignored stays
ignored: someone decided it does not matter). ``clear`` is what a later success calls.

Dedupe keys are built with :func:`exceptions_app.kinds.key` (``kinds.SPECS`` declares each kind's key parts,
severity, grouping and fix); the fixing code clears the same key. Records also carry ``sku`` / ``order_ref`` /
``channel`` / ``connection`` columns for filtering; context
holds what a person needs to decide (payload excerpt, suggestion, last error) and ``context["action"]``
names the fix the console offers ("map_sku", "retry_order", "resend_dispatch", "repush_stock", ...).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from . import kinds
from .kinds import Grouping
from .models import ACTIVE_STATUSES, ExceptionOccurrence, ExceptionRecord, Kind, Severity, Status

AUTH_STATUSES = (401, 403)


def kind_for_error(exc: BaseException) -> str:
    """The exception kind an external call's error is filed under, so the person who can fix it sees it
    (connectors.errors taxonomy): 429 → ``rate_limited``; refused credentials (401/403, or the token endpoint
    refusing them) → ``auth_failure`` on the connection; the remote refusing our data (400/422, a
    BadDataError) → ``bad_payload`` on the record; timeouts, 5xx and the rest → ``sync_timeout``."""
    from connectors import errors

    if isinstance(exc, errors.RateLimitedError):
        return Kind.RATE_LIMITED
    if isinstance(exc, errors.RetryableError):
        return Kind.SYNC_TIMEOUT
    if isinstance(exc, errors.PermanentError) and getattr(exc, "status", None) in AUTH_STATUSES:
        return Kind.AUTH_FAILURE
    if isinstance(exc, errors.BadDataError):
        return Kind.BAD_PAYLOAD
    return Kind.SYNC_TIMEOUT


def error_key(exc: BaseException, conn_name: str, operation: str) -> tuple[str, str]:
    """(kind, dedupe key) of a connection-level failure of ``operation``: an auth failure is one record per
    connection whatever the operation; the other kinds are per operation."""
    kind = kind_for_error(exc)
    return kind, (kinds.key(kind, conn_name) if kind == Kind.AUTH_FAILURE else kinds.key(kind, conn_name, operation))


def transport_keys(conn_name: str, operation: str) -> list[str]:
    """The connection-level keys a success of ``operation`` on that connection clears."""
    return [kinds.key(k, conn_name, operation) for k in (Kind.RATE_LIMITED, Kind.SYNC_TIMEOUT, Kind.BAD_PAYLOAD)] + [
        kinds.key(Kind.AUTH_FAILURE, conn_name)
    ]


# --- root-cause grouping ----------------------------------------------------------------------------------
# A connection outage files one record per operation (sync_timeout / rate_limited / auth_failure: grouping
# ``connection``) and one per order or SKU the remote refused (bad_payload, stuck_order: ``refusal``): those share
# a root cause when they share the kind, the connection and — for refusals — the error text with its references
# taken out. SKU problems and escalations are each their own fix (``own``: one group per record); dispatch, orphan
# and drift problems group per ``channel`` (each kind's grouping is declared in :mod:`.kinds`). A group is an
# *episode*: a record joins the group of the same fingerprint whose last occurrence is
# within HUB_EXCEPTION_GROUP_WINDOW_MINUTES, else it starts a new one (group_key = fingerprint@start).
_HEXISH = re.compile(r"\b[0-9a-f]{8,}\b|\b[0-9a-f]{8}-[0-9a-f-]{27,}\b")
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def error_signature(text: str, *refs: str) -> str:
    """The error text with what differs per record taken out (the record's SKU / order reference, ids, numbers),
    so the same refusal of many orders reads the same."""
    text = (text or "").lower()
    for ref in sorted({r.lower() for r in refs if r}, key=len, reverse=True):
        text = text.replace(ref, "~")
    text = _HEXISH.sub("#", text)
    text = _DIGITS.sub("#", text)
    return _SPACE.sub(" ", text).strip()[:300]


def group_fingerprint(
    kind: str,
    *,
    connection_id=None,
    channel_id=None,
    title: str = "",
    message: str = "",
    sku: str = "",
    order_ref: str = "",
) -> str:
    """The root cause a record belongs to ("" = its own group). See the block comment above."""
    how = kinds.grouping(kind)
    if how == Grouping.OWN:
        return ""
    if how == Grouping.CHANNEL:
        scope = f"ch{channel_id}" if channel_id else (f"c{connection_id}" if connection_id else "")
        sig = ""
    else:
        scope = f"c{connection_id}" if connection_id else (f"ch{channel_id}" if channel_id else "")
        sig = "" if how == Grouping.CONNECTION else error_signature(message or title, sku, order_ref)
    if not scope:
        return ""
    return f"{kind}:{scope}:{hashlib.sha1(sig.encode()).hexdigest()[:12]}"


def own_group(key: str) -> str:
    return "k:" + hashlib.sha1(key.encode()).hexdigest()[:24]


def _window() -> timedelta:
    return timedelta(minutes=settings.HUB.get("EXCEPTION_GROUP_WINDOW_MINUTES", 60))


def current_groups(fingerprints, now) -> dict[str, str]:
    """{fingerprint: group_key} — the open episode of each fingerprint (one grouped query), or a new one."""
    fps = sorted(set(fingerprints) - {""})
    found: dict[str, str] = {}
    for start in range(0, len(fps), 500):
        found.update(
            ExceptionRecord.objects.filter(fingerprint__in=fps[start : start + 500], last_seen__gte=now - _window())
            .exclude(group_key="")
            .order_by()
            .values("fingerprint")
            .annotate(g=Max("group_key"))
            .values_list("fingerprint", "g")
        )
    return {fp: found.get(fp) or f"{fp}@{now:%Y%m%d%H%M%S%f}" for fp in fps}


def _hour(now):
    return now.replace(minute=0, second=0, microsecond=0)


def record_occurrences(counts: dict[int, int], now=None) -> None:
    """Add ``n`` occurrences at this hour to each record id (one upsert, ``n = n + excluded.n``; PostgreSQL and
    SQLite both speak ON CONFLICT)."""
    if not counts:
        return
    from django.db import connection

    hour = connection.ops.adapt_datetimefield_value(_hour(now or timezone.now()))
    table = connection.ops.quote_name(ExceptionOccurrence._meta.db_table)
    sql = (
        f"INSERT INTO {table} (record_id, hour, n) VALUES (%s, %s, %s) "
        f"ON CONFLICT (record_id, hour) DO UPDATE SET n = {table}.n + excluded.n"
    )
    with connection.cursor() as cur:
        cur.executemany(sql, [(pk, hour, n) for pk, n in sorted(counts.items())])


def prune_occurrences(days: int = 3) -> int:
    """Hourly counts older than the trend needs (the queue shows 24 h)."""
    return ExceptionOccurrence.objects.filter(hour__lt=timezone.now() - timedelta(days=days))._raw_delete(
        ExceptionOccurrence.objects.db
    )


@dataclass
class Problem:
    kind: str
    key: str
    title: str
    message: str = ""
    severity: str = Severity.ERROR
    context: dict = field(default_factory=dict)
    connection_id: int | None = None
    channel_id: int | None = None
    sku: str = ""
    order_ref: str = ""


def raise_exception(
    kind: str,
    key: str,
    title: str,
    *,
    message: str = "",
    severity: str = Severity.ERROR,
    context: dict | None = None,
    connection=None,
    channel=None,
    sku: str = "",
    order_ref: str = "",
) -> ExceptionRecord:
    """Record one failure, merging into the existing row with the same key."""
    if kind not in Kind.values:
        raise ValueError(f"unknown exception kind {kind!r}")
    now = timezone.now()
    values = dict(
        kind=kind,
        severity=severity,
        title=title[:300],
        message=message,
        context=context or {},
        connection_id=getattr(connection, "pk", connection),
        channel_id=getattr(channel, "pk", channel),
        sku=(sku or "")[:100],
        order_ref=(order_ref or "")[:100],
        last_seen=now,
    )
    fp = group_fingerprint(
        kind,
        connection_id=values["connection_id"],
        channel_id=values["channel_id"],
        title=values["title"],
        message=message,
        sku=values["sku"],
        order_ref=values["order_ref"],
    )
    values.update(fingerprint=fp, group_key=current_groups([fp], now)[fp] if fp else own_group(key))
    for _ in range(3):
        try:
            with transaction.atomic():
                rec = ExceptionRecord.objects.select_for_update().filter(dedupe_key=key).first()
                if rec is None:
                    rec = ExceptionRecord.objects.create(dedupe_key=key, first_seen=now, **values)
                    record_occurrences({rec.pk: 1}, now)
                    return rec
                for name, value in values.items():
                    setattr(rec, name, value)
                rec.count = F("count") + 1
                if rec.status == Status.RESOLVED:
                    rec.status, rec.status_changed_at, rec.status_changed_by = Status.OPEN, now, None
                    rec.status_reason = "recurred after resolution"
                    rec.times_reopened = F("times_reopened") + 1
                    rec.snoozed_until, rec.snooze_until_sync = None, False
                rec.save()
                record_occurrences({rec.pk: 1}, now)
                rec.refresh_from_db(fields=["count", "times_reopened"])
                return rec
        except IntegrityError:  # two workers created the same key at once: merge on the next pass
            continue
    raise RuntimeError(f"could not record exception {key}")


def raise_many(problems: Iterable[Problem]) -> int:
    """Bulk version for audits that find thousands of problems: a fixed handful of queries per 1000 keys,
    not 2 per row. The same key several times in one call is one row whose ``count`` grows by that many
    (the last occurrence's text and context win). Safe against another worker creating the same key at
    the same moment: the chunk is retried in a fresh savepoint and the key merges into that row."""
    problems = list(problems)
    repeats = Counter(p.key for p in problems)
    problems = list({p.key: p for p in problems}.values())
    if not problems:
        return 0
    written = 0
    for start in range(0, len(problems), 1000):
        chunk = problems[start : start + 1000]
        for attempt in range(3):
            try:
                written += _raise_chunk(chunk, repeats)
                break
            except IntegrityError:  # a concurrent raise created one of the keys: merge into it on the next pass
                if attempt == 2:
                    raise
    return written


def _raise_chunk(chunk: list[Problem], repeats: Counter) -> int:
    now = timezone.now()
    with transaction.atomic():
        existing = {
            r["dedupe_key"]: r
            for r in ExceptionRecord.objects.select_for_update()
            .filter(dedupe_key__in=[p.key for p in chunk])
            .values("pk", "dedupe_key", "title", "message", "context", "severity", "fingerprint", "group_key")
        }
        fps = {
            p.key: group_fingerprint(
                p.kind,
                connection_id=p.connection_id,
                channel_id=p.channel_id,
                title=p.title[:300],
                message=p.message,
                sku=p.sku[:100],
                order_ref=p.order_ref[:100],
            )
            for p in chunk
        }
        groups = current_groups(fps.values(), now)
        new, changed = [], []
        regroup: dict[tuple[str, str], list[int]] = {}
        for p in chunk:
            rec = existing.get(p.key)
            fp = fps[p.key]
            gk = groups[fp] if fp else own_group(p.key)
            if rec is None:
                new.append(
                    ExceptionRecord(
                        kind=p.kind,
                        severity=p.severity,
                        dedupe_key=p.key,
                        title=p.title[:300],
                        message=p.message,
                        context=p.context,
                        connection_id=p.connection_id,
                        channel_id=p.channel_id,
                        sku=p.sku[:100],
                        order_ref=p.order_ref[:100],
                        count=repeats[p.key],
                        first_seen=now,
                        last_seen=now,
                        fingerprint=fp,
                        group_key=gk,
                    )
                )
                continue
            if (rec["title"], rec["message"], rec["context"], rec["severity"]) != (
                p.title[:300],
                p.message,
                p.context,
                p.severity,
            ):
                changed.append(
                    ExceptionRecord(
                        pk=rec["pk"], title=p.title[:300], message=p.message, context=p.context, severity=p.severity
                    )
                )
            if (rec["fingerprint"], rec["group_key"]) != (fp, gk):
                regroup.setdefault((fp, gk), []).append(rec["pk"])
        ExceptionRecord.objects.bulk_create(new, batch_size=500)
        if new and new[0].pk is None:  # backends without RETURNING ids
            ids = dict(
                ExceptionRecord.objects.filter(dedupe_key__in=[r.dedupe_key for r in new]).values_list(
                    "dedupe_key", "pk"
                )
            )
            for r in new:
                r.pk = ids.get(r.dedupe_key)
        if existing:
            # Repeats are set-based: one UPDATE reopens resolved rows, one per distinct repeat count bumps
            # count/last_seen, one per group moved; only rows whose text or context changed are rewritten
            # individually.
            repeat = ExceptionRecord.objects.filter(pk__in=[r["pk"] for r in existing.values()])
            repeat.filter(status=Status.RESOLVED).update(
                status=Status.OPEN,
                status_changed_at=now,
                status_changed_by=None,
                status_reason="recurred after resolution",
                times_reopened=F("times_reopened") + 1,
                snoozed_until=None,
                snooze_until_sync=False,
            )
            by_n: dict[int, list[int]] = {}
            for key, rec in existing.items():
                by_n.setdefault(repeats[key], []).append(rec["pk"])
            for n, pks in by_n.items():
                ExceptionRecord.objects.filter(pk__in=pks).update(count=F("count") + n, last_seen=now)
            for (fp, gk), pks in regroup.items():
                ExceptionRecord.objects.filter(pk__in=pks).update(fingerprint=fp, group_key=gk)
            _rewrite(changed)
        record_occurrences({**{r["pk"]: repeats[k] for k, r in existing.items()}, **{r.pk: r.count for r in new}}, now)
    return len(new) + len(existing)


def _rewrite(records: list[ExceptionRecord]) -> None:
    """title/message/context/severity of many rows: one executemany (bulk_update's CASE chains are slow)."""
    if not records:
        return
    from django.db import connection

    table = ExceptionRecord._meta.db_table
    ctx_field = ExceptionRecord._meta.get_field("context")
    rows = [(r.title, r.message, ctx_field.get_db_prep_value(r.context, connection), r.severity, r.pk) for r in records]
    with connection.cursor() as cur:
        cur.executemany(f"UPDATE {table} SET title = %s, message = %s, context = %s, severity = %s WHERE id = %s", rows)


def _set_status(qs, status: str, user=None, reason: str = "") -> int:
    return qs.update(status=status, status_changed_at=timezone.now(), status_changed_by=user, status_reason=reason)


def resolve(record: ExceptionRecord | int, user=None, reason: str = "") -> None:
    pk = getattr(record, "pk", record)
    _set_status(ExceptionRecord.objects.filter(pk=pk), Status.RESOLVED, user, reason)


def acknowledge(record: ExceptionRecord | int, user=None, reason: str = "") -> None:
    pk = getattr(record, "pk", record)
    _set_status(ExceptionRecord.objects.filter(pk=pk, status=Status.OPEN), Status.ACKNOWLEDGED, user, reason)


def ignore(record: ExceptionRecord | int, user=None, reason: str = "") -> None:
    if not reason:
        raise ValueError("ignoring an exception needs a reason")
    pk = getattr(record, "pk", record)
    _set_status(ExceptionRecord.objects.filter(pk=pk), Status.IGNORED, user, reason)


def clear(key: str | Iterable[str], reason: str = "cleared by a later success") -> int:
    """Auto-resolve active exceptions whose key a later success has cleared. Returns rows resolved."""
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        return 0
    total = 0
    for start in range(0, len(keys), 1000):
        total += _set_status(
            ExceptionRecord.objects.filter(dedupe_key__in=keys[start : start + 1000], status__in=ACTIVE_STATUSES),
            Status.RESOLVED,
            None,
            reason,
        )
    return total


def clear_prefix(prefix: str, reason: str = "cleared by a later success") -> int:
    return _set_status(
        ExceptionRecord.objects.filter(dedupe_key__startswith=prefix, status__in=ACTIVE_STATUSES),
        Status.RESOLVED,
        None,
        reason,
    )
