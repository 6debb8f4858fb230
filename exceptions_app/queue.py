"""The ops exception queue as a list of root causes (Sentry's issue stream): one row per group — a record on
its own, or the parent of every record one outage raised — sorted on whitelisted columns, with the group's
last-24 h trend.

A fixed number of queries for a page, whatever its size: the grouped count and page (2), the records of the
page's groups — each group's newest first, the parent row, then up to :data:`CHILDREN` more (1, a window
function), the trend of every row (1, grouped by group and hour), the order numbers CX know (1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Case, Count, F, IntegerField, Max, Min, Sum, Value, When, Window
from django.db.models.functions import RowNumber, Substr
from django.utils import timezone

from . import search
from .filters import ExceptionFilter
from .models import ExceptionOccurrence, ExceptionRecord

CHILDREN = 10  # records shown under an expanded parent (the rest are one click away: group:<key>)
TREND_HOURS = 24

SEVERITY_RANK = Case(
    When(severity="critical", then=Value(4)),
    When(severity="error", then=Value(3)),
    When(severity="warning", then=Value(2)),
    When(severity="info", then=Value(1)),
    default=Value(0),
    output_field=IntegerField(),
)

# ?sort= value → the grouped column it orders by (a leading "-" is descending); nothing else is accepted
SORTS = {
    "last": ("g_last", "Last seen"),
    "first": ("g_first", "First seen"),
    "count": ("g_events", "Count"),
    "affected": ("g_affected", "Affected"),
    "severity": ("g_sev", "Severity"),
    "kind": ("g_kind", "Kind"),
}
DEFAULT_SORT = "-last"


def clean_sort(value: str | None) -> str:
    value = (value or "").strip()
    return value if value.lstrip("-") in SORTS else DEFAULT_SORT


class QueueFilter(ExceptionFilter):
    """The console's filters: the API's dropdowns, with the search box reading :mod:`.search` syntax."""

    def __init__(self, data=None, *args, parsed: search.Query | None = None, user=None, **kwargs):
        self.parsed, self.user = parsed, user
        super().__init__(data, *args, **kwargs)
        q = self.form.fields["q"]
        q.label = "Search"
        q.widget.attrs.update(
            placeholder="kind:unknown_sku channel:uk-web sku:00045 order:UK-1002 is:open assignee:me text",
            autocomplete="off",
            **{"data-queue-search": "1"},
        )

    def search(self, queryset, name, value):
        return search.apply(self.parsed or search.parse(value), queryset, self.user)


@dataclass
class Filtered:
    qs: object  # ExceptionRecord queryset: every record the view's filters and search match
    filter: QueueFilter
    parsed: search.Query
    errors: list[str] = field(default_factory=list)
    matched: object = None  # queryset before snoozed records are hidden (for the counts)
    hides_snoozed: bool = False

    def counts(self) -> tuple[int, int]:
        """(records listed, snoozed records hidden) — one aggregate query."""
        if self.errors:
            return 0, 0
        if not self.hides_snoozed:
            return self.qs.count(), 0
        snoozed = search.snoozed_q(timezone.now())
        got = self.matched.aggregate(listed=Count("id", filter=~snoozed), hidden=Count("id", filter=snoozed))
        return got["listed"], got["hidden"]


def filtered(params, user) -> Filtered:
    """The records a queue URL's parameters select (the list, "act on all matching" and its worker task use this
    one function, so they act on exactly what the person saw)."""
    data = params.copy()
    parsed = search.parse(data.get("q", ""))
    if parsed.sets_status:
        data["status"] = "all"  # the search's is: decides
    base = ExceptionRecord.objects.select_related("channel", "connection", "assignee").defer("context", "message")
    flt = QueueFilter(data, queryset=base, parsed=parsed, user=user)
    errors = list(parsed.errors)
    if errors or not flt.is_valid():
        if not errors:
            errors = [f"{k}: {' '.join(v)}" for k, v in flt.errors.items()]
        return Filtered(qs=base.none(), filter=flt, parsed=parsed, errors=errors)
    qs = matched = flt.qs
    if not parsed.wants_snoozed:
        qs = qs.exclude(search.snoozed_q(timezone.now()))
    return Filtered(qs=qs, filter=flt, parsed=parsed, matched=matched, hides_snoozed=not parsed.wants_snoozed)


def grouped(qs, sort: str = DEFAULT_SORT, flat: bool = False):
    """One row per group of ``qs`` (per record when ``flat``: a group's own listing): key, records (affected),
    occurrences (events), first/last seen, worst severity, kind, newest id — ordered by ``sort`` (:data:`SORTS`)."""
    sort = clean_sort(sort)
    column = SORTS[sort.lstrip("-")][0]
    order = [F(column).desc() if sort.startswith("-") else F(column).asc(), F("g_lead").desc()]
    return (
        qs.order_by()
        .values("id" if flat else "group_key")
        .annotate(
            g_affected=Count("id"),
            g_events=Sum("count"),
            g_first=Min("first_seen"),
            g_last=Max("last_seen"),
            g_sev=Max(SEVERITY_RANK),
            g_kind=Max("kind"),
            g_lead=Max("id"),
        )
        .order_by(*order)
    )


@dataclass
class Row:
    key: str
    lead: ExceptionRecord
    children: list = field(default_factory=list)  # the group's records (newest first), lead included
    affected: int = 1
    events: int = 1
    first_seen: object = None
    last_seen: object = None
    trend: list = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return self.affected > 1

    @property
    def cause(self) -> str:
        """What a parent row says: the error its records share (the newest record's), else its title."""
        text = (getattr(self.lead, "cause", "") or "").strip().splitlines()
        return text[0] if text else self.lead.title

    @property
    def more(self) -> int:
        return max(0, self.affected - len(self.children))

    @property
    def trend_total(self) -> int:
        return sum(self.trend)

    @property
    def spark_points(self) -> str:
        """Polyline points of a 48×14 sparkline (2 px per hour, newest on the right)."""
        top = max(self.trend) if self.trend else 0
        return " ".join(f"{i * 2 + 1},{13 - (round(11 * v / top) if top else 0)}" for i, v in enumerate(self.trend))


def rows_for(qs, groups: list[dict], now=None, flat: bool = False) -> list[Row]:
    """The page's rows: records and trend for the grouped ``groups`` (a page of :func:`grouped`)."""
    if not groups:
        return []
    field_ = "id" if flat else "group_key"
    keys = [g[field_] for g in groups]
    ranked = (
        qs.filter(**{f"{field_}__in": keys})
        .annotate(
            rn=Window(RowNumber(), partition_by=[F(field_)], order_by=[F("last_seen").desc(), F("id").desc()]),
            cause=Substr("message", 1, 160),
        )
        .filter(rn__lte=CHILDREN)
    )
    by_key: dict = {}
    for r in ranked:
        by_key.setdefault(getattr(r, field_), []).append(r)
    for recs in by_key.values():
        recs.sort(key=lambda r: r.rn)
    from .triage import attach_order_numbers

    attach_order_numbers([r for recs in by_key.values() for r in recs])
    trends = trend(qs.filter(**{f"{field_}__in": keys}), now, by="record_id" if flat else "record__group_key")
    out = []
    for g in groups:
        recs = by_key.get(g[field_])
        if not recs:  # changed between the two queries
            continue
        out.append(
            Row(
                key=recs[0].group_key,
                lead=recs[0],
                children=recs,
                affected=g["g_affected"],
                events=g["g_events"] or 0,
                first_seen=g["g_first"],
                last_seen=g["g_last"],
                trend=trends.get(g[field_], [0] * TREND_HOURS),
            )
        )
    return out


def trend(qs, now=None, by: str = "record__group_key") -> dict:
    """{group key (or record id): occurrences per hour over the last 24 h, oldest first} for the records of
    ``qs`` (one query, grouped by ``by`` and hour)."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=TREND_HOURS - 1)
    out: dict = {}
    rows = (
        ExceptionOccurrence.objects.filter(record_id__in=qs.values("pk"), hour__gte=start)
        .values(by, "hour")
        .annotate(s=Sum("n"))
        .order_by()
    )
    for r in rows:
        i = int((r["hour"] - start).total_seconds() // 3600)
        if 0 <= i < TREND_HOURS:
            out.setdefault(r[by], [0] * TREND_HOURS)[i] += r["s"]
    return out


def target_ids(params, user, ids=(), groups=(), all_matching: bool = False) -> list[int]:
    """The records a queue action acts on: everything the queue URL's filters match (``all_matching``), or the
    ticked records plus every record of a ticked parent that the same filters match (what the person saw under
    it). Raises :class:`search.SearchError` when the filters cannot be read."""
    f = filtered(params, user)
    if f.errors:
        raise search.SearchError(" ".join(f.errors))
    if all_matching:
        return list(f.qs.order_by("id").values_list("id", flat=True))
    ids = [int(i) for i in ids if str(i).isdigit()]
    groups = [str(g) for g in groups if g]
    picked = set(ExceptionRecord.objects.filter(pk__in=ids).values_list("id", flat=True)) if ids else set()
    if groups:
        picked |= set(f.qs.filter(group_key__in=groups).values_list("id", flat=True))
    return sorted(picked)
