"""The one entry point for "a SKU mapping changed": :func:`mapping_changed`.

A mapping decides which (channel, item) pairs a storefront is told a quantity for and which storefront SKU an
order line resolves to, so a change must (1) re-queue the stock push of the items it touches on the channels it
touches (the outbox coalesces repeats) and (2) re-check the held orders waiting on the storefront SKUs it now
resolves. It runs in the caller's transaction (outbox rows are written with the edit).

Who calls it — every write of ``SkuMapping`` goes through exactly one of these paths:

* **row saves and deletes** (``obj.save()``, ``obj.delete()``, ``queryset.delete()``: Django admin, the console
  rule pages, the API, a shell) — the model signals in :mod:`integration_hub.inventory.signals` call it once per
  save / per delete call, to re-queue stock (no held-order re-check: a raw row save never did that). Callers of
  ``save()`` / ``delete()`` never re-queue themselves; the save's result is left on the instance
  (:func:`last_change`). A person's edit on the console rule pages or the API then asks for the re-check of held
  orders explicitly (:func:`integration_hub.catalog.mapping_rules.after_mapping_saved`, which calls this with
  ``storefront_skus`` and no items).
* **bulk writes** (``bulk_create`` / ``bulk_update``, which send no signals) — the writer calls it once per
  write: :mod:`exceptions_app.triage` (``map_sku``, ``bulk_map_with_transform``: re-queue and re-check),
  :mod:`integration_hub.catalog.mapping_import` (the CSV import) and :mod:`integration_hub.catalog.item_import`
  (mappings created by the item import) — the imports re-queue stock only, as before (no held-order re-check).

Acknowledging the SKU exceptions a mapping fixes is the person-facing part and stays with the caller
(:func:`exceptions_app.triage.acknowledge_sku_fix`): the confirmed stock push resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from integration_hub.core.models import Channel
from integration_hub.inventory import outbox
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.actions import revalidate_held


@dataclass
class MappingChange:
    pushes: int = 0  # pending pushes inserted or updated
    orders_revalidated: int = 0  # held orders now validated (and queued)


def mapping_changed(
    item_ids: Iterable[int],
    channel_ids: Iterable[int] | None,
    reason: str,
    *,
    storefront_skus: Iterable[str] = (),
    channel: Channel | None = None,
) -> MappingChange:
    """Mappings of ``item_ids`` on ``channel_ids`` (None: every channel — a global mapping) changed.

    Re-queues the items' stock push there (ROUTINE priority, ``reason`` on the outbox row) and, when
    ``storefront_skus`` are given (the storefront SKUs the change now maps), re-checks the orders held on
    ``channel`` (None: every channel) waiting on them: one SKU — only the orders with a line of it; several (bulk
    fixes) — every held order on the channel in one batched pass rather than one pass per SKU."""
    change = MappingChange()
    item_ids = sorted({int(i) for i in item_ids if i})
    if item_ids:
        change.pushes = outbox.enqueue(
            item_ids,
            channel_ids=None if channel_ids is None else sorted(set(channel_ids)),
            priority=PendingPush.Priority.ROUTINE,
            reason=reason,
        )
    skus = sorted(set(storefront_skus) - {""})
    if skus:
        change.orders_revalidated = revalidate_held(sku=skus[0] if len(skus) == 1 else None, channel=channel)
    return change


def last_change(obj) -> MappingChange:
    """What the last ``save()`` of mapping ``obj`` queued and released (set by the signal; empty when the save
    moved nothing)."""
    return getattr(obj, "_hub_mapping_change", None) or MappingChange()
