"""Master data audit: barcode, weight and name per SKU between the item master and each system that exposes them.

For every enabled connection whose connector reads product records (``catalogue_records(skus)``: commercetools
published product projections — name, the ``options.barcode_attribute`` / ``options.weight_attribute`` variant
attributes; Clarus WMS GraphQL ``products`` — description, barcode):

* the SKUs compared: on a storefront, every active SKU mapping of its channels (or global ones) — the storefront
  SKU is looked up, the item master's values are its item's; on a warehouse, the items it holds a product id for
  (``WarehouseProduct``);
* read in batches of ``BATCH``: one query for the batch (the mappings / products joined to the items, streamed
  with ``.iterator()``), one call to the system, then the comparison in memory for that batch only;
* a field is compared only where both sides have a value (a system that does not expose weights is not drift):
  barcodes exactly, weights in grams within ``WEIGHT_TOLERANCE_G``, names trimmed and case-folded; the
  connection's ``options["master_data_fields"]`` may narrow the fields (e.g. ``["barcode", "weight"]`` where the
  storefront's product names are marketing names, not the master's);
* each difference is one ``master_data_drift`` record per item, field and system —
  ``master_data_drift:<connection>:<master sku>:<field>`` — naming both values side by side
  (``context.master_value`` / ``context.system_value``), written with ``raise_many``; records of this connection
  whose difference is gone (or whose SKU was not found this time) are resolved in bulk.

A read failure files one record per connection (``error_key``, operation ``master_data_audit``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from decimal import Decimal

from django.db.models import Q

from connectors import errors
from exceptions_app.models import ACTIVE_STATUSES, ExceptionRecord
from exceptions_app import kinds
from exceptions_app.services import Problem, _set_status, clear, error_key, raise_exception, raise_many, transport_keys
from integration_hub.core.models import Connection, STOREFRONT_SYSTEMS

from .item_validation import grams
from .models import SkuMapping, WarehouseProduct

log = logging.getLogger(__name__)

BATCH = 2000
WEIGHT_TOLERANCE_G = Decimal("0.5")
OPERATION = "master_data_audit"
FIELDS = ("barcode", "weight", "name")


@dataclass
class DriftResult:
    connection: str
    compared: int = 0
    missing: int = 0
    drift: int = 0
    cleared: int = 0
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def drift_key(conn: Connection, sku: str, field: str) -> str:
    return kinds.key("master_data_drift", conn.name, sku, field)


def _pairs(conn: Connection):
    """(system sku, master sku, barcode, weight, weight unit, name) of every SKU to compare on ``conn``, streamed."""
    cols = ("item__barcode", "item__weight", "item__weight_unit", "item__name")
    if conn.system_type in STOREFRONT_SYSTEMS:
        qs = (
            SkuMapping.objects.filter(active=True, item__active=True)
            .filter(Q(channel__isnull=True) | Q(channel__connection=conn))
            .order_by("storefront_sku")
            .values_list("storefront_sku", "item__sku", *cols)
            .distinct()
        )
    else:
        qs = (
            WarehouseProduct.objects.filter(connection=conn, item__active=True)
            .order_by("item__sku")
            .values_list("item__sku", "item__sku", *cols)
        )
    return qs.iterator(chunk_size=BATCH)


def _norm_name(v: str) -> str:
    return " ".join(str(v or "").split()).casefold()


def compare(master: dict, system: dict, fields=FIELDS) -> list[tuple[str, str, str]]:
    """[(field, master value, system value)] of the fields that differ where both sides have a value."""
    out = []
    system = {k: v for k, v in system.items() if k in fields or (k == "weight_g" and "weight" in fields)}
    if master["barcode"] and system.get("barcode") and system["barcode"].strip() != master["barcode"]:
        out.append(("barcode", master["barcode"], system["barcode"].strip()))
    g = grams(master["weight"], master["weight_unit"])
    sys_g = system.get("weight_g")
    if g is not None and sys_g is not None and abs(Decimal(str(sys_g)) - g) > WEIGHT_TOLERANCE_G:
        out.append(("weight", f"{Decimal(master['weight']).normalize()} {master['weight_unit']} ({g} g)", f"{sys_g} g"))
    if master["name"] and system.get("name") and _norm_name(master["name"]) != _norm_name(system["name"]):
        out.append(("name", master["name"], system["name"]))
    return out


def audit_connection(conn: Connection, connector=None) -> DriftResult:
    from connectors.registry import get_connector

    connector = connector or get_connector(conn)
    if not hasattr(connector, "catalogue_records"):
        raise NotImplementedError(f"{conn.system_type} exposes no product records")
    out = DriftResult(conn.name)
    fields = tuple(f for f in ((conn.options or {}).get("master_data_fields") or FIELDS) if f in FIELDS)
    problems: list[Problem] = []
    batch: list[tuple] = []

    def flush():
        records = connector.catalogue_records([b[0] for b in batch])
        for sys_sku, sku, barcode, weight, unit, name in batch:
            rec = records.get(sys_sku)
            if rec is None:
                out.missing += 1
                continue
            out.compared += 1
            master = {"barcode": barcode, "weight": weight, "weight_unit": unit, "name": name}
            for field, mine, theirs in compare(master, rec, fields):
                problems.append(
                    Problem(
                        kind="master_data_drift",
                        key=drift_key(conn, sku, field),
                        severity="info" if field == "name" else "warning",
                        connection_id=conn.pk,
                        sku=sku,
                        title=f"{sku}: {field} differs on {conn.name} ({mine} in the item master, {theirs} there)"[
                            :300
                        ],
                        message=f"The item master says {field} {mine!r} for {sku}; {conn.name} says {theirs!r}"
                        f"{'' if sys_sku == sku else f' (as {sys_sku})'}.",
                        context={
                            "field": field,
                            "master_value": mine,
                            "system_value": theirs,
                            "system": conn.system_type,
                            "connection": conn.name,
                            "master_sku": sku,
                            "system_sku": sys_sku,
                        },
                    )
                )

    for row in _pairs(conn):
        batch.append(row)
        if len(batch) >= BATCH:
            flush()
            batch = []
    if batch:
        flush()
    raise_many(problems)
    out.drift = len(problems)
    raised = {p.key for p in problems}
    stale = [
        pk
        for pk, key in ExceptionRecord.objects.filter(
            kind="master_data_drift",
            status__in=ACTIVE_STATUSES,
            dedupe_key__startswith=f"master_data_drift:{conn.name}:",
        ).values_list("pk", "dedupe_key")
        if key not in raised
    ]
    for start in range(0, len(stale), 1000):
        out.cleared += _set_status(
            ExceptionRecord.objects.filter(pk__in=stale[start : start + 1000]),
            "resolved",
            None,
            "master data audit: the values agree again",
        )
    return out


def audit_all() -> list[dict]:
    from connectors.registry import get_connector

    out = []
    for conn in Connection.objects.filter(enabled=True).order_by("pk"):
        try:
            connector = get_connector(conn)
        except errors.ConnectorError:
            continue  # misconfigured: the connection's own checks report it
        if not hasattr(connector, "catalogue_records"):
            continue
        try:
            out.append(audit_connection(conn, connector).as_dict())
        except errors.ConnectorError as exc:
            kind, key = error_key(exc, conn.name, OPERATION)
            raise_exception(
                kind,
                key,
                f"Master data audit could not read {conn.name}",
                message=str(exc)[:2000],
                connection=conn,
                context={"operation": OPERATION, "error": type(exc).__name__},
            )
            out.append({"connection": conn.name, "error": str(exc)[:300]})
        else:
            clear(transport_keys(conn.name, OPERATION), reason="master data audit completed")
    return out
