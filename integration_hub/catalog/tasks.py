"""Celery tasks of the catalogue. Thin: business rules live in :mod:`.audit`."""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from connectors import errors
from integration_hub.core.models import MASTER_SYSTEMS, STOREFRONT_SYSTEMS, Connection
from integration_hub.core.outcomes import connection_call

from . import item_outbox, master_drift, master_pull
from .audit import audit_connection
from .warehouse_products import sync_warehouse_products as sync

log = logging.getLogger(__name__)

CANNOT_LIST = "connector cannot list SKUs"


@shared_task(name="catalog.audit_catalogue", ignore_result=True)
def audit_catalogue(connection_id: int | None = None) -> list[dict]:
    """Beat: storefront SKUs vs mappings for every enabled storefront (or one connection)."""
    qs = Connection.objects.filter(enabled=True, system_type__in=list(STOREFRONT_SYSTEMS))
    if connection_id:
        qs = qs.filter(pk=connection_id)
    out = []
    for conn in qs:
        with connection_call(
            conn,
            "catalogue_audit",
            title=f"Catalogue audit could not read the SKUs of {conn.name}",
            action="retry_audit",
            catch=(errors.ConnectorError, NotImplementedError),
            cleared="catalogue audit completed",
            unexplained=CANNOT_LIST,
        ) as call:
            res = asdict(audit_connection(conn))
        if call.failed:
            log.warning("catalogue audit of %s failed: %s", conn.name, call.error)
            res = {"connection": conn.name, "error": (str(call.error) or CANNOT_LIST)[:300]}
        out.append(res)
    return out


@shared_task(name="catalog.sync_warehouse_products", ignore_result=True)
def sync_warehouse_products(connection_id: int | None = None) -> dict:
    """Beat: create the items a warehouse must know (Clarus) and store their ids, for every enabled master."""
    qs = Connection.objects.filter(enabled=True, system_type__in=list(MASTER_SYSTEMS))
    if connection_id:
        qs = qs.filter(pk=connection_id)
    return {conn.name: sync(conn).as_dict() for conn in qs}


@shared_task(name="catalog.pull_master_items", ignore_result=True)
def pull_master_items(connection_id: int | None = None, full: bool = False, skus: list | None = None) -> list[dict]:
    """Beat: the item master from every SKU master connection (``options.item_master``), changed items only;
    with ``skus`` (pending items from the stock feed) just those."""
    out = []
    for conn in master_pull.master_connections():
        if connection_id and conn.pk != connection_id:
            continue
        try:
            out.append(master_pull.pull_master_items(conn, full=full, skus=skus).as_dict())
        except NotImplementedError as exc:
            out.append({"connection": conn.name, "error": str(exc)})
    return out


@shared_task(name="catalog.drain_item_outbox", ignore_result=True)
def drain_item_outbox() -> list[dict]:
    """Nudged after item changes commit, and a beat sweep: product records to the systems that need them."""
    return item_outbox.drain_all()


@shared_task(name="catalog.audit_master_data", ignore_result=True)
def audit_master_data() -> list[dict]:
    """Beat: barcode / weight / name drift between the item master, the storefronts and the warehouses."""
    return master_drift.audit_all()


@shared_task(name="catalog.check_storefront_skus", ignore_result=True)
def check_storefront_skus(connection_id: int, skus: list) -> dict:
    """A storefront Message named new SKUs (commercetools ProductPublished / ProductVariantAdded): check them now."""
    conn = Connection.objects.filter(pk=connection_id, enabled=True).first()
    if conn is None:
        return {"skipped": "connection gone or disabled"}
    with connection_call(
        conn,
        "catalogue_check",
        title=f"Catalogue check of new SKUs on {conn.name} failed",
        context={"skus": list(skus)[:50]},
        cleared="catalogue check completed",
    ) as call:
        res = item_outbox.check_storefront_skus(conn, skus)
    return {"error": call.error_text(300)} if call.failed else res
