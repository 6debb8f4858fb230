"""Streaming CSV / XLSX import of the item master, with the mapping import's per-row error report.

Columns (header row required; order free; extra columns ignored; aliases in ``ALIASES``):
  sku                 required — the master SKU (format: :class:`.item_validation.SkuRules` of ``connection``)
  name, parent_sku (style), size, colour, barcode (GTIN-8/12/13/14 with a valid check digit),
  weight + weight_unit (positive, g/kg/lb/oz), unit_cost (non-negative decimal),
  bundle_components   ``SKU:qty|SKU:qty`` — the item becomes a bundle of those existing (or earlier in the file)
                      non-bundle items; ``-`` makes a bundle a plain item again
  active              1/0, true/false, yes/no
  storefront_sku      optional — the SKU the storefronts sell it as: a global SKU mapping is created when that
                      storefront SKU is not mapped yet (one mapped to another item is a row error)
A column that is not in the file leaves that field alone; an empty cell clears it (``size``/``colour``
remove the attribute).

Rules shared with :mod:`integration_hub.core.tabular` (its reader, row splitter, result and report
helpers are reused): every problem of a row is reported at once, with its line; rejected rows are listed in
file order (the first ``MAX_KEPT_ERRORS``); good rows are kept, a row the database refuses included (the
chunk falls back to one savepoint per row); ``dry_run`` runs everything and rolls it back.

Streaming: the file is read row by row (CSV through the mapping import's text stream; XLSX with openpyxl's
``read_only`` mode, which parses the sheet as it goes) and handled in chunks of ``CHUNK`` rows, each with a
fixed number of queries whatever the file's size: one look-up of the chunk's SKUs, one of its components,
``bulk_create`` / ``bulk_update`` of the items, the components' delete + insert, the audit entries and the
outbox upsert (:func:`.item_outbox.enqueue`, in the same transaction). Memory is one chunk, plus the kept
errors. A SKU twice in one file is refused on its second line: each written item is stamped with this run's
``source`` (``csv-import:<run>``), so a later chunk sees it without the import keeping every SKU in memory.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Iterator

from django.db import transaction

from integration_hub.core import tabular
from integration_hub.core.tabular import FALSE, TRUE, ImportResult
from integration_hub.core import audit
from integration_hub.reconciliation.services import safe_cell

from . import item_outbox
from .item_validation import SkuRules, gtin_problem, parse_decimal, weight_problems
from .models import BundleComponent, Item, SkuMapping
from .validation import sku_problem

REQUIRED = ("sku",)
OPTIONAL = (
    "name",
    "parent_sku",
    "size",
    "colour",
    "barcode",
    "weight",
    "weight_unit",
    "unit_cost",
    "bundle_components",
    "active",
    "storefront_sku",
)
COLUMNS = (*REQUIRED, *OPTIONAL)
ALIASES = {
    "master_sku": "sku",
    "style": "parent_sku",
    "parent": "parent_sku",
    "color": "colour",
    "gtin": "barcode",
    "ean": "barcode",
    "cost": "unit_cost",
    "components": "bundle_components",
    "unit": "weight_unit",
}
FIELDS = (
    "name",
    "parent_sku",
    "attributes",
    "barcode",
    "weight",
    "weight_unit",
    "unit_cost",
    "is_bundle",
    "active",
    "pending",
)
CHUNK = 1000
MAX_ROWS = 2_000_000
SOURCE = "csv-import"


@dataclass
class ItemImportResult(ImportResult):
    components: int = 0  # bundle component rows written
    queued: int = 0  # item outbox rows (systems that need the record)
    chunks: int = 0
    mappings: int = 0  # global SKU mappings created from storefront_sku
    columns = COLUMNS


def _max(name: str) -> int:
    return Item._meta.get_field(name).max_length


def _components(text: str) -> tuple[list[tuple[str, int]] | None, list[str]]:
    """``SKU:qty|SKU:qty`` → ([(sku, qty)], problems); ``-`` → ([], []) (no longer a bundle); '' → (None, [])."""
    text = (text or "").strip()
    if not text:
        return None, []
    if text == "-":
        return [], []
    out, problems = [], []
    for part in text.split("|"):
        sku, _, qty = part.strip().partition(":")
        sku, qty = sku.strip(), (qty.strip() or "1")
        if not sku:
            problems.append(f"bundle_components {part!r} has no SKU")
        elif not tabular.WHOLE.match(qty) or int(qty) < 1:
            problems.append(f"bundle_components quantity {qty!r} of {sku!r} is not a whole number of 1 or more")
        else:
            out.append((sku, int(qty)))
    if len({s for s, _ in out}) != len(out):
        problems.append("bundle_components names a SKU twice")
    return out, problems


def validate_row(r: dict, rules: SkuRules) -> tuple[list[str], dict]:
    """(every problem of the row, the model values of the columns present)."""
    problems: list[str] = []
    nul = [k for k, v in r.items() if "\x00" in v]
    if nul:
        problems.append(f"{', '.join(nul)} contains a NUL character")
    broken = [k for k, v in r.items() if k != "_lines" and ("\n" in v or "\r" in v)]
    if broken:
        problems.append(f"{', '.join(broken)} contains a line break (an unbalanced quote?)")
    sku = r.get("sku", "")
    if not nul and not broken:
        problems += rules.problems(sku)
    values: dict = {"sku": sku}
    for name in ("name", "parent_sku"):
        if name in r:
            if len(r[name]) > _max(name):
                problems.append(f"{name} is longer than {_max(name)} characters")
            values[name] = r[name]
    if r.get("parent_sku") and r.get("parent_sku") == sku:
        problems.append("parent_sku is the item's own SKU")
    if "barcode" in r:
        if r["barcode"]:
            why = gtin_problem(r["barcode"])
            if why:
                problems.append(why)
        values["barcode"] = r["barcode"]
    if "weight" in r or "weight_unit" in r:
        weight, unit, why = weight_problems(r.get("weight", ""), r.get("weight_unit", ""))
        problems += why
        values["weight"], values["weight_unit"] = weight, unit
    if "unit_cost" in r:
        if r["unit_cost"]:
            cost, why = parse_decimal(r["unit_cost"], "unit_cost", positive=False)
            if why:
                problems.append(why)
            values["unit_cost"] = cost
        else:
            values["unit_cost"] = None
    for attr in ("size", "colour"):
        if attr in r:
            values.setdefault("_attributes", {})[attr] = r[attr]
    if "active" in r:
        act = r["active"].lower()
        if act and act not in TRUE | FALSE:
            problems.append(f"active {r['active']!r} is not yes/no")
        values["active"] = act not in FALSE
    if r.get("storefront_sku"):
        why = sku_problem(r["storefront_sku"])
        if why:
            problems.append(f"storefront_sku {why}")
        elif len(r["storefront_sku"]) > SkuMapping._meta.get_field("storefront_sku").max_length:
            problems.append("storefront_sku is too long")
        values["_storefront_sku"] = r["storefront_sku"]
    if "bundle_components" in r:
        comps, why = _components(r["bundle_components"])
        problems += why
        if comps is not None:
            if any(s == sku for s, _ in comps):
                problems.append("a bundle cannot contain itself")
            values["_components"] = comps
            values["is_bundle"] = bool(comps)
    return problems, values


# --- readers: (line, row) in file order ------------------------------------------------------------------------
def _is_xlsx(data, filename: str) -> bool:
    if filename.lower().endswith((".xlsx", ".xlsm")):
        return True
    if isinstance(data, str):
        return False
    f = tabular.binary(data)
    head = f.read(4)
    f.seek(0)
    return head == b"PK\x03\x04"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value).strip()


def _xlsx_rows(f: IO[bytes], result: ItemImportResult) -> Iterator[tuple[int, dict]]:
    """Rows of the first sheet, streamed (openpyxl ``read_only``: the sheet XML is parsed as it is read)."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(f, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        result.fatal = f"not a readable XLSX workbook: {exc}"
        return
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        headers = [ALIASES.get(h, h) for h in (_cell(v).lower() for v in (header or ()))]
        missing = [c for c in REQUIRED if c not in headers]
        if missing:
            result.fatal = f"missing column(s): {', '.join(missing)} (found: {', '.join(h for h in headers if h)[:500] or 'nothing'})"
            return
        seen = 0
        for line, values in enumerate(rows, start=2):
            cells = [_cell(v) for v in values]
            if not any(cells):
                continue
            seen += 1
            if seen > MAX_ROWS:
                result.fatal = f"more than {MAX_ROWS:,} rows: split the file"
                return
            row = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(headers) if h in COLUMNS}
            extra = [c for c in cells[len(headers) :] if c]
            if extra:
                result.reject(line, "more values than columns", row)
                continue
            yield line, row
    finally:
        wb.close()


