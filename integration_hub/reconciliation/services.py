"""Finance reconciliation, computed set-based: each report is one ``INSERT INTO row … SELECT`` over the
whole database (ARCHITECTURE principle 6), whatever the number of orders or SKUs, plus one aggregate
for the totals. Nothing is pulled into Python row by row.

Reports
  shipped_open          orders the storefront shows fulfilled/shipped while the warehouse has not
                        dispatched them (no dispatch recorded, not cancelled).
  dispatched_unshipped  orders the warehouse dispatched more than ``HUB["DISPATCH_NOTIFY_MINUTES"]`` ago
                        that the storefront still does not show shipped.
  stock_drift           per (channel, SKU): master available-to-sell (inventory.ats, the same SQL the
                        push engine uses) vs the quantity the storefront shows (last observed read-back,
                        else last confirmed push); value of the difference at ``Item.unit_cost``.

How "shipped in the storefront" is known: the hub marks an order shipped in the storefront only after
the warehouse dispatch (state ``storefront_notified``, ``notified_at``); a storefront-side fulfilment
(ship-from-store, click & collect) is a ``StorefrontFulfilment`` row, open in the master until it is
acknowledged; and a shipment state set in the storefront itself arrives with the order payload
(commercetools ``shipmentState`` Shipped/Delivered, SFCC ``shipping_status`` shipped), kept in
``Order.raw``. All count.

CSV export streams over ``.iterator(chunk_size=…)`` (see :func:`iter_csv`), so a million rows never sit
in memory at once.
"""

from __future__ import annotations

import csv
import itertools
import logging
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterator

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    OuterRef,
    Subquery,
    When,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from integration_hub.catalog.models import Item
from integration_hub.core import nudge
from integration_hub.core.models import Channel
from integration_hub.inventory.models import ChannelStock
from integration_hub.monitoring import progress
from integration_hub.orders.models import Order, OrderState, StorefrontFulfilment

from .models import Report, ReportKind, ReportRow

log = logging.getLogger(__name__)

CSV_CHUNK = 2000

# storefront payload values that mean "the storefront shows this order shipped"
STOREFRONT_SHIPPED = {
    "shipmentState": ["Shipped", "Delivered"],  # commercetools Order.shipmentState
    "shipping_status": ["shipped", "part_shipped"],  # SFCC Order.shipping_status
}

ROW_COLUMNS = [
    "report_id",
    "channel_id",
    "channel_key",
    "order_id",
    "order_ref",
    "external_id",
    "order_state",
    "warehouse_ref",
    "event_at",
    "item_id",
    "sku",
    "storefront_sku",
    "master_quantity",
    "storefront_quantity",
    "difference",
    "unit_cost",
    "value",
]

CSV_COLUMNS = {
    ReportKind.SHIPPED_NOT_DISPATCHED: [
        "channel_key",
        "order_ref",
        "external_id",
        "order_state",
        "warehouse_ref",
        "event_at",
    ],
    ReportKind.DISPATCHED_NOT_SHIPPED: [
        "channel_key",
        "order_ref",
        "external_id",
        "order_state",
        "warehouse_ref",
        "event_at",
        "minutes_overdue",
    ],
    ReportKind.STOCK_DRIFT: [
        "channel_key",
        "sku",
        "storefront_sku",
        "master_quantity",
        "storefront_quantity",
        "difference",
        "unit_cost",
        "value",
    ],
}
CSV_HEADERS = {
    "channel_key": "channel",
    "order_ref": "order",
    "external_id": "storefront order id",
    "order_state": "hub state",
    "warehouse_ref": "warehouse ref",
    "event_at": "shipped/dispatched at (UTC)",
    "minutes_overdue": "minutes overdue",
    "sku": "master sku",
    "storefront_sku": "storefront sku",
    "master_quantity": "master ATS",
    "storefront_quantity": "storefront quantity",
    "difference": "difference (storefront - master)",
    "unit_cost": "unit cost",
    "value": "value at cost",
}


