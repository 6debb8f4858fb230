"""The hub's own figures, computed from its tables in a fixed number of queries (7) whatever the data size.

:func:`compute` returns ``{(figure, key): value}``; ``key`` is a channel key, a connection name, an
exception kind (``kind`` or ``kind:severity``) or an order state, and ``""`` is the hub-wide total.
:data:`FIGURES` is the catalogue the alert rules, the dashboard and the Prometheus endpoint share.

Propagation lag (master change → storefront confirmed) is measured where the tables allow it: for each
(channel, item) the storefront confirmed in the last ``LAG_WINDOW``, from the hub's receipt of the latest
stock change of that item at or before the confirmation (``StockLevel.updated_at``, at most
``LAG_MAX_AGE`` earlier, so a push caused by something else — a mapping edit, an order decrement — is
not counted against an old change) to ``ChannelStock.confirmed_at``. A master change that moves no ATS
causes no push and is not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone as dt_timezone

from django.conf import settings
from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.utils import timezone

LAG_WINDOW = timedelta(minutes=15)
LAG_MAX_AGE = timedelta(hours=1)
LAG_SAMPLE = 5000  # most recent confirmations looked at
# a connection whose last error is this recent, and later than its last success, is failing
FAILING_RECENT = timedelta(minutes=15)

EXCEPTION_FLOW = {
    "sku_mismatch": "catalogue",
    "unknown_sku": "catalogue",
    "stuck_order": "orders",
    "orphaned_order": "orders",
    "bad_payload": "orders",
    "missing_dispatch": "dispatch",
    "stock_drift": "stock",
    "sync_timeout": "stock",
    "rate_limited": "stock",
}


@dataclass(frozen=True)
class FigureInfo:
    label: str
    unit: str
    flow: str
    keyed_by: str  # what the key is ("" = a single hub-wide value)
    help: str


FIGURES: dict[str, FigureInfo] = {
    "push_queue_depth": FigureInfo(
        "Stock push queue depth", "rows", "stock", "channel", "pending stock pushes (per channel; '' = all)"
    ),
    "push_oldest_age_seconds": FigureInfo(
        "Oldest pending push", "seconds", "stock", "channel", "age of the oldest pending push (per channel; '' = all)"
    ),
    "propagation_lag_p50_seconds": FigureInfo(
        "Propagation lag p50", "seconds", "stock", "channel", "master change received → storefront confirmed, median"
    ),
    "propagation_lag_p95_seconds": FigureInfo(
        "Propagation lag p95",
        "seconds",
        "stock",
        "channel",
        "master change received → storefront confirmed, 95th percentile",
    ),
    "drift_pairs": FigureInfo(
        "Stock drift", "pairs", "stock", "channel", "open stock_drift exceptions (storefront ≠ hub ATS) per channel"
    ),
    "orders_unacknowledged": FigureInfo(
        "Orders unacknowledged",
        "orders",
        "orders",
        "",
        "sent to the warehouse longer than HUB_ACK_TIMEOUT_MINUTES ago, no acknowledgement",
    ),
    "orders_undispatched": FigureInfo(
        "Orders undispatched",
        "orders",
        "dispatch",
        "",
        "acknowledged longer than HUB_DISPATCH_DUE_MINUTES ago, not dispatched",
    ),
    "orders_unnotified": FigureInfo(
        "Dispatches not shown shipped",
        "orders",
        "dispatch",
        "",
        "dispatched longer than HUB_DISPATCH_NOTIFY_MINUTES ago, storefront not yet shipped",
    ),
    "orders_in_state": FigureInfo("Orders per state", "orders", "orders", "state", "orders in each state"),
    "exceptions_open": FigureInfo(
        "Open exceptions",
        "exceptions",
        "orders",
        "kind",
        "open/acknowledged exceptions; key = kind or kind:severity ('' = all)",
    ),
    "exceptions_open_severity": FigureInfo(
        "Open exceptions by severity",
        "exceptions",
        "orders",
        "severity",
        "open/acknowledged exceptions of each severity, any kind (key = severity)",
    ),
    "exceptions_opened_1h": FigureInfo(
        "Exceptions opened (1 h)", "exceptions", "orders", "", "first seen in the last hour"
    ),
    "exceptions_resolved_1h": FigureInfo(
        "Exceptions resolved (1 h)", "exceptions", "orders", "", "resolved in the last hour"
    ),
    "connection_failing": FigureInfo(
        "Connection failing",
        "0/1",
        "stock",
        "connection",
        "1 while a storefront/master connection's last call failed (use the rule window for 'N minutes')",
    ),
    "connection_failing_minutes": FigureInfo(
        "Connection failing for",
        "minutes",
        "stock",
        "connection",
        "minutes since the last success of a failing connection",
    ),
    "planner_failing": FigureInfo(
        "Planner connection failing",
        "0/1",
        "demand",
        "connection",
        "1 while an Inventory Planner connection's last call failed",
    ),
    # issue 20, item 9: what a flash sale under faults must show
    "holds_acknowledged": FigureInfo(
        "Acknowledged holds",
        "holds",
        "stock",
        "connection",
        "active stock holds of acknowledged orders the master's feed has not carried yet (per master)",
    ),
    "holds_overdue": FigureInfo(
        "Holds beyond the feed lag",
        "holds",
        "stock",
        "connection",
        "acknowledged holds older than HUB_MASTER_FEED_LAG_SECONDS: piling up (a master allocating where "
        "the hub does not look, a lost feed); released with a record at HUB_HOLD_MAX_SECONDS",
    ),
    "holds_oldest_age_seconds": FigureInfo(
        "Oldest acknowledged hold",
        "seconds",
        "stock",
        "connection",
        "age of the oldest acknowledged hold still active (per master)",
    ),
    "leases_expired": FigureInfo(
        "Work left by a dead worker",
        "rows",
        "stock",
        "",
        "push rows and orders still claimed after their lease ran out: a worker stopped renewing (died); "
        "the sweeps hand them to live workers",
    ),
    "worker_heartbeat_age_seconds": FigureInfo(
        "Worker heartbeat age",
        "seconds",
        "stock",
        "",
        "since a worker last ran the beat's heartbeat job (no heartbeat yet: since 1970)",
    ),
    "intake_oldest_seconds": FigureInfo(
        "Intake behind",
        "seconds",
        "orders",
        "",
        "age of the oldest order captured but not yet sent to the warehouse (held orders excluded)",
    ),
}


def flow_of(figure: str, key: str = "") -> str:
    if figure == "exceptions_open" and key:
        return EXCEPTION_FLOW.get(key.split(":", 1)[0], "orders")
    info = FIGURES.get(figure)
    return info.flow if info else ""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (non-empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n·p/100), at least 1
    return float(ordered[int(rank) - 1])


def compute(now=None) -> dict[tuple[str, str], float]:
    now = now or timezone.now()
    out: dict[tuple[str, str], float] = {}
    _pushes(out, now)
    _lag(out, now)
    _orders(out, now)
    _exceptions(out, now)
    _connections(out, now)
    _flash(out, now)
    return out


def _pushes(out, now):
    from integration_hub.inventory.models import PendingPush

    out[("push_queue_depth", "")] = 0.0
    out[("push_oldest_age_seconds", "")] = 0.0
    oldest_all = None
    for r in PendingPush.objects.order_by().values("channel__key").annotate(n=Count("id"), oldest=Min("created_at")):
        key = r["channel__key"]
        out[("push_queue_depth", key)] = float(r["n"])
        out[("push_oldest_age_seconds", key)] = max(0.0, (now - r["oldest"]).total_seconds())
        out[("push_queue_depth", "")] += r["n"]
        oldest_all = r["oldest"] if oldest_all is None else min(oldest_all, r["oldest"])
    if oldest_all is not None:
        out[("push_oldest_age_seconds", "")] = max(0.0, (now - oldest_all).total_seconds())


def _lag(out, now):
    from integration_hub.inventory.models import ChannelStock, StockLevel

    changed = (
        StockLevel.objects.filter(item_id=OuterRef("item_id"), updated_at__lte=OuterRef("confirmed_at"))
        .order_by("-updated_at")
        .values("updated_at")[:1]
    )
    rows = (
        ChannelStock.objects.filter(confirmed_at__gte=now - LAG_WINDOW, confirmed_at__lte=now)
        .annotate(changed=Subquery(changed))
        .values_list("channel__key", "confirmed_at", "changed")
        .order_by("-confirmed_at")[:LAG_SAMPLE]
    )
    by_channel: dict[str, list[float]] = {}
    for key, confirmed_at, changed_at in rows:
        if changed_at is None or confirmed_at - changed_at > LAG_MAX_AGE:
            continue
        by_channel.setdefault(key, []).append(max(0.0, (confirmed_at - changed_at).total_seconds()))
    everything = [v for values in by_channel.values() for v in values]
    for key, values in [("", everything), *by_channel.items()]:
        if values:
            out[("propagation_lag_p50_seconds", key)] = percentile(values, 50)
            out[("propagation_lag_p95_seconds", key)] = percentile(values, 95)


def _orders(out, now):
    from integration_hub.orders.models import Order, OrderState

    hub = settings.HUB
    ack = now - timedelta(minutes=int(hub["ACK_TIMEOUT_MINUTES"]))
    due = now - timedelta(minutes=int(hub["DISPATCH_DUE_MINUTES"]))
    notify = now - timedelta(minutes=int(hub["DISPATCH_NOTIFY_MINUTES"]))
    rows = (
        Order.objects.order_by()
        .values("state")
        .annotate(
            n=Count("id"),
            unack=Count("id", filter=Q(state=OrderState.SENT, sent_at__lt=ack)),
            undispatched=Count("id", filter=Q(state=OrderState.ACKNOWLEDGED, acknowledged_at__lt=due)),
            unnotified=Count("id", filter=Q(state=OrderState.DISPATCHED, dispatch_received_at__lt=notify)),
        )
    )
    for state in OrderState.values:
        out[("orders_in_state", state)] = 0.0
    out[("orders_unacknowledged", "")] = out[("orders_undispatched", "")] = out[("orders_unnotified", "")] = 0.0
    for r in rows:
        out[("orders_in_state", r["state"])] = float(r["n"])
        out[("orders_unacknowledged", "")] += r["unack"]
        out[("orders_undispatched", "")] += r["undispatched"]
        out[("orders_unnotified", "")] += r["unnotified"]


def _exceptions(out, now):
    from exceptions_app.models import ACTIVE_STATUSES, ExceptionRecord, Kind, Severity, Status

    out[("exceptions_open", "")] = 0.0
    out[("drift_pairs", "")] = 0.0
    for kind in Kind.values:
        out[("exceptions_open", kind)] = 0.0
    for severity in Severity.values:
        out[("exceptions_open_severity", severity)] = 0.0
    for r in (
        ExceptionRecord.objects.filter(status__in=ACTIVE_STATUSES)
        .order_by()
        .values("kind", "severity", "channel__key")
        .annotate(n=Count("id"))
    ):
        n = float(r["n"])
        out[("exceptions_open", "")] += n
        out[("exceptions_open", r["kind"])] = out.get(("exceptions_open", r["kind"]), 0.0) + n
        out[("exceptions_open_severity", r["severity"])] = out.get(("exceptions_open_severity", r["severity"]), 0.0) + n
        ks = f"{r['kind']}:{r['severity']}"
        out[("exceptions_open", ks)] = out.get(("exceptions_open", ks), 0.0) + n
        if r["kind"] == Kind.STOCK_DRIFT:
            out[("drift_pairs", "")] += n
            if r["channel__key"]:
                out[("drift_pairs", r["channel__key"])] = out.get(("drift_pairs", r["channel__key"]), 0.0) + n
    hour = now - timedelta(hours=1)
    agg = ExceptionRecord.objects.aggregate(
        opened=Count("id", filter=Q(first_seen__gte=hour)),
        resolved=Count("id", filter=Q(status=Status.RESOLVED, status_changed_at__gte=hour)),
    )
    out[("exceptions_opened_1h", "")] = float(agg["opened"])
    out[("exceptions_resolved_1h", "")] = float(agg["resolved"])


def _connections(out, now):
    from integration_hub.core.models import PLANNER_SYSTEMS, Connection

    for c in Connection.objects.filter(enabled=True).values("name", "system_type", "last_success_at", "last_error_at"):
        err, ok = c["last_error_at"], c["last_success_at"]
        failing = bool(err and (ok is None or err > ok) and now - err <= FAILING_RECENT)
        figure = "planner_failing" if c["system_type"] in PLANNER_SYSTEMS else "connection_failing"
        out[(figure, c["name"])] = 1.0 if failing else 0.0
        if figure == "connection_failing":
            out[("connection_failing_minutes", c["name"])] = (
                round((now - ok).total_seconds() / 60, 1) if failing and ok else 0.0
            )


def _flash(out, now):
    """Issue 20, item 9, in one query: acknowledged holds per master (count, beyond the feed lag, oldest) and
    the liveness scalars — the newest worker heartbeat, leases a dead worker left (push rows and orders still
    claimed after their lease ran out; an order's lease is ``next_attempt_at`` while ``claim_token`` is set)
    and the oldest captured order not yet sent (held orders wait for a person, not for intake)."""
    from django.db import connection as db

    from integration_hub.core.models import Connection, Heartbeat
    from integration_hub.inventory.models import PendingPush, Reservation
    from integration_hub.orders.models import Order, OrderState

    lag = now - timedelta(seconds=int(settings.HUB.get("MASTER_FEED_LAG_SECONDS", 120)))
    q = db.ops.quote_name
    res, conn, hb, push, order = (q(m._meta.db_table) for m in (Reservation, Connection, Heartbeat, PendingPush, Order))
    ts = db.ops.adapt_datetimefield_value
    sql = f"""
        SELECT (SELECT MAX(at) FROM {hb}),
               (SELECT COUNT(*) FROM {push} WHERE claim_token <> '' AND claimed_until < %s),
               (SELECT COUNT(*) FROM {order} WHERE claim_token <> '' AND next_attempt_at < %s),
               (SELECT MIN(created_at) FROM {order} WHERE state IN (%s, %s)),
               h.name, h.n, h.overdue, h.oldest
          FROM (SELECT 1 AS one) x
          LEFT JOIN (SELECT c.name AS name, COUNT(*) AS n,
                            SUM(CASE WHEN r.acknowledged_at < %s THEN 1 ELSE 0 END) AS overdue, MIN(r.acknowledged_at) AS oldest
                       FROM {res} r LEFT JOIN {conn} c ON c.id = r.warehouse_id
                      WHERE r.released_at IS NULL AND r.acknowledged_at IS NOT NULL
                      GROUP BY c.name) h ON 1 = 1"""
    with db.cursor() as cur:
        cur.execute(sql, [ts(now), ts(now), OrderState.CAPTURED, OrderState.VALIDATED, ts(lag)])
        rows = cur.fetchall()
    last_beat, stale_pushes, stale_orders, oldest_intake = rows[0][:4] if rows else (None, 0, 0, None)
    last_beat, oldest_intake = _as_dt(last_beat), _as_dt(oldest_intake)
    epoch = now.replace(year=1970, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    out[("worker_heartbeat_age_seconds", "")] = max(0.0, (now - (last_beat or epoch)).total_seconds())
    out[("leases_expired", "")] = float((stale_pushes or 0) + (stale_orders or 0))
    out[("intake_oldest_seconds", "")] = max(0.0, (now - oldest_intake).total_seconds()) if oldest_intake else 0.0
    out[("holds_acknowledged", "")] = out[("holds_overdue", "")] = out[("holds_oldest_age_seconds", "")] = 0.0
    for *_, name, n, overdue, oldest in rows:
        if n is None:
            continue
        key, age = name or "", max(0.0, (now - _as_dt(oldest)).total_seconds())
        out[("holds_acknowledged", key)] = float(n)
        out[("holds_overdue", key)] = float(overdue or 0)
        out[("holds_oldest_age_seconds", key)] = age
        out[("holds_acknowledged", "")] += n
        out[("holds_overdue", "")] += overdue or 0
        out[("holds_oldest_age_seconds", "")] = max(out[("holds_oldest_age_seconds", "")], age)


def _as_dt(value):
    """An aware datetime from a raw cursor value (SQLite answers text or a naive UTC datetime)."""
    if value is None:
        return None
    if not hasattr(value, "tzinfo"):
        from django.utils.dateparse import parse_datetime

        value = parse_datetime(str(value))
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, dt_timezone.utc)
    return value


QUERIES = 7  # what compute() costs, whatever the data size (tests assert it)
