"""Dashboard figures, each section one aggregate query whatever the data size (ARCHITECTURE principle 6).
Sections are computed only for roles allowed to see them (no data leaks across roles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from exceptions_app.models import ACTIVE_STATUSES, ExceptionRecord, Kind, Severity
from integration_hub.core.models import (
    WEBHOOK_SYSTEMS,
    Connection,
    webhook_auth_configured,
)
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.models import Order, OrderState

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}
# orders in these states are waiting on someone; how long the oldest has waited is "stuck age"
WAITING_STATES = [
    OrderState.CAPTURED,
    OrderState.VALIDATED,
    OrderState.SENT,
    OrderState.HELD,
    OrderState.FAILED,
    OrderState.ACKNOWLEDGED,
    OrderState.DISPATCHED,
]


@dataclass
class Oldest:
    label: str
    since: object  # datetime or None
    link: str = ""

    @property
    def age(self):
        return timezone.now() - self.since if self.since else None


def pending_pushes() -> dict:
    rows = list(
        PendingPush.objects.order_by()
        .values("priority")
        .annotate(n=Count("id"), oldest=Min("created_at"), retrying=Count("id", filter=Q(attempts__gt=0)))
    )
    labels = dict(PendingPush.Priority.choices)
    by_priority = [
        {"priority": labels.get(r["priority"], r["priority"]), **r} for r in sorted(rows, key=lambda r: r["priority"])
    ]
    return {
        "total": sum(r["n"] for r in rows),
        "retrying": sum(r["retrying"] for r in rows),
        "oldest": min((r["oldest"] for r in rows if r["oldest"]), default=None),
        "by_priority": by_priority,
    }


def connections() -> list[dict]:
    """Each connection with its last success/error and where each of its polled streams stopped (2 queries)."""
    from integration_hub.core.models import SyncCursor

    rows = list(
        Connection.objects.order_by("name").values(
            "id",
            "name",
            "system_type",
            "enabled",
            "last_success_at",
            "last_error_at",
            "last_error",
            "webhook_secret_env",
            "webhook_secret_encrypted",
            "options",
        )
    )
    cursors: dict[int, list] = {}
    for c in SyncCursor.objects.order_by("stream").values("connection_id", "stream", "updated_at"):
        cursors.setdefault(c["connection_id"], []).append(c)
    for r in rows:
        r["cursors"] = cursors.get(r["id"], [])
        # receives webhooks but refuses them all: no secret of its own (there is no shared default)
        # (Clarus: its identification headers in the options instead — it signs nothing)
        r["webhook_secret_missing"] = r["system_type"] in WEBHOOK_SYSTEMS and not webhook_auth_configured(
            r["system_type"], r.pop("options"), r.pop("webhook_secret_env"), r.pop("webhook_secret_encrypted")
        )
    return rows


HEARTBEAT_STALE = timedelta(minutes=3)


def heartbeats() -> list[dict]:
    """Background workers' last sign of life (the core.heartbeat beat job touches a row every minute)."""
    from integration_hub.core.models import Heartbeat

    now = timezone.now()
    return [
        {**h, "stale": now - h["at"] > HEARTBEAT_STALE}
        for h in Heartbeat.objects.order_by("name").values("name", "at", "detail")
    ]


def exceptions_by_kind() -> dict:
    rows = list(
        ExceptionRecord.objects.filter(status__in=ACTIVE_STATUSES)
        .order_by()
        .values("kind", "severity")
        .annotate(n=Count("id"), oldest=Min("first_seen"), latest=Max("last_seen"))
    )
    labels = dict(Kind.choices)
    kinds: dict[str, dict] = {}
    for r in rows:
        k = kinds.setdefault(
            r["kind"],
            {
                "kind": r["kind"],
                "label": labels.get(r["kind"], r["kind"]),
                "n": 0,
                "worst": Severity.INFO,
                "oldest": r["oldest"],
                "latest": r["latest"],
            },
        )
        k["n"] += r["n"]
        if SEVERITY_RANK.get(r["severity"], 0) > SEVERITY_RANK.get(k["worst"], 0):
            k["worst"] = r["severity"]
        k["oldest"] = min(k["oldest"], r["oldest"])
        k["latest"] = max(k["latest"], r["latest"])
    items = sorted(kinds.values(), key=lambda k: (-SEVERITY_RANK.get(k["worst"], 0), -k["n"]))
    return {
        "total": sum(k["n"] for k in items),
        "kinds": items,
        "oldest": min((k["oldest"] for k in items), default=None),
    }