def storefront_shipped_q() -> Q:
    q = Q(state=OrderState.STOREFRONT_NOTIFIED) | Q(notified_at__isnull=False)
    for key, values in STOREFRONT_SHIPPED.items():
        q |= Q(**{f"raw__{key}__in": values})
    return q


def _with_shipped_flag(qs):
    """``sf_shipped`` as a boolean column: CASE WHEN keeps NULL JSON keys (no such key) from turning a
    NOT (...) into NULL, which ``exclude()`` over JSON key lookups would do."""
    return qs.annotate(
        sf_shipped=Case(
            When(storefront_shipped_q(), then=Value(True)), default=Value(False), output_field=BooleanField()
        )
    )


def _insert_select(qs) -> int:
    """``INSERT INTO reportrow (ROW_COLUMNS) <qs as SQL>``; ``qs`` must be ``.values(*ROW_COLUMNS)`` of
    annotations only, so its SELECT list is in exactly that order."""
    sql, params = qs.query.sql_with_params()
    table = connection.ops.quote_name(ReportRow._meta.db_table)
    cols = ", ".join(connection.ops.quote_name(c) for c in ROW_COLUMNS)
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {table} ({cols}) {sql}", params)
        return max(cur.rowcount, 0)


_NULL_INT = lambda: Value(None, output_field=IntegerField())  # noqa: E731
_NULL_BIG = lambda: Value(None, output_field=BigIntegerField())  # noqa: E731
_EMPTY = lambda: Value("", output_field=CharField())  # noqa: E731


def _order_rows(report: Report, qs, event):
    annotations = dict(
        r_report_id=Value(report.pk, output_field=BigIntegerField()),
        r_channel_id=F("channel_id"),
        r_channel_key=F("channel__key"),
        r_order_id=F("id"),
        r_order_ref=Coalesce(NullIf(F("order_number"), Value("")), F("external_id")),
        r_external_id=F("external_id"),
        r_order_state=F("state"),
        r_warehouse_ref=F("warehouse_ref"),
        r_event_at=event,
        r_item_id=_NULL_BIG(),
        r_sku=_EMPTY(),
        r_storefront_sku=_EMPTY(),
        r_master_quantity=_NULL_INT(),
        r_storefront_quantity=_NULL_INT(),
        r_difference=_NULL_INT(),
        r_unit_cost=Value(None, output_field=IntegerField()),
        r_value=Value(None, output_field=IntegerField()),
    )
    qs = qs.order_by().annotate(**annotations)
    day = report.params.get("business_day")
    if day:  # a chosen business day: the orders whose event fell on that day (the hub's time zone)
        start, end = day_bounds(date.fromisoformat(day))
        qs = qs.filter(r_event_at__gte=start, r_event_at__lt=end)
    return qs.values(*annotations.keys())


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a business day in the hub's time zone (settings.TIME_ZONE)."""
    tz = timezone.get_current_timezone()
    start = datetime.combine(day, time.min, tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)


def shipped_not_dispatched(report: Report) -> int:
    """Storefront shows it fulfilled (shipped state in its payload, or a storefront-side fulfilment such as
    ship-from-store) while the warehouse/master has not closed it: no dispatch recorded and, for
    storefront-side fulfilments, not every one acknowledged by the master."""
    fulfilments = StorefrontFulfilment.objects.filter(order=OuterRef("pk"))
    unacked = fulfilments.filter(acknowledged_at__isnull=True)
    qs = (
        _with_shipped_flag(Order.objects.all())
        .annotate(
            f_any=Exists(fulfilments),
            f_open=Exists(unacked),
            f_at=Subquery(unacked.order_by("fulfilled_at").values("fulfilled_at")[:1]),
        )
        .filter(Q(sf_shipped=True) | Q(f_any=True))
        .filter(dispatched_at__isnull=True)
        .filter(Q(f_any=False) | Q(f_open=True))
        .exclude(state__in=[OrderState.CANCELLED, OrderState.DISPATCHED])
    )
    return _insert_select(_order_rows(report, qs, Coalesce(F("f_at"), F("notified_at"), F("updated_at"))))


