"""CSV import of SKU mappings with a per-row error report.

Columns (header row required; order free; extra columns ignored):
  master_sku        required — an existing Item.sku
  storefront_sku    required
  channel           optional — channel key; empty = every channel
  storefront_product, safety_buffer (whole number 0..1,000,000), active (1/0, true/false, yes/no; default true)

Broken rows are rejected with a reason and line number; good rows are kept — including a row the database
itself refuses (the bulk write then falls back to one savepoint per row). A row whose
(channel, storefront_sku) is already mapped updates that mapping (repoint/buffer/active). Writes are bulk
(one lookup per referenced table, bulk_create + bulk_update in batches) and audited with
:func:`core.audit.record_many` (source ``csv-import``). Afterwards the affected items' stock is re-queued
for push and the SKU exceptions the new mappings fix are acknowledged (the confirmed push resolves them).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from django.db import DatabaseError, IntegrityError, transaction

from exceptions_app import triage
from integration_hub.catalog.models import Item, SkuMapping
from integration_hub.core import audit
from integration_hub.core.models import Channel
from integration_hub.reconciliation.services import safe_cell

REQUIRED = ("master_sku", "storefront_sku")
OPTIONAL = ("channel", "storefront_product", "safety_buffer", "active")
MAX_ROWS = 200_000
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f"}


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
    errors: list[RowError] = field(default_factory=list)
    pushes_queued: int = 0
    exceptions_acknowledged: int = 0  # until the re-queued stock push confirms (which resolves them)
    fatal: str = ""

    @property
    def ok(self) -> int:
        return self.created + self.updated + self.unchanged


FIELDS = ("item", "storefront_product", "safety_buffer", "active")
WHOLE = re.compile(r"^[0-9]+$")  # ASCII digits only: str.isdigit() accepts '²', which int() refuses
MAX_SAFETY_BUFFER = 1_000_000  # units held back per SKU; anything larger is a typo, and the column is 32-bit


def _max_length(name: str) -> int:
    return SkuMapping._meta.get_field(name).max_length


def _validate(r: dict, items: dict, channels: dict) -> tuple[str | None, dict]:
    """(reason the row is refused, or None; the model values) — every check the database would make, so a
    bad row is reported with its line instead of failing the write."""
    sku, master = r.get("storefront_sku", ""), r.get("master_sku", "")
    ch_key = r.get("channel", "")
    if not master:
        return "master_sku is empty", {}
    if not sku:
        return "storefront_sku is empty", {}
    for name, value in (("storefront_sku", sku), ("storefront_product", r.get("storefront_product", ""))):
        if len(value) > _max_length(name):
            return f"{name} is longer than {_max_length(name)} characters", {}
    if master not in items:
        return f"unknown master SKU {master!r}", {}
    if ch_key and ch_key not in channels:
        return f"unknown channel {ch_key!r}", {}
    buf = r.get("safety_buffer", "")
    if buf and (not WHOLE.match(buf) or int(buf) > MAX_SAFETY_BUFFER):
        return f"safety_buffer {buf!r} is not a whole number from 0 to {MAX_SAFETY_BUFFER}", {}
    act = r.get("active", "").lower()
    if act and act not in TRUE | FALSE:
        return f"active {r.get('active')!r} is not yes/no", {}
    return None, {"item": items[master], "channel": channels.get(ch_key) if ch_key else None, "storefront_sku": sku,
                  "storefront_product": r.get("storefront_product", ""), "safety_buffer": int(buf) if buf else None,
                  "active": act not in FALSE}


def _existing(skus) -> dict:
    """{(channel id, storefront sku): mapping} already in the database for these storefront SKUs."""
    return {(m.channel_id, m.storefront_sku): m
            for m in SkuMapping.objects.filter(storefront_sku__in=skus).select_related("item", "channel")}


def _bulk(new: list, changed: list) -> None:
    SkuMapping.objects.bulk_create(new, batch_size=1000)
    if new and new[0].pk is None:  # backends without RETURNING ids
        pk_of = {(m.channel_id, m.storefront_sku): m.pk
                 for m in SkuMapping.objects.filter(storefront_sku__in=[m.storefront_sku for m in new])}
        for m in new:
            m.pk = pk_of[(m.channel_id, m.storefront_sku)]
    if changed:
        SkuMapping.objects.bulk_update(changed, list(FIELDS) + ["updated_at"], batch_size=1000)


def _write(new: list, changed: list, line_of: dict, result: ImportResult) -> tuple[list, list]:
    """Bulk-write the rows (one savepoint). If the database refuses any of them (a mapping created by someone
    else meanwhile, a value the checks above missed), write them one savepoint each instead so the good rows
    are kept and each refused row becomes a RowError. Returns the (created, updated) rows actually written."""
    try:
        with transaction.atomic():
            _bulk(new, changed)
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
                _bulk(*(([m], []) if is_new else ([], [m])))
        except DatabaseError as exc:
            line, row = line_of[id(m)]
            reason = ("already mapped (created while this file was imported): import the row again to update it"
                      if isinstance(exc, IntegrityError) else f"refused by the database: {exc}")
            result.errors.append(RowError(line, reason, row))
            continue
        (written_new if is_new else written_changed).append(m)
    result.errors.sort(key=lambda e: e.line)
    return written_new, written_changed


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def import_sku_mappings(data: bytes | str, user=None) -> ImportResult:
    result = ImportResult()
    text = _decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    headers = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in headers]
    if missing:
        result.fatal = f"missing column(s): {', '.join(missing)} (found: {', '.join(headers) or 'nothing'})"
        return result
    reader.fieldnames = headers

    rows: list[tuple[int, dict]] = []
    for raw in reader:
        line = reader.line_num
        row = {k: (v or "").strip() for k, v in raw.items() if k}
        if not any(row.values()):
            continue
        if None in raw:
            result.errors.append(RowError(line, "more values than columns", row))
            continue
        rows.append((line, row))
        if len(rows) > MAX_ROWS:
            result.fatal = f"more than {MAX_ROWS} rows: split the file"
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
            result.errors.append(RowError(line, reason, r))
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
        # re-queue stock for the affected items (per channel, or all channels for global mappings)
        by_channel: dict = {}
        for m in touched:
            by_channel.setdefault(m.channel_id, set()).add(m.item_id)
        for channel_id, item_ids in by_channel.items():
            result.pushes_queued += triage.requeue_stock(item_ids, [channel_id] if channel_id else None,
                                                         reason="sku mappings imported")
        all_keys = list(channels)
        key_of = {ch.pk: key for key, ch in channels.items()}
        keys = [k for m in touched if m.active
                for k in triage.sku_fix_keys([m.storefront_sku], [key_of[m.channel_id]] if m.channel_id else all_keys)]
        result.exceptions_acknowledged = triage.acknowledge_sku_fix(keys, user, "mapped by CSV import")
    return result


def error_report_csv(result: ImportResult) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["line", "reason", "master_sku", "storefront_sku", "channel"])
    for e in result.errors:
        w.writerow([e.line, safe_cell(e.reason), *(safe_cell(e.row.get(k, "")) for k in ("master_sku", "storefront_sku", "channel"))])
    return out.getvalue()
