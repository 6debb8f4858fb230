"""CSV import of SKU mappings with a per-row error report.

Columns (header row required; order free; extra columns ignored):
  master_sku        required — an existing Item.sku
  storefront_sku    required
  channel           optional — channel key; empty = every channel
  storefront_product, safety_buffer (integer >= 0), active (1/0, true/false, yes/no; default true)

Broken rows are rejected with a reason and line number; good rows are kept. A row whose
(channel, storefront_sku) is already mapped updates that mapping (repoint/buffer/active). Writes are bulk
(one lookup per referenced table, bulk_create + bulk_update in batches) and audited with
:func:`core.audit.record_many` (source ``csv-import``). Afterwards the affected items' stock is re-queued
for push and the SKU exceptions the new mappings fix are resolved.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.db import transaction

from exceptions_app import services as exc_services
from exceptions_app import triage
from exceptions_app.models import Kind
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
    exceptions_resolved: int = 0
    fatal: str = ""

    @property
    def ok(self) -> int:
        return self.created + self.updated + self.unchanged


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
        reason = None
        sku, master = r.get("storefront_sku", ""), r.get("master_sku", "")
        ch_key = r.get("channel", "")
        values = {}
        if not master:
            reason = "master_sku is empty"
        elif not sku:
            reason = "storefront_sku is empty"
        elif len(sku) > 100:
            reason = "storefront_sku is longer than 100 characters"
        elif master not in items:
            reason = f"unknown master SKU {master!r}"
        elif ch_key and ch_key not in channels:
            reason = f"unknown channel {ch_key!r}"
        else:
            values = {"item": items[master], "channel": channels.get(ch_key) if ch_key else None, "storefront_sku": sku,
                      "storefront_product": r.get("storefront_product", "")[:200]}
            buf = r.get("safety_buffer", "")
            if buf:
                if not buf.isdigit():
                    reason = f"safety_buffer {buf!r} is not a whole number >= 0"
                else:
                    values["safety_buffer"] = int(buf)
            else:
                values["safety_buffer"] = None
            act = r.get("active", "").lower()
            if act and act not in TRUE | FALSE:
                reason = reason or f"active {r.get('active')!r} is not yes/no"
            values["active"] = act not in FALSE
            key = (ch_key, sku)
            if reason is None and key in seen:
                reason = f"duplicate of line {seen[key]} (same channel and storefront SKU)"
            elif reason is None:
                seen[key] = line
        if reason:
            result.errors.append(RowError(line, reason, r))
        else:
            parsed.append((line, r, values))

    if not parsed:
        return result

    skus = {v["storefront_sku"] for _, _, v in parsed}
    existing = {(m.channel_id, m.storefront_sku): m
                for m in SkuMapping.objects.filter(storefront_sku__in=skus).select_related("item", "channel")}
    new, changed, befores = [], [], {}
    fields = ("item", "storefront_product", "safety_buffer", "active")
    for line, r, v in parsed:
        ch = v["channel"]
        m = existing.get((ch.pk if ch else None, v["storefront_sku"]))
        if m is None:
            new.append(SkuMapping(channel=ch, **{k: v[k] for k in ("item", "storefront_sku", *fields[1:])}))
        elif any(getattr(m, f) != v[f] for f in fields):
            befores[m.pk] = audit.snapshot(m)
            for f in fields:
                setattr(m, f, v[f])
            changed.append(m)
        else:
            result.unchanged += 1

    with audit.acting_as(user, "csv-import"), transaction.atomic():
        SkuMapping.objects.bulk_create(new, batch_size=1000)
        if new and new[0].pk is None:
            pk_of = {(m.channel_id, m.storefront_sku): m.pk for m in SkuMapping.objects.filter(storefront_sku__in=[m.storefront_sku for m in new])}
            for m in new:
                m.pk = pk_of[(m.channel_id, m.storefront_sku)]
        if changed:
            SkuMapping.objects.bulk_update(changed, list(fields) + ["updated_at"], batch_size=1000)
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
        keys = []
        all_keys = list(channels)
        key_of = {ch.pk: key for key, ch in channels.items()}
        for m in touched:
            if not m.active:
                continue
            chs = [key_of[m.channel_id]] if m.channel_id else all_keys
            for ck in chs:
                keys += [exc_services.make_key(Kind.SKU_MISMATCH, ck, m.storefront_sku),
                         exc_services.make_key(Kind.UNKNOWN_SKU, ck, m.storefront_sku)]
        who = getattr(user, "username", "") or "system"
        result.exceptions_resolved = exc_services.clear(keys, reason=f"mapped by CSV import ({who}); stock push queued")
    return result


def error_report_csv(result: ImportResult) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["line", "reason", "master_sku", "storefront_sku", "channel"])
    for e in result.errors:
        w.writerow([e.line, safe_cell(e.reason), *(safe_cell(e.row.get(k, "")) for k in ("master_sku", "storefront_sku", "channel"))])
    return out.getvalue()