def dispatched_not_shipped(report: Report, now=None) -> int:
    now = now or timezone.now()
    minutes = int(settings.HUB["DISPATCH_NOTIFY_MINUTES"])
    report.params["dispatch_notify_minutes"] = minutes
    cutoff = now - timedelta(minutes=minutes)
    qs = (
        _with_shipped_flag(Order.objects.all())
        .filter(dispatched_at__isnull=False, dispatched_at__lt=cutoff, sf_shipped=False)
        .exclude(state=OrderState.CANCELLED)
    )
    return _insert_select(_order_rows(report, qs, F("dispatched_at")))


def _ats_sql() -> tuple[str, list, str]:
    """The master ATS as SQL over every (channel, item) pair, and where it came from.

    Uses the stock engine's ATS statement (inventory.ats) so finance sees exactly the number the hub
    would push; if that module is unavailable, falls back to the last quantity the hub pushed and the
    storefront confirmed (``ChannelStock.confirmed_quantity``)."""
    try:
        from integration_hub.inventory import ats

        return ats._sql(None, None), ats._params(None, None), "inventory.ats"
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - stock engine missing or reshaped
        table = ChannelStock._meta.db_table
        return (
            f"SELECT channel_id, item_id, storefront_sku, confirmed_quantity FROM {table} "
            f"WHERE confirmed_quantity IS NOT NULL",
            [],
            "channel_stock.confirmed_quantity",
        )


def stock_drift(report: Report) -> int:
    ats_sql, ats_params, source = _ats_sql()
    report.params["ats_source"] = source
    t = {
        "row": connection.ops.quote_name(ReportRow._meta.db_table),
        "cs": ChannelStock._meta.db_table,
        "item": Item._meta.db_table,
        "channel": Channel._meta.db_table,
    }
    cols = ", ".join(connection.ops.quote_name(c) for c in ROW_COLUMNS)
    # A pair the hub has never pushed has no storefront quantity: it only counts when the master can
    # sell something (the storefront then shows nothing for stock that exists).
    sql = f"""
    WITH master(channel_id, item_id, storefront_sku, qty) AS ({ats_sql}),
    cmp AS (
        SELECT m.channel_id, m.item_id, m.storefront_sku, m.qty AS master_qty,
               COALESCE(cs.observed_quantity, cs.confirmed_quantity) AS sf_qty
          FROM master m
          LEFT JOIN {t['cs']} cs ON cs.channel_id = m.channel_id AND cs.item_id = m.item_id
    )
    INSERT INTO {t['row']} ({cols})
    SELECT %s, c.channel_id, ch.key, NULL, '', '', '', '', NULL, c.item_id, i.sku, c.storefront_sku,
           c.master_qty, c.sf_qty, COALESCE(c.sf_qty, 0) - c.master_qty, i.unit_cost,
           CASE WHEN i.unit_cost IS NULL THEN NULL ELSE (COALESCE(c.sf_qty, 0) - c.master_qty) * i.unit_cost END
      FROM cmp c
      JOIN {t['item']} i ON i.id = c.item_id
      JOIN {t['channel']} ch ON ch.id = c.channel_id
     WHERE (c.sf_qty IS NULL AND c.master_qty > 0) OR (c.sf_qty IS NOT NULL AND c.sf_qty <> c.master_qty)
    """
    with connection.cursor() as cur:
        cur.execute(sql, list(ats_params) + [report.pk])
        return max(cur.rowcount, 0)


BUILDERS = {
    ReportKind.SHIPPED_NOT_DISPATCHED: shipped_not_dispatched,
    ReportKind.DISPATCHED_NOT_SHIPPED: dispatched_not_shipped,
    ReportKind.STOCK_DRIFT: stock_drift,
}


SNAPSHOT_KINDS = (ReportKind.STOCK_DRIFT,)  # a picture of now: cannot be run for a past day


