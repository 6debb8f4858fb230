"""A report as an Excel workbook (XLSX), written with XlsxWriter in ``constant_memory`` mode: each row is
flushed to a temporary file as soon as it is written, so a million-row report never sits in memory; the
finished file is then streamed to the browser (or attached to an e-mail).

Cells are typed, not guessed (https://xlsxwriter.readthedocs.io/worksheet.html): SKUs and order numbers are
written as strings (``write_string``, text format ``@``) so leading zeros stay; money is a number with the
``0.00`` format next to its currency column; times are date-times (UTC). XlsxWriter never evaluates a
string written with ``write_string``, so a SKU starting with ``=`` stays text (no formula injection).

A worksheet holds at most 1,048,576 rows (Excel's limit): longer reports continue on further sheets, each
with the header row.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import xlsxwriter

from . import services
from .models import Report

EXCEL_MAX_ROWS = 1_048_576
TEXT_COLUMNS = {
    "sku",
    "storefront_sku",
    "order_ref",
    "external_id",
    "warehouse_ref",
    "channel_key",
    "channel_name",
    "currency",
    "order_state",
}
WIDTHS = {"event_at": 20, "order_ref": 16, "external_id": 22, "sku": 16, "storefront_sku": 16, "channel_name": 18}


def filename(report: Report) -> str:
    return services.csv_filename(report).rsplit(".", 1)[0] + ".xlsx"


def write(report: Report, out, *, rows_per_sheet: int = EXCEL_MAX_ROWS, chunk_size: int = services.CSV_CHUNK) -> int:
    """Write ``report`` as XLSX to ``out`` (a path or a binary file object). Returns the data rows written."""
    columns = services.csv_columns(report)
    headers = services.column_headers(report)
    wb = xlsxwriter.Workbook(
        out,
        {
            "constant_memory": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "remove_timezone": True,
        },
    )
    bold = wb.add_format({"bold": True})
    text = wb.add_format({"num_format": "@"})
    money = wb.add_format({"num_format": "0.00"})
    when = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    kinds = [
        "money"
        if c in services.MONEY_COLUMNS
        else "text"
        if c in TEXT_COLUMNS
        else "when"
        if c == "event_at"
        else "plain"
        for c in columns
    ]
    sheet_no = 0

    def new_sheet():
        nonlocal sheet_no
        sheet_no += 1
        ws = wb.add_worksheet(report.kind[:25] if sheet_no == 1 else f"{report.kind[:22]} {sheet_no}")
        for i, c in enumerate(columns):
            fmt = text if kinds[i] == "text" else money if kinds[i] == "money" else when if kinds[i] == "when" else None
            ws.set_column(i, i, WIDTHS.get(c, max(12, len(headers[i]) + 2)), fmt)
        for i, h in enumerate(headers):
            ws.write_string(0, i, h, bold)
        ws.freeze_panes(1, 0)
        return ws

    ws = new_sheet()
    r = 0  # data rows on this sheet
    n = 0
    for values in services.iter_values(report, chunk_size):
        if r + 1 >= rows_per_sheet:
            ws, r = new_sheet(), 0
        r += 1
        n += 1
        for i, v in enumerate(values):
            if v is None or v == "":
                continue
            kind = kinds[i]
            if kind == "money":
                ws.write_number(r, i, float(v), money)
            elif kind == "text":
                ws.write_string(r, i, str(v), text)
            elif isinstance(v, datetime):
                ws.write_datetime(r, i, v.astimezone(dt_timezone.utc).replace(tzinfo=None) if v.tzinfo else v, when)
            elif isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
                ws.write_number(r, i, float(v))
            else:
                ws.write_string(r, i, str(v))
    wb.close()
    return n


def spooled(report: Report, **kwargs):
    """The workbook in a temporary file (on disk past 8 MiB), rewound, ready to stream or read."""
    f = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    write(report, f, **kwargs)
    f.seek(0)
    return f
