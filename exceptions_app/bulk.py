"""Set actions on the exception queue: status, assignee, snooze and retry on any number of records — the rows
ticked on a page, every record under a ticked parent, or everything a search matches. Set-based and audited:
per 1,000 records one read (the audit's before), one UPDATE per target value, one read after, one audit INSERT.

Retry asks the flow that owns each record to try again, in bulk: orders (stuck, failed, held, refused, not
shown shipped) are revalidated and made due for the order worker; stock problems re-queue the pushes of the
mapped items; a connection whose pushes keep failing has its back-off lifted. The records are then
acknowledged (who asked, what was done) and resolve when the retried work succeeds — the owning flow clears
their keys. Records nothing can retry (refused credentials, unmapped SKUs) are counted and left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration_hub.core import audit

from . import kinds
from .kinds import Retry
from .models import ACTIVE_STATUSES, ExceptionRecord, Status

CHUNK = 1000
ACTIONS = {
    "acknowledge": "acknowledged",
    "resolve": "resolved",
    "ignore": "ignored",
    "reopen": "reopened",
    "assign_me": "assigned to you",
    "assign": "assigned",
    "unassign": "unassigned",
    "snooze": "snoozed",
    "snooze_sync": "hidden until a sync resolves them",
    "unsnooze": "un-snoozed",
    "retry": "retried",
}
VERBS = {
    "acknowledge": "acknowledge",
    "resolve": "resolve",
    "ignore": "ignore",
    "reopen": "reopen",
    "assign_me": "assign to me",
    "assign": "assign",
    "unassign": "unassign",
    "snooze": "snooze",
    "snooze_sync": "hide until a sync",
    "unsnooze": "un-snooze",
    "retry": "retry",
}
SNOOZE_CHOICES = [("1h", "1 hour"), ("4h", "4 hours"), ("24h", "24 hours"), ("7d", "7 days")]
_SNOOZE = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
ORDER_ACTIONS = ("retry_order", "resend_dispatch", "check_order")
PUSH_ACTIONS = ("repush_stock",)


class BulkError(ValueError):
    """The action cannot run as asked (message for the person)."""


@dataclass
class Params:
    reason: str = ""
    assignee_id: int | None = None
    snooze_until: datetime | None = None


def clean(action: str, data, user) -> Params:
    """Check an action's parameters before anything is counted or changed."""
    if action not in ACTIONS:
        raise BulkError("Choose an action.")
    reason = (data.get("reason") or "").strip()[:1000]
    p = Params(reason=reason)
    if action == "ignore" and not reason:
        raise BulkError("Say why the selected exceptions can be ignored.")
    if action == "assign":
        raw = str(data.get("assignee") or "")
        if not raw.isdigit() or not assignable().filter(pk=int(raw)).exists():
            raise BulkError("Choose whom to assign them to (a member of ops or admin).")
        p.assignee_id = int(raw)
    if action == "assign_me":
        if not user.has_perm("exceptions_app.change_exceptionrecord"):
            raise BulkError("Your role cannot own exceptions.")
        p.assignee_id = user.pk
    if action == "snooze":
        p.snooze_until = snooze_until(data.get("snooze") or "", data.get("snooze_until") or "")
    return p


def snooze_until(choice: str, until: str = "", now=None) -> datetime:
    """1h / 4h / 24h / 7d from now, or a date-time typed as YYYY-MM-DD HH:MM (UTC), which must be in the future."""
    now = now or timezone.now()
    if choice in _SNOOZE:
        return now + _SNOOZE[choice]
    if choice == "until" or until:
        text = (until or "").strip().replace("T", " ")
        try:
            when = datetime.strptime(text[:16], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        except ValueError:
            raise BulkError("Snooze until: enter a date and time as YYYY-MM-DD HH:MM (UTC).") from None
        if when <= now:
            raise BulkError("Snooze until: choose a time in the future.")
        return when
    raise BulkError("Choose how long to snooze them for.")


def assignable():
    """Users who can own exceptions: members of ops or admin, and superusers."""
    from django.contrib.auth import get_user_model

    from integration_hub.core.roles import ADMIN, OPS

    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[OPS, ADMIN]) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


@dataclass
class Outcome:
    changed: int = 0
    orders: int = 0
    invalid: int = 0
    pushes: int = 0
    lifted: int = 0
    skipped: list = field(default_factory=list)  # (record id, why)

    def add(self, other: "Outcome") -> None:
        self.changed += other.changed
        self.orders += other.orders
        self.invalid += other.invalid
        self.pushes += other.pushes
        self.lifted += other.lifted
        self.skipped += other.skipped

    def summary(self, action: str) -> str:
        text = f"{self.changed} exception(s) {ACTIONS.get(action, action)}"
        if action == "retry":
            text += (
                f": {self.orders} order(s) due for resend"
                + (
                    f" ({self.invalid} still invalid after revalidation: the reasons are on each order)"
                    if self.invalid
                    else ""
                )
                + f", {self.pushes} stock push(es) queued, "
                f"{self.lifted} failing push(es) retried now; they resolve when the retried work succeeds"
            )
        if self.skipped:
            reasons = sorted({why for _, why in self.skipped})
            text += f". {len(self.skipped)} left as they are ({'; '.join(reasons)[:300]})"
        return text + "."


