"""Reading tabular uploads (CSV / text / binary files) and writing their rows in bulk: the rules every import
shares — the SKU-mapping import (:mod:`integration_hub.catalog.mapping_import`) and the item import
(:mod:`integration_hub.catalog.item_import`).

* **Reading.** A file is read as a stream, never whole: :func:`text_stream` picks the encoding (utf-8 with or
  without BOM, else cp1252, else latin-1) by one chunked pass; :func:`open_reader` sniffs the dialect and
  normalises the header (trimmed, lower-cased, aliases) and refuses a file without its required columns;
  :func:`read_rows` yields each readable non-blank row with its line number and rejects unreadable, short and
  over-long rows (a quoted value spanning lines says so), counting every row toward the import's cap.
* **Reporting.** :class:`ImportResult` counts rejected rows and keeps the ``MAX_KEPT_ERRORS`` lowest lines.
* **Writing.** :func:`write_chunk` bulk-writes a chunk in one savepoint and, if the database refuses it,
  row by row so the good rows are kept.
"""

from __future__ import annotations

import codecs
import csv
import heapq
import io
import itertools
import re
from dataclasses import dataclass, field
from typing import IO

from django.db import DatabaseError, transaction

MAX_KEPT_ERRORS = 1_000  # rejected rows listed (page and error report); error_count counts them all
KEPT_CELL = 200  # characters of each value kept with a rejected row (the report shows three columns)
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f"}
WHOLE = re.compile(r"^[0-9]+$")  # ASCII digits only: str.isdigit() accepts '²', which int() refuses


@dataclass
class RowError:
    line: int
    reason: str
    row: dict


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error_count: int = 0  # every rejected row; ``errors`` keeps the first MAX_KEPT_ERRORS of them
    pushes_queued: int = 0
    exceptions_acknowledged: int = 0  # until the re-queued stock push confirms (which resolves them)
    fatal: str = ""
    dry_run: bool = False  # nothing was saved: the counts say what the import would do
    _kept: list = field(default_factory=list, repr=False)  # max-heap by line: (-line, seq, RowError)
    _seq: itertools.count = field(default_factory=itertools.count, repr=False)
    columns = ()  # not a field: the values kept with a rejected row (each import's result class names its columns)

    @property
    def ok(self) -> int:
        return self.created + self.updated + self.unchanged

    def reject(self, line: int, reason: str, row: dict) -> None:
        """Count a rejected row; keep it (trimmed) if it is among the MAX_KEPT_ERRORS lowest lines."""
        self.error_count += 1
        if len(self._kept) >= MAX_KEPT_ERRORS and line >= -self._kept[0][0]:
            return
        kept = {k: (v or "")[:KEPT_CELL] for k, v in row.items() if k in self.columns}
        heapq.heappush(self._kept, (-line, next(self._seq), RowError(line, reason, kept)))
        if len(self._kept) > MAX_KEPT_ERRORS:
            heapq.heappop(self._kept)

    @property
    def errors(self) -> list[RowError]:
        """The kept rejected rows, by line."""
        return [e for _, _, e in sorted(self._kept, key=lambda t: (-t[0], t[1]))]

    @property
    def errors_truncated(self) -> int:
        """Rejected rows counted but not listed."""
        return self.error_count - len(self._kept)


def write_chunk(new: list, changed: list, bulk, refused) -> tuple[list, list]:
    """Bulk-write a chunk of model rows with ``bulk(new, changed)`` in one savepoint. If the database refuses any of
    them, write them one savepoint each instead so the good rows are kept; ``refused(row, exc)`` records each refused
    one. Returns the (created, updated) rows actually written. Shared by the mapping and the item imports."""
    try:
        with transaction.atomic():
            bulk(new, changed)
        return new, changed
    except DatabaseError:
        pass
    written_new, written_changed = [], []
    new_ids = {id(m) for m in new}
    for m in new + changed:
        is_new = id(m) in new_ids
        if is_new:
            m.pk, m._state.adding = None, True  # the failed bulk insert may have handed out ids it rolled back
        try:
            with transaction.atomic():
                bulk(*(([m], []) if is_new else ([], [m])))
        except DatabaseError as exc:
            refused(m, exc)
            continue
        (written_new if is_new else written_changed).append(m)
    return written_new, written_changed


