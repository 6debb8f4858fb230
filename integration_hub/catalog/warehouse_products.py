"""Products a warehouse must know before orders name them (Clarus WMS), from the hub's item master.

:func:`sync_warehouse_products` asks the warehouse connector to find or create every non-bundle item it does
not have an id for yet and stores the ids (:class:`WarehouseProduct`); :func:`attach_ids` puts the stored ids
on the lines of warehouse orders about to be sent (one query per batch). Warehouses whose orders name SKUs
(``sync_products`` raises NotImplementedError) are skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from connectors import errors
from connectors.base import WarehouseProduct as ProductSpec
from exceptions_app import kinds
from exceptions_app.services import clear, raise_exception

from .models import Item, WarehouseProduct

CHUNK = 500


@dataclass
class ProductSyncResult:
    considered: int = 0
    stored: int = 0
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def sync_warehouse_products(connection, *, all_items: bool = False) -> ProductSyncResult:
    from connectors.registry import get_connector

    out = ProductSyncResult()
    known = set(WarehouseProduct.objects.filter(connection=connection).values_list("item_id", flat=True))
    items = [
        i
        for i in Item.objects.filter(is_bundle=False).order_by("sku").only("id", "sku", "name")
        if all_items or i.pk not in known
    ]
    out.considered = len(items)
    connector = get_connector(connection)
    key = kinds.key("sync_timeout", connection.name, "product_sync")
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        try:
            ids = connector.sync_products([ProductSpec(sku=i.sku, description=i.name or i.sku) for i in chunk])
        except NotImplementedError:
            return out
        except errors.ConnectorError as exc:
            raise_exception(
                "sync_timeout",
                key,
                f"Product sync to {connection.name} failed",
                message=str(exc)[:2000],
                connection=connection,
                context={"operation": "product_sync", "error": type(exc).__name__},
            )
            out.error = str(exc)[:500]
            return out
        by_sku = {i.sku: i for i in chunk}
        for sku, ext in ids.items():
            if sku in by_sku and ext:
                WarehouseProduct.objects.update_or_create(
                    connection=connection, item=by_sku[sku], defaults={"external_id": str(ext)}
                )
                out.stored += 1
    clear(key, reason="product sync completed")
    return out


def attach_ids(jobs) -> None:
    """``jobs``: (order, WarehouseOrder) pairs about to be sent: fill each line's ``warehouse_product_id`` from
    the ids stored for the order's warehouse. One query."""
    wanted = {(o.warehouse_id, ln.sku) for o, wo in jobs for ln in wo.lines if ln.sku}
    if not wanted:
        return
    ids = {
        (c, s): e
        for c, s, e in WarehouseProduct.objects.filter(
            connection_id__in={c for c, _ in wanted}, item__sku__in={s for _, s in wanted}
        ).values_list("connection_id", "item__sku", "external_id")
    }
    for o, wo in jobs:
        for ln in wo.lines:
            ln.warehouse_product_id = ids.get((o.warehouse_id, ln.sku), "")