def orders_by_state() -> dict:
    rows = {
        r["state"]: r
        for r in Order.objects.order_by().values("state").annotate(n=Count("id"), oldest=Min("updated_at"))
    }
    ack_cutoff = timezone.now() - timedelta(minutes=int(settings.HUB["ACK_TIMEOUT_MINUTES"]))
    labels = dict(OrderState.choices)
    states = [
        {"state": s, "label": labels[s], "n": rows.get(s, {}).get("n", 0), "oldest": rows.get(s, {}).get("oldest")}
        for s in OrderState.values
    ]
    stuck = [r["oldest"] for r in states if r["state"] in (OrderState.HELD, OrderState.FAILED) and r["oldest"]]
    sent = rows.get(OrderState.SENT, {}).get("oldest")
    if sent and sent < ack_cutoff:
        stuck.append(sent)
    return {"states": states, "total": sum(r["n"] for r in states), "oldest_stuck": min(stuck, default=None)}


def dashboard(user) -> dict:
    """Everything the dashboard shows, restricted to what ``user`` may see."""
    out: dict = {"sections": set()}
    oldest: list[Oldest] = []
    if user.has_perm("inventory.view_pendingpush"):
        out["pushes"] = pending_pushes()
        out["sections"].add("pushes")
        oldest.append(Oldest("pending stock push", out["pushes"]["oldest"]))
    if user.has_perm("core.view_connection"):
        out["connections"] = connections()
        out["sections"].add("connections")
        out["webhook_secret_missing"] = [c for c in out["connections"] if c["enabled"] and c["webhook_secret_missing"]]
    if user.has_perm("core.view_heartbeat"):
        out["heartbeats"] = heartbeats()
        out["sections"].add("heartbeats")
    if user.has_perm("exceptions_app.view_exceptionrecord"):
        out["exceptions"] = exceptions_by_kind()
        out["sections"].add("exceptions")
        oldest.append(Oldest("open exception", out["exceptions"]["oldest"]))
    if user.has_perm("orders.view_order"):
        out["orders"] = orders_by_state()
        out["sections"].add("orders")
        oldest.append(Oldest("stuck order (held, failed or unacknowledged)", out["orders"]["oldest_stuck"]))
    present = [o for o in oldest if o.since]
    out["oldest"] = min(present, key=lambda o: o.since) if present else None
    out["oldest_all"] = oldest
    return out


# --- audit history --------------------------------------------------------------------------------------
@dataclass
class HistoryRow:
    entry: object
    changes: list = field(default_factory=list)


VOLATILE = {"updated_at", "last_seen", "count"}


def history_rows(entries) -> list[HistoryRow]:
    """Audit entries with the fields that changed (before → after)."""
    out = []
    for e in entries:
        before, after = e.before or {}, e.after or {}
        keys = sorted(set(before) | set(after))
        changes = [
            (k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k) and k not in VOLATILE
        ]
        out.append(HistoryRow(e, changes))
    return out


def run_periodic_task_now(task) -> str:
    """Queue a django-celery-beat job's task immediately; returns the Celery task id."""
    import json

    from integration_hub.celery import app

    kwargs = json.loads(task.kwargs or "{}")
    args = json.loads(task.args or "[]")
    options = {"queue": task.queue} if task.queue else {}
    return app.send_task(task.task, args=args, kwargs=kwargs, **options).id


ORDER_SEARCH_TERMS = 5  # words of a search that must each match


def order_search(q: str):
    """Partial, case-insensitive order search (CX): every word must appear in the order number, storefront
    id, hub key, warehouse ref, customer e-mail or a customer name (shipping / billing first or last name).
    A leading '#' is ignored ('#UK-100233' finds UK-100233; '100233' and 'jane.doe' find it too)."""
    from django.db.models import Q

    cond = Q()
    for word in q.replace(",", " ").split()[:ORDER_SEARCH_TERMS]:
        word = word.lstrip("#")
        if not word:
            continue
        any_field = Q()
        for f in (
            "order_number",
            "external_id",
            "idempotency_key",
            "warehouse_ref",
            "customer_email",
            "shipping_address__first_name",
            "shipping_address__last_name",
            "billing_address__first_name",
            "billing_address__last_name",
        ):
            any_field |= Q(**{f"{f}__icontains": word})
        cond &= any_field
    return cond
