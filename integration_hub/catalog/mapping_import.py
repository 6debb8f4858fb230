"""CSV import of SKU mappings with a per-row error report (the reading, reporting and bulk-write rules every import
shares are :mod:`integration_hub.core.tabular`'s).

Columns (header row required; order free; extra columns ignored):
  master_sku        required — an existing Item.sku
  storefront_sku    required
  channel           optional — channel key; empty = every channel
  storefront_product, safety_buffer (whole number 0..1,000,000), active (1/0, true/false, yes/no; default true)

Broken rows are rejected with a reason and line number; good rows are kept — including a row the database
itself refuses (the bulk write then falls back to one savepoint per row). A row the CSV reader itself cannot
read (a value over the reader's field limit of 131,072 characters) is such a rejected row too, and so is a
value with a NUL character (PostgreSQL refuses those).

Limits (memory stays flat whatever the upload): the file is read as a stream (never whole into memory; the
view passes the uploaded file, which Django spools to disk above 2.5 MB); every non-blank row, good or bad,
counts toward ``MAX_ROWS`` (more is fatal: nothing is imported, split the file); only the first
``MAX_KEPT_ERRORS`` rejected rows (lowest line numbers) are kept for the page and the error report, with
``error_count`` saying how many there were in all. A row whose
(channel, storefront_sku) is already mapped updates that mapping (repoint/buffer/active). Writes are bulk
(one lookup per referenced table, bulk_create + bulk_update in batches) and audited with
:func:`core.audit.record_many` (source ``csv-import``). Afterwards the affected items' stock is re-queued
for push and the SKU exceptions the new mappings fix are acknowledged (the confirmed push resolves them).
"""

from __future__ import annotations

import csv
import io
from typing import IO

from django.db import IntegrityError, transaction

from exceptions_app import triage
from integration_hub.catalog.mapping_changes import mapping_changed
from integration_hub.catalog.models import Item, SkuMapping
from integration_hub.catalog.validation import sku_problem
from integration_hub.core import audit, tabular
from integration_hub.core.limits import MAX_SAFETY_BUFFER
from integration_hub.core.models import Channel
from integration_hub.core.tabular import FALSE, TRUE, WHOLE, write_chunk
from integration_hub.reconciliation.services import safe_cell

REQUIRED = ("master_sku", "storefront_sku")
OPTIONAL = ("channel", "storefront_product", "safety_buffer", "active")
COLUMNS = (*REQUIRED, *OPTIONAL)
MAX_ROWS = 200_000  # every non-blank row, good or bad


class ImportResult(tabular.ImportResult):
    columns = COLUMNS


FIELDS = ("item", "storefront_product", "safety_buffer", "active")


def _max_length(name: str) -> int:
    return SkuMapping._meta.get_field(name).max_length


def _validate(r: dict, items: dict, channels: dict) -> tuple[str | None, dict]:
    """(reason the row is refused, or None; the model values) — every check the database would make, so a
    bad row is reported with its line instead of failing the write."""
    sku, master = r.get("storefront_sku", ""), r.get("master_sku", "")
    ch_key = r.get("channel", "")
    problems: list[str] = []  # every problem of the row, so one fix-and-retry is enough
    nul = next((k for k, v in r.items() if "\x00" in v), None)
    if nul:  # PostgreSQL refuses NUL in text (and its driver raises before the database sees the row)
        problems.append(f"{nul} contains a NUL character")
    broken = [k for k, v in r.items() if k != "_lines" and ("\n" in v or "\r" in v)]
    if broken:  # a value spanning lines is an unbalanced quote swallowing the next row, never a SKU
        problems.append(
            f"{', '.join(broken)} contains a line break (an unbalanced quote?)"
            + (f"; the row spans lines {r['_lines']}" if r.get("_lines") else "")
        )
    if not master:
        problems.append("master_sku is empty")
    elif master not in items:
        problems.append(f"unknown master SKU {master!r}")
    if not sku:
        problems.append("storefront_sku is empty")
    elif not broken and not nul and sku_problem(sku):
        problems.append(f"storefront_sku {sku_problem(sku)}")
    for name, value in (("storefront_sku", sku), ("storefront_product", r.get("storefront_product", ""))):
        if len(value) > _max_length(name):
            problems.append(f"{name} is longer than {_max_length(name)} characters")
    if ch_key and ch_key not in channels:
        problems.append(f"unknown channel {ch_key!r}")
    buf = r.get("safety_buffer", "")
    if buf and (not WHOLE.match(buf) or int(buf) > MAX_SAFETY_BUFFER):
        problems.append(f"safety_buffer {buf!r} is not a whole number from 0 to {MAX_SAFETY_BUFFER}")
    act = r.get("active", "").lower()
    if act and act not in TRUE | FALSE:
        problems.append(f"active {r.get('active')!r} is not yes/no")
    if problems:
        return "; ".join(problems), {}
    return None, {
        "item": items[master],
        "channel": channels.get(ch_key) if ch_key else None,
        "storefront_sku": sku,
        "storefront_product": r.get("storefront_product", ""),
        "safety_buffer": int(buf) if buf else None,
        "active": act not in FALSE,
    }


def _existing(skus) -> dict:
    """{(channel id, storefront sku): mapping} already in the database for these storefront SKUs."""
    return {
        (m.channel_id, m.storefront_sku): m
        for m in SkuMapping.objects.filter(storefront_sku__in=skus).select_related("item", "channel")
    }


