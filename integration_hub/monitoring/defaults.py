"""Shipped alert rules: a starting point an admin tunes in the admin (installed by ``manage.py setup_alerts``;
existing rules of the same name are never overwritten)."""

from __future__ import annotations

DEFAULT_RULES = [
    {
        "name": "Stock push queue backing up",
        "figure": "push_queue_depth",
        "key": "*",
        "op": "gt",
        "threshold": 1000,
        "window_minutes": 10,
        "severity": "warning",
    },
    {
        "name": "Stock pushes stuck",
        "figure": "push_oldest_age_seconds",
        "key": "*",
        "op": "gt",
        "threshold": 900,
        "window_minutes": 0,
        "severity": "error",
    },
    {
        "name": "Propagation slow (p95)",
        "figure": "propagation_lag_p95_seconds",
        "key": "",
        "op": "gt",
        "threshold": 300,
        "window_minutes": 10,
        "severity": "warning",
    },
    {
        "name": "Storefront disagrees with hub stock",
        "figure": "drift_pairs",
        "key": "*",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 0,
        "severity": "warning",
    },
    {
        "name": "Orders not acknowledged by the warehouse",
        "figure": "orders_unacknowledged",
        "key": "",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 0,
        "severity": "error",
    },
    {
        "name": "Orders not dispatched in time",
        "figure": "orders_undispatched",
        "key": "",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 0,
        "severity": "error",
        "flow": "dispatch",
    },
    {
        "name": "Dispatches not shown shipped in time",
        "figure": "orders_unnotified",
        "key": "",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 0,
        "severity": "warning",
        "flow": "dispatch",
    },
    {
        "name": "Connection failing",
        "figure": "connection_failing",
        "key": "*",
        "op": "gte",
        "threshold": 1,
        "window_minutes": 10,
        "severity": "error",
    },
    {
        "name": "Planner connection failing",
        "figure": "planner_failing",
        "key": "*",
        "op": "gte",
        "threshold": 1,
        "window_minutes": 30,
        "severity": "warning",
        "flow": "demand",
    },
    {
        "name": "Unmapped storefront SKUs",
        "figure": "exceptions_open",
        "key": "sku_mismatch",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 0,
        "severity": "warning",
        "flow": "catalogue",
    },
    # issue 20, item 9: a flash sale under faults
    {
        "name": "Order holds piling up",
        "figure": "holds_overdue",
        "key": "*",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 5,
        "severity": "warning",
    },
    {
        "name": "Work left by a dead worker",
        "figure": "leases_expired",
        "key": "",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 2,
        "severity": "error",
    },
    {
        "name": "No worker heartbeat",
        "figure": "worker_heartbeat_age_seconds",
        "key": "",
        "op": "gt",
        "threshold": 180,
        "window_minutes": 0,
        "severity": "critical",
    },
    {
        "name": "Order intake behind",
        "figure": "intake_oldest_seconds",
        "key": "",
        "op": "gt",
        "threshold": 120,
        "window_minutes": 0,
        "severity": "error",
    },
    # by severity, any kind (exceptions_open with key "*" would fire per kind for every severity)
    {
        "name": "Critical exceptions open",
        "figure": "exceptions_open_severity",
        "key": "critical",
        "op": "gt",
        "threshold": 0,
        "window_minutes": 0,
        "severity": "critical",
        "enabled": False,
    },
]


def install() -> int:
    """Create the shipped rules that are missing; audited with source ``setup_alerts``."""
    from integration_hub.core import audit

    from .models import AlertRule

    created = 0
    with audit.acting_as(None, "setup_alerts"):
        existing = set(AlertRule.objects.values_list("name", flat=True))
        for spec in DEFAULT_RULES:
            if spec["name"] not in existing:
                AlertRule.objects.create(**spec)
                created += 1
    return created