def _csv_rows(stream: IO[str], sample: str, result: ItemImportResult) -> Iterator[tuple[int, dict]]:
    reader = tabular.open_reader(stream, sample, result, required=REQUIRED, aliases=ALIASES)
    if reader is None:
        return
    yield from tabular.read_rows(reader, result, COLUMNS, MAX_ROWS)


# --- the import ---------------------------------------------------------------------------------------------------
def import_items(
    data: bytes | str | IO[bytes], *, user=None, dry_run: bool = False, filename: str = "", connection=None
) -> ItemImportResult:
    """Import an item file (CSV text/bytes/binary file, or XLSX) as a stream. ``connection``: whose SKU rules apply
    (default: every active identifier transform). ``dry_run``: everything runs, then is rolled back."""
    result = ItemImportResult(dry_run=dry_run)
    rules = SkuRules.for_connection(connection)
    stream = None
    if _is_xlsx(data, filename):
        rows = _xlsx_rows(tabular.binary(data), result)
    else:
        stream, sample = tabular.text_stream(data)
        rows = _csv_rows(stream, sample, result)
    try:
        with transaction.atomic():
            import_rows(rows, rules=rules, user=user, result=result)
            if result.fatal:  # nothing is imported from a file that is not whole (too long, unreadable header)
                result.created = result.updated = result.unchanged = result.components = result.queued = 0
                transaction.set_rollback(True)
            elif dry_run:
                transaction.set_rollback(True)
        return result
    finally:
        if isinstance(stream, io.TextIOWrapper):
            stream.detach()


