"""Celery tasks of the catalogue. Thin: business rules live in :mod:`.audit`."""
from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from connectors import errors

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
        try:
            res = asdict(audit_connection(conn))
        except errors.ConnectorError as exc:
            log.warning("catalogue audit of %s failed: %s", conn.name, exc)
            res = {"connection": conn.name, "error": str(exc)[:300]}
        except NotImplementedError:
            res = {"connection": conn.name, "error": "connector cannot list SKUs"}
        out.append(res)
    return out
