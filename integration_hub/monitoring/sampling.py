"""Sampling the figures into the small time series behind the dashboard charts (bounded retention)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import Sample

# Figures kept as a time series (the charts); per-kind:severity exception keys are not kept, to stay small.
SAMPLED = (
    "push_queue_depth",
    "push_oldest_age_seconds",
    "propagation_lag_p50_seconds",
    "propagation_lag_p95_seconds",
    "drift_pairs",
    "orders_unacknowledged",
    "orders_undispatched",
    "orders_unnotified",
    "orders_in_state",
    "exceptions_open",
    "exceptions_opened_1h",
    "exceptions_resolved_1h",
    "connection_failing",
    "planner_failing",
)


def retention() -> timedelta:
    return timedelta(days=float(settings.HUB.get("MONITORING_RETENTION_DAYS", 8)))


def record(values: dict[tuple[str, str], float], now=None) -> int:
    """Store one sample of ``values`` at ``now`` and drop samples older than the retention (2 queries)."""
    now = now or timezone.now()
    rows = [
        Sample(at=now, figure=f, key=k, value=v)
        for (f, k), v in values.items()
        if f in SAMPLED and not (f == "exceptions_open" and ":" in k)
    ]
    Sample.objects.bulk_create(rows, batch_size=1000)
    Sample.objects.filter(at__lt=now - retention()).delete()
    return len(rows)


def series(figure_keys: list[tuple[str, str]], since, until=None) -> dict[tuple[str, str], list[tuple]]:
    """``{(figure, key): [(at, value), …]}`` since ``since`` for the asked pairs, in one query."""
    from django.db.models import Q

    if not figure_keys:
        return {}
    cond = Q()
    for f, k in figure_keys:
        cond |= Q(figure=f, key=k)
    qs = Sample.objects.filter(cond, at__gte=since)
    if until is not None:
        qs = qs.filter(at__lte=until)
    out: dict[tuple[str, str], list[tuple]] = {fk: [] for fk in figure_keys}
    for f, k, at, v in qs.order_by("at").values_list("figure", "key", "at", "value"):
        out[(f, k)].append((at, v))
    return out