class ReportError(ValueError):
    """The report cannot be run as asked (message shown to the person)."""


def check_business_day(kind: str, day: date | None) -> None:
    today = timezone.localdate()
    if day is None or day == today:
        return
    if day > today:
        raise ReportError(f"{day.isoformat()} is in the future: choose today or a past business day.")
    if kind in SNAPSHOT_KINDS:
        raise ReportError(
            f"{ReportKind(kind).label} is a snapshot of the stock now: it can only be run for today "
            f"(past days: open that day's report in the list)."
        )


def _new_report(kind: str, trigger: str, user, run_date=None) -> Report:
    if kind not in BUILDERS:
        raise ValueError(f"unknown report kind {kind!r}")
    now = timezone.now()
    today = timezone.localdate(now)
    params = {"business_day": run_date.isoformat()} if run_date and run_date != today else {}
    return Report.objects.create(
        kind=kind,
        run_date=run_date or today,
        trigger=trigger,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        started_at=now,
        params=params,
    )


def queue_all(*, user=None, run_date: date | None = None) -> list[Report]:
    """ "Run all": every report kind that can be run for the day (for a past day, the order reports)."""
    kinds = [k for k in BUILDERS if not (run_date and run_date != timezone.localdate() and k in SNAPSHOT_KINDS)]
    return [queue_report(k, user=user, run_date=run_date) for k in kinds]


def queue_report(kind: str, *, user=None, run_date: date | None = None) -> Report:
    """On demand (pages and API): record the report now — status ``running`` until a worker has built it —
    and hand the work to ``reconciliation.run_report``, sent once this transaction commits. If the broker
    refuses the task the report is marked failed with the reason (never left running silently)."""
    check_business_day(kind, run_date)
    report = _new_report(kind, Report.Trigger.ON_DEMAND, user, run_date)

    def send():
        try:
            nudge.enqueue(
                "reconciliation.run_report",
                args=[kind],
                kwargs={"user_id": report.requested_by_id, "report_id": report.pk},
            )
        except Exception as exc:  # broker down or misconfigured
            log.exception("could not queue reconciliation report %s", report.pk)
            Report.objects.filter(pk=report.pk, status=Report.Status.RUNNING).update(
                status=Report.Status.FAILED,
                error=f"could not queue the report: {type(exc).__name__}: {exc}"[:2000],
                finished_at=timezone.now(),
            )

    transaction.on_commit(send)
    return report


def generate(
    kind: str,
    *,
    trigger: str = Report.Trigger.ON_DEMAND,
    user=None,
    run_date=None,
    report: Report | None = None,
    bar=None,
) -> Report:
    """Run one report now (``report``: the row :func:`queue_report` created, else a new one). The rows and the
    totals commit together; a failure leaves a FAILED report (with the error) and no partial rows.

    The dashboard shows it as a progress bar ``report:<id>`` (monitoring.progress): one step, the report being
    a single set-based statement, written before and after the transaction (inside it nobody else could see
    it) — three queries whatever the number of rows. ``bar``: a caller's tracker (:func:`generate_all`)
    used instead, advanced once when the report is done."""
    if report is None:
        report = _new_report(kind, trigger, user, run_date)
    own_bar = bar is None
    if own_bar:
        bar = progress.start(f"report:{report.pk}", f"Report: {ReportKind(kind).label}", total=1)
    try:
        with transaction.atomic():
            BUILDERS[kind](report)
            totals = ReportRow.objects.filter(report=report).aggregate(n=Count("id"), v=Sum("value"))
            report.row_count = totals["n"]
            report.total_value = totals["v"]
            report.status = Report.Status.DONE
            report.finished_at = timezone.now()
            report.save(update_fields=["row_count", "total_value", "status", "finished_at", "params"])
    except Exception as exc:
        log.exception("reconciliation report %s failed", kind)
        error = f"{type(exc).__name__}: {exc}"
        Report.objects.filter(pk=report.pk).update(
            status=Report.Status.FAILED, error=error[:2000], finished_at=timezone.now()
        )
        report.refresh_from_db()
        if own_bar:
            bar.finish(error=error)
        else:
            bar.advance(force=True)
        return report
    if own_bar:
        bar.advance()
        bar.finish()
    else:
        bar.advance(force=True)
    return report


