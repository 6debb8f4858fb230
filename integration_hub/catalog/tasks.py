"""Celery tasks of the catalogue. Thin: business rules live in :mod:`.audit`."""
from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from connectors import errors
from exceptions_app import kinds
from exceptions_app.services import clear, error_key, raise_exception

log = logging.getLogger(__name__)


@shared_task(name="catalog.audit_catalogue", ignore_result=True)
def audit_catalogue(connection_id: int | None = None) -> list[dict]:
    """Beat: storefront SKUs vs mappings for every enabled storefront (or one connection)."""
    from integration_hub.core.models import STOREFRONT_SYSTEMS, Connection

    from .audit import audit_connection

    qs = Connection.objects.filter(enabled=True, system_type__in=list(STOREFRONT_SYSTEMS))
    if connection_id:
        qs = qs.filter(pk=connection_id)
    out = []
    for conn in qs:
        key = kinds.key("sync_timeout", conn.name, "catalogue_audit")
        try:
            res = asdict(audit_connection(conn))
        except (errors.ConnectorError, NotImplementedError) as exc:
            log.warning("catalogue audit of %s failed: %s", conn.name, exc)
            text = str(exc) or "connector cannot list SKUs"
            raise_exception("sync_timeout", key, f"Catalogue audit could not read the SKUs of {conn.name}",
                            message=text[:2000], connection=conn,
                            context={"operation": "list_skus", "error": type(exc).__name__, "action": "retry_audit"})
            res = {"connection": conn.name, "error": text[:300]}
        else:
            clear(key, reason="catalogue audit completed")
        out.append(res)
    return out


@shared_task(name="catalog.sync_warehouse_products", ignore_result=True)
def sync_warehouse_products(connection_id: int | None = None) -> dict:
    """Beat: create the items a warehouse must know (Clarus) and store their ids, for every enabled master."""
    from integration_hub.core.models import MASTER_SYSTEMS, Connection

    from .warehouse_products import sync_warehouse_products as sync

    qs = Connection.objects.filter(enabled=True, system_type__in=list(MASTER_SYSTEMS))
    if connection_id:
        qs = qs.filter(pk=connection_id)
    return {conn.name: sync(conn).as_dict() for conn in qs}


@shared_task(name="catalog.pull_master_items", ignore_result=True)
def pull_master_items(connection_id: int | None = None, full: bool = False, skus: list | None = None) -> list[dict]:
    """Beat: the item master from every SKU master connection (``options.item_master``), changed items only;
    with ``skus`` (pending items from the stock feed) just those."""
    from .master_pull import master_connections, pull_master_items as pull

    out = []
    for conn in master_connections():
        if connection_id and conn.pk != connection_id:
            continue
        try:
            out.append(pull(conn, full=full, skus=skus).as_dict())
        except NotImplementedError as exc:
            out.append({"connection": conn.name, "error": str(exc)})
    return out


@shared_task(name="catalog.drain_item_outbox", ignore_result=True)
def drain_item_outbox() -> list[dict]:
    """Nudged after item changes commit, and a beat sweep: product records to the systems that need them."""
    from .item_outbox import drain_all

    return drain_all()


@shared_task(name="catalog.audit_master_data", ignore_result=True)
def audit_master_data() -> list[dict]:
    """Beat: barcode / weight / name drift between the item master, the storefronts and the warehouses."""
    from .master_drift import audit_all

    return audit_all()


@shared_task(name="catalog.check_storefront_skus", ignore_result=True)
def check_storefront_skus(connection_id: int, skus: list) -> dict:
    """A storefront Message named new SKUs (commercetools ProductPublished / ProductVariantAdded): check them now."""
    from integration_hub.core.models import Connection

    from .item_outbox import check_storefront_skus as check

    conn = Connection.objects.filter(pk=connection_id, enabled=True).first()
    if conn is None:
        return {"skipped": "connection gone or disabled"}
    try:
        return check(conn, skus)
    except errors.ConnectorError as exc:
        kind, key = error_key(exc, conn.name, "catalogue_check")
        raise_exception(kind, key, f"Catalogue check of new SKUs on {conn.name} failed", message=str(exc)[:2000], connection=conn,
                        context={"operation": "catalogue_check", "skus": list(skus)[:50]})
        return {"error": str(exc)[:300]}