def import_rows(
    rows, *, rules: SkuRules, user=None, result: ItemImportResult, source: str = SOURCE, atomic_chunks: bool = False
) -> ItemImportResult:
    """The import of already-split rows ``(line, {column: text})``, chunk by chunk (the file import and the master
    pull share it). ``source``: the audit source and the item's ``source`` stamp (``<source>:<run>``, at most 40
    characters). ``atomic_chunks``: commit each chunk on its own (the pull, which reads over HTTP meanwhile)."""
    run = f"{source[:30]}:{uuid.uuid4().hex[:8]}"
    chunk: list[tuple[int, dict]] = []

    def flush():
        if atomic_chunks:
            with transaction.atomic():
                _chunk(chunk, rules, run, user, result, source)
        else:
            _chunk(chunk, rules, run, user, result, source)

    for line, row in rows:
        chunk.append((line, row))
        if len(chunk) >= CHUNK:
            flush()
            chunk = []
    if chunk and not result.fatal:
        flush()
    return result


def _chunk(
    chunk: list[tuple[int, dict]], rules: SkuRules, run: str, user, result: ItemImportResult, source: str = SOURCE
) -> None:
    result.chunks += 1
    parsed: list[tuple[int, dict, dict]] = []
    seen: dict[str, int] = {}
    for line, r in chunk:
        problems, values = validate_row(r, rules)
        sku = values["sku"]
        if sku and sku in seen:
            problems.append(f"duplicate of line {seen[sku]} (same SKU)")
        elif sku:
            seen[sku] = line
        if problems:
            result.reject(line, "; ".join(problems), r)
        else:
            parsed.append((line, r, values))
    if not parsed:
        return
    existing = {i.sku: i for i in Item.objects.filter(sku__in=[v["sku"] for _, _, v in parsed])}
    comp_skus = {s for _, _, v in parsed for s, _ in v.get("_components") or []}
    comps = (
        {c.sku: c for c in Item.objects.filter(sku__in=comp_skus - set(existing)).only("id", "sku", "is_bundle")}
        if comp_skus
        else {}
    )
    in_file = {v["sku"]: v for _, _, v in parsed}
    wanted_sf = {v["_storefront_sku"] for _, _, v in parsed if v.get("_storefront_sku")}
    mapped_sf = (
        dict(
            SkuMapping.objects.filter(channel__isnull=True, storefront_sku__in=wanted_sf).values_list(
                "storefront_sku", "item__sku"
            )
        )
        if wanted_sf
        else {}
    )
    sf_new: list[tuple[Item, str]] = []

    new, changed, befores, line_of, bundles = [], [], {}, {}, []
    for line, r, v in parsed:
        item = existing.get(v["sku"])
        problems = []
        for s, _ in v.get("_components") or []:
            target = existing.get(s) or comps.get(s)
            is_bundle = (
                in_file[s]["is_bundle"]
                if s in in_file and "is_bundle" in in_file[s]
                else getattr(target, "is_bundle", False)
            )
            if target is None and s not in in_file:
                problems.append(f"bundle component {s!r} is not in the item master (nor earlier in the file)")
            elif is_bundle:
                problems.append(f"bundle component {s!r} is itself a bundle (list its components directly)")
        if item is not None and item.source == run:
            problems.append("duplicate SKU: an earlier line of this file already imported it")
        sf = v.get("_storefront_sku")
        if sf and mapped_sf.get(sf, v["sku"]) != v["sku"]:
            problems.append(f"storefront_sku {sf!r} is already mapped to item {mapped_sf[sf]!r}")
        elif sf and sf in {x for _, x in sf_new}:
            problems.append(f"storefront_sku {sf!r} is given to another item of this file")
        if problems:
            result.reject(line, "; ".join(problems), r)
            continue
        if item is None:
            item = Item(sku=v["sku"])
            _assign(item, v)
            new.append(item)
        else:
            before_values = _values(item)
            before = audit.snapshot(item)
            _assign(item, v)
            if _values(item) != before_values:
                befores[item.pk] = before
                changed.append(item)
            else:
                item._unchanged = True  # still written: the run's stamp finds a duplicate in a later chunk
                changed.append(item)
        item.source = run
        line_of[id(item)] = (line, r)
        if sf and sf not in mapped_sf:
            sf_new.append((item, sf))
        if "_components" in v:
            bundles.append((item, v["_components"]))

    new, changed = _write(new, changed, line_of, result)
    real_changes = [i for i in changed if not getattr(i, "_unchanged", False)]
    result.unchanged += len(changed) - len(real_changes)
    result.created += len(new)
    result.updated += len(real_changes)
    written = {id(i) for i in new + changed}
    result.components += _write_components([(i, c) for i, c in bundles if id(i) in written], comps)
    audit.record_many(new, "create", user=user, source=source[:32])
    audit.record_many(real_changes, "update", user=user, source=source[:32], befores=befores)
    result.queued += item_outbox.enqueue([i.pk for i in new + real_changes], reason=source)
    mappings = [SkuMapping(item_id=i.pk, channel=None, storefront_sku=sf) for i, sf in sf_new if id(i) in written]
    if mappings:
        from .mapping_changes import mapping_changed

        SkuMapping.objects.bulk_create(mappings, batch_size=CHUNK)
        if mappings[0].pk is None:
            pk_of = dict(
                SkuMapping.objects.filter(
                    channel__isnull=True, storefront_sku__in=[m.storefront_sku for m in mappings]
                ).values_list("storefront_sku", "pk")
            )
            for m in mappings:
                m.pk = pk_of[m.storefront_sku]
        audit.record_many(mappings, "create", user=user, source=source[:32])
        result.mappings += len(mappings)
        mapping_changed({m.item_id for m in mappings}, None, "mapped by item import")  # a bulk write: no signals