def _bulk(new: list, changed: list) -> None:
    SkuMapping.objects.bulk_create(new, batch_size=1000)
    if new and new[0].pk is None:  # backends without RETURNING ids
        pk_of = {
            (m.channel_id, m.storefront_sku): m.pk
            for m in SkuMapping.objects.filter(storefront_sku__in=[m.storefront_sku for m in new])
        }
        for m in new:
            m.pk = pk_of[(m.channel_id, m.storefront_sku)]
    if changed:
        SkuMapping.objects.bulk_update(changed, list(FIELDS) + ["updated_at"], batch_size=1000)


def _write(new: list, changed: list, line_of: dict, result: ImportResult) -> tuple[list, list]:
    """Bulk-write the rows (:func:`write_chunk`); a refused row (a mapping created by someone else meanwhile, a
    value the checks above missed) becomes a RowError."""

    def refused(m, exc):
        line, row = line_of[id(m)]
        reason = (
            "already mapped (created while this file was imported): import the row again to update it"
            if isinstance(exc, IntegrityError)
            else f"refused by the database: {exc}"
        )
        result.reject(line, reason, row)

    return write_chunk(new, changed, _bulk, refused)


def import_sku_mappings(data: bytes | str | IO[bytes], user=None, dry_run: bool = False) -> ImportResult:
    """Import a CSV given as text, bytes or a binary file (read as a stream; an upload is passed as is).
    ``dry_run``: every check and write runs as for real, then everything is rolled back — the result says what
    the import would do."""
    result = ImportResult(dry_run=dry_run)
    stream, sample = tabular.text_stream(data)
    try:
        with transaction.atomic():
            _import(stream, sample, result, user)
            if dry_run:
                transaction.set_rollback(True)
        return result
    finally:
        if isinstance(stream, io.TextIOWrapper):
            stream.detach()  # the caller's file stays open (and is the caller's to close)


def _import(stream: IO[str], sample: str, result: ImportResult, user) -> ImportResult:
    reader = tabular.open_reader(stream, sample, result, REQUIRED)
    if reader is None:
        return result

    rows: list[tuple[int, dict]] = list(tabular.read_rows(reader, result, COLUMNS, MAX_ROWS))
    if result.fatal:
        return result

    items = {i.sku: i for i in Item.objects.filter(sku__in={r["master_sku"] for _, r in rows if r.get("master_sku")})}
    channels = {c.key: c for c in Channel.objects.all()}

    parsed: list[tuple[int, dict, dict]] = []
    seen: dict[tuple, int] = {}
    for line, r in rows:
        reason, values = _validate(r, items, channels)
        if reason is None:
            key = (r.get("channel", ""), values["storefront_sku"])
            if key in seen:
                reason = f"duplicate of line {seen[key]} (same channel and storefront SKU)"
            else:
                seen[key] = line
        if reason:
            result.reject(line, reason, r)
        else:
            parsed.append((line, r, values))

    if not parsed:
        return result

    skus = {v["storefront_sku"] for _, _, v in parsed}
    existing = _existing(skus)
    new, changed, befores = [], [], {}
    line_of: dict[int, tuple[int, dict]] = {}  # id(mapping) -> (line, row), to report a row the database refuses
    for line, r, v in parsed:
        ch = v["channel"]
        m = existing.get((ch.pk if ch else None, v["storefront_sku"]))
        if m is None:
            m = SkuMapping(channel=ch, **{k: v[k] for k in ("item", "storefront_sku", *FIELDS[1:])})
            new.append(m)
        elif any(getattr(m, f) != v[f] for f in FIELDS):
            befores[m.pk] = audit.snapshot(m)
            for f in FIELDS:
                setattr(m, f, v[f])
            changed.append(m)
        else:
            result.unchanged += 1
            continue
        line_of[id(m)] = (line, r)

    with audit.acting_as(user, "csv-import"), transaction.atomic():
        new, changed = _write(new, changed, line_of, result)
        audit.record_many(new, "create", user=user, source="csv-import")
        audit.record_many(changed, "update", user=user, source="csv-import", befores=befores)
        result.created, result.updated = len(new), len(changed)
        touched = new + changed
        # bulk writes send no signals: re-queue stock for the affected items here (per channel, or all channels
        # for global mappings) — the one "mapping changed" entry point, stock only (as before, no held-order re-check)
        by_channel: dict = {}
        for m in touched:
            by_channel.setdefault(m.channel_id, set()).add(m.item_id)
        for channel_id, item_ids in by_channel.items():
            result.pushes_queued += mapping_changed(
                item_ids, [channel_id] if channel_id else None, "sku mappings imported"
            ).pushes
        all_keys = list(channels)
        key_of = {ch.pk: key for key, ch in channels.items()}
        keys = [
            k
            for m in touched
            if m.active
            for k in triage.sku_fix_keys([m.storefront_sku], [key_of[m.channel_id]] if m.channel_id else all_keys)
        ]
        result.exceptions_acknowledged = triage.acknowledge_sku_fix(keys, user, "mapped by CSV import")
    return result


def error_report_csv(result: ImportResult) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["line", "reason", "master_sku", "storefront_sku", "channel"])
    if result.fatal:
        w.writerow(["", safe_cell(f"nothing imported: {result.fatal}"), "", "", ""])
    for e in result.errors:
        w.writerow(
            [
                e.line,
                safe_cell(e.reason),
                *(safe_cell(e.row.get(k, "")) for k in ("master_sku", "storefront_sku", "channel")),
            ]
        )
    if result.errors_truncated:
        more = (
            f"… and {result.errors_truncated:,} more rejected rows not listed ({result.error_count:,} in all; "
            f"the first {tabular.MAX_KEPT_ERRORS:,} are above)"
        )
        w.writerow(["", more, "", "", ""])
    return out.getvalue()