def run(ids, action: str, params: Params, user=None, progress=None) -> Outcome:
    """Apply ``action`` to the records ``ids`` (chunked). ``progress``: a monitoring tracker to advance."""
    ids = sorted(set(ids))
    out = Outcome()
    actor = user if getattr(user, "is_authenticated", False) else None
    with audit.acting_as(actor, audit.current_source() if audit.current_user() is not None else "console"):
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            with transaction.atomic():
                out.add(_chunk(chunk, action, params, actor))
            if progress is not None:
                progress.advance(len(chunk))
    return out


def _now():
    return timezone.now()


def _chunk(ids: list[int], action: str, params: Params, actor) -> Outcome:
    records = list(ExceptionRecord.objects.filter(pk__in=ids))
    out = Outcome()
    who = getattr(actor, "username", "") or "system"
    now = _now()
    status_fields = dict(status_changed_at=now, status_changed_by=actor)
    if action == "acknowledge":
        eligible, values = (
            [r for r in records if r.status == Status.OPEN],
            dict(
                status=Status.ACKNOWLEDGED,
                status_reason=params.reason or f"acknowledged in bulk by {who}",
                **status_fields,
            ),
        )
    elif action == "resolve":
        eligible, values = (
            [r for r in records if r.status != Status.RESOLVED],
            dict(
                status=Status.RESOLVED,
                status_reason=params.reason or f"resolved in bulk by {who}",
                snoozed_until=None,
                snooze_until_sync=False,
                **status_fields,
            ),
        )
    elif action == "ignore":
        eligible, values = (
            [r for r in records if r.status != Status.IGNORED],
            dict(status=Status.IGNORED, status_reason=params.reason, **status_fields),
        )
    elif action == "reopen":
        eligible, values = (
            [r for r in records if not r.is_active],
            dict(status=Status.OPEN, status_reason=params.reason or f"reopened by {who}", **status_fields),
        )
    elif action in ("assign", "assign_me"):
        eligible, values = (
            [r for r in records if r.assignee_id != params.assignee_id],
            dict(assignee_id=params.assignee_id),
        )
    elif action == "unassign":
        eligible, values = [r for r in records if r.assignee_id is not None], dict(assignee_id=None)
    elif action == "snooze":
        eligible, values = (
            [r for r in records if r.is_active],
            dict(snoozed_until=params.snooze_until, snooze_until_sync=False),
        )
    elif action == "snooze_sync":
        eligible, values = [r for r in records if r.is_active], dict(snooze_until_sync=True, snoozed_until=None)
    elif action == "unsnooze":
        eligible, values = (
            [r for r in records if r.snooze_until_sync or r.snoozed_until],
            dict(snoozed_until=None, snooze_until_sync=False),
        )
    elif action == "retry":
        eligible, out = _retry(records, actor)
        values = dict(
            status=Status.ACKNOWLEDGED,
            status_reason=f"retry requested by {who}; resolves when the retried work succeeds",
            **status_fields,
        )
    else:
        raise BulkError(f"unknown action {action!r}")
    skipped_ids = {pk for pk, _ in out.skipped}
    if action in ("snooze", "snooze_sync"):
        out.skipped += [(r.pk, "not open") for r in records if not r.is_active]
    eligible = [r for r in eligible if r.pk not in skipped_ids]
    if not eligible:
        return out
    befores = {r.pk: audit.snapshot(r) for r in eligible}
    ExceptionRecord.objects.filter(pk__in=list(befores)).update(**values)
    fresh = list(ExceptionRecord.objects.filter(pk__in=list(befores)))
    audit.record_many(fresh, "update", user=actor, befores=befores)
    out.changed += len(fresh)
    return out


# --- retry --------------------------------------------------------------------------------------------------
def _retry_of(r: ExceptionRecord) -> str:
    return kinds.spec(r.kind).retry if r.kind in kinds.SPECS else Retry.CONTEXT


def _order_record(r: ExceptionRecord) -> bool:
    """Retried as an order: its kind's (``Retry.ORDER``), or its context names an order — unless it is a SKU
    problem (those are fixed by mapping the SKU)."""
    ctx = r.context or {}
    is_sku = r.kind in kinds.SPECS and kinds.spec(r.kind).subject == "sku"
    return _retry_of(r) == Retry.ORDER or (
        (ctx.get("action") in ORDER_ACTIONS or str(ctx.get("order_id", "")).isdigit()) and not is_sku
    )