def _values(item: Item) -> tuple:
    """The master fields as compared for "changed" (decimals by value: 1.5000 from the database equals 1.5)."""
    return tuple(dict(getattr(item, f) or {}) if f == "attributes" else getattr(item, f) for f in FIELDS)


def _assign(item: Item, v: dict) -> None:
    for name in ("name", "parent_sku", "barcode", "weight", "weight_unit", "unit_cost", "active", "is_bundle"):
        if name in v:
            setattr(item, name, v[name])
    if "_attributes" in v:
        attrs = dict(item.attributes or {})
        for k, val in v["_attributes"].items():
            if val:
                attrs[k] = val
            else:
                attrs.pop(k, None)
        item.attributes = attrs
    item.pending = False  # an import completes a pending item


def _bulk(new: list[Item], changed: list[Item]) -> None:
    Item.objects.bulk_create(new, batch_size=CHUNK)
    if new and new[0].pk is None:  # backends without RETURNING ids
        pk_of = dict(Item.objects.filter(sku__in=[i.sku for i in new]).values_list("sku", "pk"))
        for i in new:
            i.pk = pk_of[i.sku]
    if changed:
        Item.objects.bulk_update(changed, [*FIELDS, "source", "updated_at"], batch_size=CHUNK)


def _write(new: list[Item], changed: list[Item], line_of: dict, result: ItemImportResult) -> tuple[list, list]:
    """One savepoint for the chunk; if the database refuses it, one per row so the good rows are kept."""
    from django.utils import timezone

    now = timezone.now()
    for i in new + changed:
        if not getattr(i, "_unchanged", False) or i.updated_at is None:
            i.updated_at = now

    def refused(i, exc):
        line, row = line_of[id(i)]
        result.reject(line, f"refused by the database: {exc}", row)

    return tabular.write_chunk(new, changed, _bulk, refused)