def generate_all(*, trigger: str = Report.Trigger.SCHEDULE, user=None) -> list[Report]:
    """Every report, one after the other, as one dashboard bar ``reports:<trigger>`` (one step per report,
    written between reports); the bar ends failed naming the reports that failed, the others still run."""
    bar = progress.start(
        f"reports:{trigger}", f"Finance reports ({Report.Trigger(trigger).label})", total=len(BUILDERS)
    )
    try:
        reports = [generate(kind, trigger=trigger, user=user, bar=bar) for kind in BUILDERS]
    except BaseException as exc:
        bar.finish(error=str(exc) or type(exc).__name__)
        raise
    failed = [r.kind for r in reports if r.status == Report.Status.FAILED]
    bar.finish(error=f"failed: {', '.join(failed)}" if failed else "")
    return reports


STALE_RUNNING_HOURS = 6


def fail_stale(hours: int = STALE_RUNNING_HOURS) -> int:
    """Reports still ``running`` ``hours`` after they started lost their worker for good (acks_late brings a
    killed task back; a lost host or a purged queue does not): mark them failed so finance sees it and
    runs them again, instead of a report that says "running" for ever."""
    cutoff = timezone.now() - timedelta(hours=hours)
    return Report.objects.filter(status=Report.Status.RUNNING, started_at__lt=cutoff).update(
        status=Report.Status.FAILED,
        finished_at=timezone.now(),
        error=f"no worker finished this report within {hours} hours; run it again",
    )


def purge(keep_days: int = 90) -> int:
    """Delete reports older than ``keep_days`` (rows with one set-based DELETE, no per-row cascade)."""
    cutoff = timezone.now() - timedelta(days=keep_days)
    old = list(Report.objects.filter(started_at__lt=cutoff).values_list("pk", flat=True))
    if not old:
        return 0
    with transaction.atomic():
        ReportRow.objects.filter(report_id__in=old)._raw_delete(ReportRow.objects.db)
        Report.objects.filter(pk__in=old).delete()
    return len(old)


def latest_reports() -> dict:
    """The newest finished report of each kind (one query over the newest 50 runs)."""
    out = {}
    for r in Report.objects.filter(status=Report.Status.DONE).order_by("-started_at", "-id")[:50]:
        out.setdefault(r.kind, r)
    return out


