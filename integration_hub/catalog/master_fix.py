"""Take the master's value on a ``master_data_drift`` exception (issue 17): write the item master's barcode /
weight / name to the system that differs, re-read it, and resolve the exception only when the re-read agrees.

* Writable where the system's connector has ``set_product_field(system_sku, field, value)`` and lists the field in
  ``WRITABLE_FIELDS``: commercetools (Products API ``setAttribute`` / ``changeName``, see
  :meth:`connectors.commercetools.CommercetoolsConnector.set_product_field`). Clarus WMS is **not writable**: its
  published REST API creates products (``POST /api/products``) but documents no product update, so the page says
  so and the fix stays in the WMS.
* The value written is the item master's *current* value (not the one in the exception's context, which may be
  older): the barcode, the weight in grams, the name.
* A write that fails, or a re-read that still differs (or no longer finds the SKU), leaves the exception open with
  the reason in ``status_reason``; either way one audit entry names who asked, the field, the value written and the
  outcome; a resolve adds the exception's own before/after entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from connectors import errors
from exceptions_app.models import ExceptionRecord, Kind
from integration_hub.core import audit

from .item_validation import grams
from .master_drift import compare
from .models import Item


class NotWritable(Exception):
    """The fix cannot be applied to this record (message shown to the person)."""


@dataclass
class TakeResult:
    resolved: bool
    message: str


def _connector(record: ExceptionRecord):
    from connectors.registry import get_connector

    if record.connection is None:
        raise NotWritable("this exception names no connection")
    try:
        return get_connector(record.connection)
    except errors.ConnectorError as exc:
        raise NotWritable(f"{record.connection.name} is misconfigured: {exc}") from exc


def writable_reason(record: ExceptionRecord, connector=None) -> str:
    """ "" when the master's value can be written to the record's system, else why not (shown in the UI)."""
    if record.kind != Kind.MASTER_DATA_DRIFT:
        return "not a master data drift exception"
    ctx = record.context or {}
    field = ctx.get("field")
    try:
        connector = connector or _connector(record)
    except NotWritable as exc:
        return str(exc)
    if not hasattr(connector, "set_product_field"):
        return f"not writable: {record.connection.get_system_type_display()} has no published product update"
    if field not in getattr(connector, "WRITABLE_FIELDS", ()):
        return f"not writable: the hub does not write {field!r} to {record.connection.name}"
    return ""


def writable_systems() -> set[str]:
    """System types whose connector can write a product field (the queue shows the row button for those)."""
    from connectors.registry import CONNECTORS, connector_class

    out = set()
    for system_type in CONNECTORS:
        try:
            if hasattr(connector_class(system_type), "set_product_field"):
                out.add(system_type)
        except (ImportError, LookupError):
            continue
    return out


def master_value(item: Item, field: str):
    """The value to write: barcode / name as text, weight in grams (an int when whole)."""
    if field == "barcode":
        return item.barcode or None
    if field == "name":
        return item.name or None
    if field == "weight":
        g = grams(item.weight, item.weight_unit)
        if g is None:
            return None
        g = Decimal(g)
        return int(g) if g == g.to_integral_value() else float(g)
    return None


def _leave_open(record: ExceptionRecord, reason: str) -> None:
    ExceptionRecord.objects.filter(pk=record.pk).update(status_reason=reason[:1000])
    record.status_reason = reason[:1000]


def take_master_value(record: ExceptionRecord, user=None, connector=None) -> TakeResult:
    """Write the master's value to the record's system; resolve the record when a re-read confirms it."""
    from exceptions_app.triage import change_status

    reason = writable_reason(record, connector)
    if reason:
        raise NotWritable(reason)
    if not record.is_active:
        raise NotWritable(f"this exception is already {record.status}")
    ctx = record.context or {}
    field, system_sku = ctx["field"], ctx.get("system_sku") or record.sku
    item = Item.objects.filter(sku=ctx.get("master_sku") or record.sku).first()
    if item is None:
        raise NotWritable(f"the item master has no item {ctx.get('master_sku') or record.sku!r}")
    value = master_value(item, field)
    if value is None:
        raise NotWritable(f"the item master has no {field} for {item.sku}")
    connector = connector or _connector(record)
    conn = record.connection
    outcome: str
    try:
        connector.set_product_field(system_sku, field, value)
        seen = connector.catalogue_records([system_sku]).get(system_sku)
    except errors.ConnectorError as exc:
        outcome = f"take the master's value: {conn.name} refused the write of {field} {value!r}: {exc}"
        resolved = False
    else:
        master = {"barcode": item.barcode, "weight": item.weight, "weight_unit": item.weight_unit, "name": item.name}
        if seen is None:
            outcome, resolved = (
                f"take the master's value: {field} {value!r} written but {conn.name} no longer lists {system_sku}",
                False,
            )
        elif compare(master, seen, (field,)):
            outcome, resolved = (
                (
                    f"take the master's value: {field} {value!r} written but {conn.name} still reads "
                    f"{seen.get('weight_g' if field == 'weight' else field)!r}"
                ),
                False,
            )
        else:
            outcome, resolved = (
                f"take the master's value: {conn.name} now reads {field} {value!r} (confirmed by a re-read)",
                True,
            )
    audit.write(
        record,
        "update",
        before={"field": field, "system_value": ctx.get("system_value")},
        after={
            "field": field,
            "written": value,
            "connection": conn.name,
            "system_sku": system_sku,
            "resolved": resolved,
            "outcome": outcome[:500],
        },
        user=user,
    )
    if resolved:
        change_status(record, "resolve", user=user, reason=outcome)
    else:
        _leave_open(record, outcome)
    return TakeResult(resolved, outcome)