def _write_components(bundles: list[tuple[Item, list[tuple[str, int]]]], comps: dict) -> int:
    """Replace the components of the bundles given: one delete, one look-up, one insert."""
    if not bundles:
        return 0
    wanted = {s for _, c in bundles for s, _ in c}
    ids = dict(Item.objects.filter(sku__in=wanted).values_list("sku", "pk")) if wanted else {}
    BundleComponent.objects.filter(bundle_id__in=[b.pk for b, _ in bundles]).delete()
    rows = [
        BundleComponent(bundle_id=b.pk, component_id=ids[s], quantity=q) for b, c in bundles for s, q in c if s in ids
    ]
    BundleComponent.objects.bulk_create(rows, batch_size=CHUNK)
    return len(rows)


def error_report_csv(result: ItemImportResult) -> str:
    import csv

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["line", "reason", "sku", "name", "barcode"])
    if result.fatal:
        w.writerow(["", safe_cell(f"nothing imported: {result.fatal}"), "", "", ""])
    for e in result.errors:
        w.writerow([e.line, safe_cell(e.reason), *(safe_cell(e.row.get(k, "")) for k in ("sku", "name", "barcode"))])
    if result.errors_truncated:
        w.writerow(
            [
                "",
                f"… and {result.errors_truncated:,} more rejected rows not listed ({result.error_count:,} in all)",
                "",
                "",
                "",
            ]
        )
    return out.getvalue()