def binary(data) -> IO[bytes]:
    if isinstance(data, (bytes, bytearray)):
        return io.BytesIO(data)
    return data  # a binary file: an upload (Django spools big ones to disk), an open file


def _encoding(f: IO[bytes]) -> str:
    """utf-8 (BOM allowed), else cp1252, else latin-1 (which decodes anything) — decided by reading the
    file through once in chunks, so the choice is as before without holding the file in memory."""
    for enc in ("utf-8-sig", "cp1252"):
        f.seek(0)
        decoder = codecs.getincrementaldecoder(enc)()
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        f.seek(0)
        return enc
    f.seek(0)
    return "latin-1"


def text_stream(data: bytes | str | IO[bytes]) -> tuple[IO[str], str]:
    """(a text stream of the CSV, a sample of its start for the dialect sniffer)."""
    if isinstance(data, str):
        return io.StringIO(data, newline=""), data[:4096]
    f = binary(data)
    enc = _encoding(f)
    sample = f.read(16384).decode(enc, "ignore")[:4096]
    f.seek(0)
    return io.TextIOWrapper(f, encoding=enc, newline=""), sample


def read_rows(reader, result: ImportResult, columns, max_rows: int):
    """Yield (line, row) for each non-blank row the reader can read; rows it cannot read (csv.Error, e.g. a
    value over the field limit) and rows with more values than columns are rejected here — and counted as
    rows too. Stops (fatal) after ``max_rows`` rows. ``columns``: the values kept of each row."""
    seen = 0
    width = len(reader.fieldnames or [])
    end = reader.reader.line_num  # the header's last line
    while True:
        start = end + 1
        try:
            raw = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = (
                f"a value is longer than {csv.field_size_limit():,} characters"
                if "field limit" in str(exc)
                else f"unreadable CSV row: {exc}"
            )
            row = {}
        else:
            if not any((v or "").strip() for k, v in raw.items() if k) and None not in raw:
                end = reader.reader.line_num
                continue  # a blank line
            row = {k: (raw.get(k) or "").strip() for k in columns if k in raw}  # other columns are ignored
            given = sum(1 for k, v in raw.items() if k is not None and v is not None)
            reason = (
                "more values than columns"
                if None in raw
                else f"only {given} of {width} values (a short row is not imported: add the missing separators)"
                if given < width
                else ""
            )
        seen += 1
        if seen > max_rows:
            result.fatal = f"more than {max_rows:,} rows: split the file"
            return
        end = reader.reader.line_num  # DictReader's own line_num is not updated when a row raises
        line = min(start, end)
        if start < end and reason:  # one row over several physical lines: a quoted value with line breaks
            broken = [k for k, v in row.items() if "\n" in v or "\r" in v]
            reason = "; ".join(
                x
                for x in (
                    reason,
                    f"{', '.join(broken)} contains a line break (an unbalanced quote?)" if broken else "",
                    f"the row spans lines {start}–{end}",
                )
                if x
            )
        elif start < end:
            row["_lines"] = f"{start}–{end}"
        if reason:
            result.reject(line, reason, row)
        else:
            yield line, row


def open_reader(stream: IO[str], sample: str, result: ImportResult, required, aliases: dict | None = None):
    """A DictReader over ``stream`` (dialect sniffed from ``sample``) whose field names are the header's, trimmed,
    lower-cased and renamed by ``aliases``; None (with ``result.fatal`` set) when the header cannot be read or
    lacks a ``required`` column."""
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(stream, dialect=dialect)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        result.fatal = f"the header row cannot be read: {exc}"
        return None
    headers = [h.strip().lower() for h in (fieldnames or [])]
    headers = [(aliases or {}).get(h, h) for h in headers]
    missing = [c for c in required if c not in headers]
    if missing:
        result.fatal = f"missing column(s): {', '.join(missing)} (found: {', '.join(headers)[:500] or 'nothing'})"
        return None
    reader.fieldnames = headers
    return reader