# --- CSV -------------------------------------------------------------------------------------------
class _Echo:
    def write(self, value):
        return value


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """Neutralise spreadsheet formulas in text cells (CSV injection): SKUs and order ids come from
    external systems, and finance opens these files in Excel."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return safe_cell(value)
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral() else f"{value:f}".rstrip("0")
    if hasattr(value, "isoformat"):
        return (
            value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if getattr(value, "tzinfo", None)
            else value.isoformat()
        )
    return str(value)


SKU_COLUMNS = ("sku", "storefront_sku")
MONEY_COLUMNS = ("unit_cost", "value", "order_total")
EXTRA_HEADERS = {"channel_name": "channel name", "order_total": "order total", "currency": "currency"}


def excel_text(text: str) -> str:
    """A cell Excel keeps as text whatever it looks like (leading zeros, long digit runs, dates): the formula
    ``="…"`` whose only content is a string literal (quotes doubled), so nothing in it is evaluated."""
    return '="' + text.replace('"', '""') + '"' if text else ""


def csv_columns(report: Report) -> list[str]:
    """The export's columns: the report's own, the channel's name after its key, and money with its currency
    (order reports: the order total in the order's currency; the drift report: values at cost)."""
    columns = list(CSV_COLUMNS[ReportKind(report.kind)])
    columns.insert(columns.index("channel_key") + 1, "channel_name")
    columns += ["currency"] if report.kind in SNAPSHOT_KINDS else ["order_total", "currency"]
    return columns


def iter_values(report: Report, chunk_size: int = CSV_CHUNK) -> Iterator[list]:
    """The export's rows as typed values, in :func:`csv_columns` order, streamed: one server-side cursor read
    in ``chunk_size`` batches (plus one order look-up per batch for order reports). Money is a two-decimal
    :class:`Decimal` (or None), times are aware datetimes, SKUs and names are text. CSV and XLSX format these."""
    columns = csv_columns(report)
    db_columns = [c for c in columns if c in ROW_COLUMNS]
    if "event_at" not in db_columns and "minutes_overdue" in columns:
        db_columns.append("event_at")
    orders = "order_total" in columns
    if orders:
        db_columns.append("order_id")
    names = dict(Channel.objects.values_list("key", "name"))
    cost_currency = settings.HUB.get("COST_CURRENCY", "")
    reference = report.started_at
    limit = int(report.params.get("dispatch_notify_minutes", 0))
    rows = (
        ReportRow.objects.filter(report_id=report.pk)
        .order_by("id")
        .values_list(*db_columns)
        .iterator(chunk_size=chunk_size)
    )
    idx = {c: i for i, c in enumerate(db_columns)}
    while True:
        batch = list(itertools.islice(rows, chunk_size))
        if not batch:
            return
        totals = {}
        if orders:
            ids = {r[idx["order_id"]] for r in batch if r[idx["order_id"]]}
            totals = (
                {
                    pk: (cents, cur)
                    for pk, cents, cur in Order.objects.filter(pk__in=ids).values_list("pk", "total_cents", "currency")
                }
                if ids
                else {}
            )
        for row in batch:
            out = []
            total = totals.get(row[idx["order_id"]]) if orders else None
            for c in columns:
                if c == "minutes_overdue":
                    at = row[idx["event_at"]]
                    out.append(int((reference - at).total_seconds() // 60) - limit if at else None)
                elif c == "channel_name":
                    out.append(names.get(row[idx["channel_key"]], ""))
                elif c == "order_total":
                    out.append(money(Decimal(total[0]) / 100) if total and total[0] is not None else None)
                elif c == "currency":
                    out.append((total[1] if total else "") if orders else cost_currency)
                elif c in MONEY_COLUMNS:
                    out.append(money(row[idx[c]]))
                elif c in SKU_COLUMNS:
                    out.append(row[idx[c]] or "")
                else:
                    out.append(row[idx[c]])
            yield out


def money(value) -> Decimal | None:
    """Two decimals, half up (None stays None)."""
    if value is None or value == "":
        return None
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def column_headers(report: Report) -> list[str]:
    return [CSV_HEADERS.get(c) or EXTRA_HEADERS[c] for c in csv_columns(report)]


def iter_csv(report: Report, chunk_size: int = CSV_CHUNK, excel: bool = True) -> Iterator[str]:
    """CSV lines for a report, streamed (see :func:`iter_values`). ``excel``: a UTF-8 byte-order mark first
    (Excel in any locale then reads UTF-8, not the ANSI code page) and SKUs as text cells (leading zeros
    kept); else plain values."""
    columns = csv_columns(report)
    writer = csv.writer(_Echo())
    header = writer.writerow(column_headers(report))
    yield ("\ufeff" + header) if excel else header
    sku_at = {i for i, c in enumerate(columns) if c in SKU_COLUMNS}
    money_at = {i for i, c in enumerate(columns) if c in MONEY_COLUMNS}
    for values in iter_values(report, chunk_size):
        out = []
        for i, v in enumerate(values):
            if i in money_at:
                out.append("" if v is None else str(v))
            elif i in sku_at and excel:
                out.append(excel_text(v))
            else:
                out.append(_fmt(v))
        yield writer.writerow(out)


def csv_filename(report: Report) -> str:
    return f"{report.kind}-{report.run_date.isoformat()}-{report.pk}.csv"