def _retry(records: list[ExceptionRecord], actor) -> tuple[list[ExceptionRecord], Outcome]:
    """Hand each record's work back to its flow, set-based. Returns (records acted on, outcome)."""
    out = Outcome()
    acted: list[ExceptionRecord] = []
    order_recs, push_recs, conn_recs = [], [], []
    for r in records:
        ctx = r.context or {}
        if not r.is_active:
            out.skipped.append((r.pk, "not open"))
        elif _retry_of(r) == Retry.NEVER:
            out.skipped.append((r.pk, "refused credentials need renewing by an admin"))
        elif _order_record(r):
            order_recs.append(r)
        elif _retry_of(r) == Retry.PUSH or ctx.get("action") in PUSH_ACTIONS or (r.sku and r.channel_id):
            push_recs.append(r)
        elif r.connection_id and (ctx.get("action") == "retry_push" or _retry_of(r) == Retry.CONNECTION):
            conn_recs.append(r)
        else:
            out.skipped.append((r.pk, "nothing to retry: the hub retries it on its own schedule"))
    if order_recs:
        from integration_hub.orders.actions import retry_orders

        by_record = _orders_of(order_recs)
        ids = sorted({oid for oids in by_record.values() for oid in oids})
        result = retry_orders(ids, actor=actor)
        out.orders += result.due
        out.invalid += result.held
        for r in order_recs:
            if by_record.get(r.pk):
                acted.append(r)
            else:
                out.skipped.append((r.pk, "the order is not in the hub"))
    if push_recs:
        pairs, missing = _pairs_of(push_recs)
        if pairs:
            from integration_hub.inventory.models import PendingPush
            from integration_hub.inventory.outbox import enqueue_pairs, kick

            out.pushes += enqueue_pairs(
                sorted(set(pairs.values())), priority=PendingPush.Priority.ROUTINE, reason="console retry"
            )
            kick()
        for r in push_recs:
            if r.pk in pairs:
                acted.append(r)
            else:
                out.skipped.append((r.pk, missing.get(r.pk, "the SKU has no active mapping: map it first")))
    if conn_recs:
        from integration_hub.inventory.outbox import lift_backoff
        from integration_hub.inventory.models import PendingPush

        out.lifted += lift_backoff(
            PendingPush.objects.filter(channel__connection_id__in={r.connection_id for r in conn_recs}, attempts__gt=0)
        )
        acted += conn_recs
    return acted, out


def _orders_of(records: list[ExceptionRecord]) -> dict[int, list[int]]:
    """{record id: [order ids]} from the context's order id or the record's order key (one query)."""
    from integration_hub.orders.models import Order

    refs = {r.order_ref for r in records if r.order_ref}
    ids = {int(r.context["order_id"]) for r in records if str((r.context or {}).get("order_id", "")).isdigit()}
    found = list(Order.objects.filter(Q(idempotency_key__in=refs) | Q(pk__in=ids)).values_list("pk", "idempotency_key"))
    by_ref = {k: pk for pk, k in found}
    known = {pk for pk, _ in found}
    out = {}
    for r in records:
        oid = (r.context or {}).get("order_id")
        mine = {int(oid)} & known if str(oid or "").isdigit() else set()
        if r.order_ref in by_ref:
            mine.add(by_ref[r.order_ref])
        out[r.pk] = sorted(mine)
    return out


def _pairs_of(records: list[ExceptionRecord]) -> tuple[dict[int, tuple[int, int]], dict[int, str]]:
    """{record id: (channel id, item id)} of the item each record's storefront SKU maps to on its channel (channel
    mapping first, then the all-channel one; one query), and why the others have none."""
    from integration_hub.catalog.models import SkuMapping

    wanted = [r for r in records if r.sku and r.channel_id]
    missing = {r.pk: "the exception names no SKU and channel" for r in records if not (r.sku and r.channel_id)}
    maps = {}
    for sku, channel_id, item_id in (
        SkuMapping.objects.filter(storefront_sku__in={r.sku for r in wanted}, active=True)
        .filter(Q(channel_id__in={r.channel_id for r in wanted}) | Q(channel__isnull=True))
        .values_list("storefront_sku", "channel_id", "item_id")
    ):
        if channel_id is not None or (sku, None) not in maps:
            maps[(sku, channel_id)] = item_id
    pairs = {}
    for r in wanted:
        item = maps.get((r.sku, r.channel_id)) or maps.get((r.sku, None))
        if item is not None:
            pairs[r.pk] = (r.channel_id, item)
    return pairs, missing


def active_q() -> Q:
    return Q(status__in=ACTIVE_STATUSES)
