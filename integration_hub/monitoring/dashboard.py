"""The live part of the dashboard: per-flow health tiles coloured by the open alert firings, charts over the
last hour / day / week from the sampled figures, and progress bars of long work. A fixed number of queries
(tiles 1, charts 1 — rendered at most every ``CHART_CACHE_SECONDS`` and shared —, progress 1) whatever the data
size; sections only for roles allowed to see them.

Charts are server-rendered SVG drawn with pygal (https://www.pygal.org/, a pip dependency): no script runs
in the page for them (pygal's tooltip script is switched off, ``js=[]``, and its inline config script removed), so a strict CSP
(``script-src 'self'``) holds; the page refreshes the fragment with htmx (served from django-htmx's static files).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Max
from django.db.models.functions import TruncHour
from django.utils import timezone

from .models import SEVERITY_RANK, Flow, Sample
from .progress import current as current_progress

RANGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
# samples are per minute; a week is drawn from hourly maxima (168 points a line)
HOURLY = {"week"}


def refresh_seconds() -> int:
    from django.conf import settings

    return int(settings.HUB.get("DASHBOARD_REFRESH_SECONDS", 15))


FLOW_PERM = {  # who may see the tile of a flow
    Flow.STOCK: "inventory.view_pendingpush",
    Flow.ORDERS: "orders.view_order",
    Flow.DISPATCH: "orders.view_order",
    Flow.DEMAND: "planning.view_recommendation",
    Flow.CATALOGUE: "catalog.view_skumapping",
}


@dataclass
class Tile:
    flow: str
    label: str
    colour: str  # green | amber | red
    severity: str
    firings: list


@dataclass
class Chart:
    slug: str
    title: str
    svg: str


CHARTS = [  # slug, title, permission, [(figure, key, line label)]
    ("queue", "Stock push queue depth", "inventory.view_pendingpush", [("push_queue_depth", "", "pending pushes")]),
    (
        "lag",
        "Propagation lag (seconds)",
        "inventory.view_pendingpush",
        [("propagation_lag_p50_seconds", "", "p50"), ("propagation_lag_p95_seconds", "", "p95")],
    ),
    (
        "orders",
        "Orders per state",
        "orders.view_order",
        [
            ("orders_in_state", s, s)
            for s in ("captured", "validated", "sent", "acknowledged", "dispatched", "held", "failed")
        ],
    ),
    (
        "flash",
        "Holds, dead-worker leases and intake (issue 20)",
        "orders.view_order",
        [
            ("holds_acknowledged", "", "acknowledged holds"),
            ("holds_overdue", "", "holds beyond feed lag"),
            ("leases_expired", "", "expired leases"),
            ("intake_oldest_seconds", "", "oldest unsent order (s)"),
        ],
    ),
    (
        "exceptions",
        "Exceptions opened vs resolved (rolling hour)",
        "exceptions_app.view_exceptionrecord",
        [("exceptions_opened_1h", "", "opened"), ("exceptions_resolved_1h", "", "resolved")],
    ),
]


def colour_of(severity: str) -> str:
    rank = SEVERITY_RANK.get(severity, 0)
    return "red" if rank >= 2 else ("amber" if rank == 1 else "green")


def tiles(user) -> list[Tile]:
    from .models import Firing

    if not user.has_perm("monitoring.view_firing"):
        return []
    flows = [f for f in Flow if user.has_perm(FLOW_PERM[f])]
    if not flows:
        return []
    open_rows = list(
        Firing.objects.filter(recovered_at__isnull=True)
        .order_by("-started_at")
        .values("flow", "severity", "message", "started_at")[:200]
    )
    out = []
    for flow in flows:
        mine = [r for r in open_rows if r["flow"] == flow]
        worst = max((r["severity"] for r in mine), key=lambda s: SEVERITY_RANK.get(s, 0), default="")
        out.append(Tile(flow.value, flow.label, colour_of(worst), worst, mine[:5]))
    return out


def _series(pairs, since, hourly: bool):
    from django.db.models import Q

    cond = Q()
    for f, k in pairs:
        cond |= Q(figure=f, key=k)
    qs = Sample.objects.filter(cond, at__gte=since)
    if hourly:
        rows = (
            qs.annotate(t=TruncHour("at"))
            .values("figure", "key", "t")
            .annotate(v=Max("value"))
            .order_by("t")
            .values_list("figure", "key", "t", "v")
        )
    else:
        rows = qs.order_by("at").values_list("figure", "key", "at", "value")
    out = {p: [] for p in pairs}
    for f, k, at, v in rows:
        out[(f, k)].append((at, v))
    return out


MAX_POINTS = 240  # per line: more is not visible at this size and costs rendering time


def thin(points: list[tuple], max_points: int = MAX_POINTS) -> list[tuple]:
    """At most ``max_points`` points: consecutive runs collapse to their worst (highest) value."""
    if len(points) <= max_points:
        return points
    size = -(-len(points) // max_points)
    return [
        (chunk[-1][0], max(v for _, v in chunk))
        for chunk in (points[i : i + size] for i in range(0, len(points), size))
    ]


def _without_scripts(root):
    """pygal always writes its config as an inline ``<script>``; the dashboard runs no chart script (CSP)."""
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _svg(title: str, lines: list[tuple[str, list]], range_name: str) -> str:
    import pygal
    from pygal.style import Style

    style = Style(
        background="transparent",
        plot_background="#ffffff",
        foreground="#1c2433",
        foreground_strong="#1c2433",
        foreground_subtle="#e2e6ee",
        font_family="system-ui, sans-serif",
        colors=("#2457d6", "#c53030", "#1f8a4c", "#b7791f", "#6b46c1", "#2b6cb0", "#8b1a1a"),
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=11,
        title_font_size=13,
        no_data_font_size=16,
    )
    fmt = "%H:%M" if range_name != "week" else "%a %H:%M"
    chart = pygal.DateTimeLine(
        width=640,
        height=260,
        style=style,
        js=[],
        disable_xml_declaration=True,
        show_dots=False,
        fill=False,
        legend_at_bottom=True,
        legend_at_bottom_columns=4,
        x_value_formatter=lambda dt: dt.strftime(fmt),
        x_label_rotation=0,
        show_minor_x_labels=False,
        truncate_legend=-1,
        no_data_text="no samples yet",
        margin=8,
        margin_bottom=28,
        explicit_size=False,
    )
    chart.title = None
    chart.add_xml_filter(_without_scripts)
    for label, points in lines:
        chart.add(label, thin(points))
    return chart.render(is_unicode=True)


CHART_CACHE_SECONDS = 30  # samples arrive once a minute; every viewer within this shares one rendering


def charts(user, range_name: str, now=None) -> list[Chart]:
    from django.core.cache import cache

    wanted = [c for c in CHARTS if user.has_perm(c[2])]
    if not wanted:
        return []
    cache_key = f"monitoring:charts:{range_name}:{','.join(c[0] for c in wanted)}"
    cached = cache.get(cache_key) if now is None else None
    if cached is not None:
        return cached
    now = now or timezone.now()
    pairs = [(f, k) for c in wanted for f, k, _ in c[3]]
    data = _series(pairs, now - RANGES[range_name], range_name in HOURLY)
    out = [
        Chart(slug, title, _svg(title, [(label, data[(f, k)]) for f, k, label in lines], range_name))
        for slug, title, _, lines in wanted
    ]
    cache.set(cache_key, out, CHART_CACHE_SECONDS)
    return out


def live(user, range_name: str = "hour") -> dict:
    if range_name not in RANGES:
        range_name = "hour"
    return {
        "range": range_name,
        "ranges": list(RANGES),
        "tiles": tiles(user),
        "charts": charts(user, range_name),
        "progress": current_progress() if user.has_perm("monitoring.view_taskprogress") else [],
        "refresh": refresh_seconds(),
    }
