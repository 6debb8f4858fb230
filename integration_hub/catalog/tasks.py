"""Celery tasks of the catalogue. Thin: business rules live in :mod:`.audit`."""
from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from connectors import errors
from exceptions_app.services import clear, make_key, raise_exception

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
        key = make_key("sync_timeout", conn.name, "catalogue_audit")
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
