"""Scheduled pull of the item master from the SKU master, and pending items for master SKUs the hub does not know.

**Which connection is the SKU master**: an enabled connection with ``options["item_master"] = true`` whose
connector reads items (``master_items``; today Archean R247 — modelled, like the rest of that connector:
``GET <api>/items`` paged, ``updated_since``). :func:`pull_master_items` reads the items changed since the
last pull (``SyncCursor(connection, "items")``, advanced to the pull's start only after a complete read; a
``full`` pull reads everything) and writes them through the item import's chunked upsert
(:func:`.item_import.import_rows`: the same validation, per-row problems, bulk writes, audit and item outbox),
committing chunk by chunk. Rows the hub refuses become one ``bad_payload`` record each
(``bad_payload:<connection>:item:<sku or line>``, the row's every problem), cleared when the row comes good.
A read failure files one record per connection (:func:`integration_hub.core.outcomes.connection_call`, operation
``item_pull``) and leaves the cursor.

**Unknown master SKUs** (issue 17): stock from the SKU master for a SKU the hub does not know used to be
refused as ``unknown_sku`` forever. :func:`create_pending_items` (called by the stock intake in its
transaction) creates a *pending* item instead — no name yet, ``pending = True``, ``source = stock:<connection>``
— so the stock is kept, and queues a pull of just those SKUs after the commit; the pull completes the item
(and clears ``pending``), an import does too. A SKU that breaks the connection's SKU rules is not created
(the stock row stays ``unknown_sku``). Pending items are listed on the Items page (state "pending").
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from exceptions_app.models import ACTIVE_STATUSES, ExceptionRecord
from exceptions_app import kinds
from exceptions_app.services import Problem, raise_many, _set_status
from integration_hub.core import nudge
from integration_hub.core.models import Connection, SyncCursor
from integration_hub.core.outcomes import connection_call

from . import item_import
from .item_validation import SkuRules
from .models import Item

log = logging.getLogger(__name__)

STREAM = "items"
OPERATION = "item_pull"


@dataclass
class PullResult:
    connection: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    queued: int = 0
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def master_connections():
    """Enabled connections marked as the SKU master whose connector can read items."""
    return [c for c in Connection.objects.filter(enabled=True).order_by("pk") if (c.options or {}).get("item_master")]


def _row(m) -> dict:
    row = {
        "sku": m.sku,
        "name": m.name,
        "parent_sku": m.parent_sku,
        "barcode": m.barcode,
        "weight": m.weight,
        "weight_unit": m.weight_unit,
        "unit_cost": m.unit_cost,
        "active": "1" if m.active else "0",
    }
    row.update({k: str(m.attributes.get(k, "")) for k in ("size", "colour")})
    return row


def _bad_key(conn: Connection, ref: str) -> str:
    return kinds.key("bad_payload", conn.name, "item", ref)


def pull_master_items(connection: Connection, *, full: bool = False, skus: list[str] | None = None) -> PullResult:
    """Read the master's items (changed since the last pull; all with ``full``; only ``skus`` when given) into the
    item master."""
    from connectors.registry import get_connector

    out = PullResult(connection.name)
    connector = get_connector(connection)
    if not hasattr(connector, "master_items"):
        raise NotImplementedError(f"{connection.system_type} offers no item read")
    cursor, _ = SyncCursor.objects.get_or_create(connection=connection, stream=STREAM)
    since = None
    if not full and not skus and cursor.value:
        try:
            since = datetime.fromisoformat(cursor.value)
        except ValueError:
            since = None
    started = timezone.now()
    result = item_import.ItemImportResult()
    seen_keys: list[str] = []

    with connection_call(
        connection,
        OPERATION,
        title=f"Item pull from {connection.name} failed",
        context={"items_read": 0},
        cleared="item pull completed",
    ) as call:

        def rows():
            source = connector.master_items(since, skus=skus) if skus else connector.master_items(since)
            for n, m in enumerate(source, start=1):
                out.read += 1
                call.context["items_read"] = out.read
                if m is None:
                    result.reject(n, "item row without an item code", {})
                    continue
                seen_keys.append(_bad_key(connection, m.sku))
                yield n, _row(m)

        item_import.import_rows(
            rows(),
            rules=SkuRules.for_connection(connection),
            result=result,
            source=f"master:{connection.name}",
            atomic_chunks=True,
        )
        if not skus:
            SyncCursor.objects.filter(pk=cursor.pk).update(value=started.isoformat(), updated_at=timezone.now())
    out.error = call.error_text(500)
    _refused(connection, result, seen_keys)
    _count(out, result)
    return out


def _count(out: PullResult, r) -> None:
    out.created, out.updated, out.unchanged, out.refused, out.queued = (
        r.created,
        r.updated,
        r.unchanged,
        r.error_count,
        r.queued,
    )


def _refused(conn: Connection, result, seen_keys: list[str]) -> None:
    """One bad_payload record per refused row (the kept ones); resolve those of rows that came good."""
    problems, refused = [], set()
    for e in result.errors:
        ref = e.row.get("sku") or f"line-{e.line}"
        key = _bad_key(conn, ref)
        refused.add(key)
        problems.append(
            Problem(
                kind="bad_payload",
                key=key,
                severity="warning",
                connection_id=conn.pk,
                sku=e.row.get("sku", "")[:100],
                title=f"Item {ref} from {conn.name} refused",
                message=e.reason,
                context={
                    "master_sku": e.row.get("sku", ""),
                    "problems": e.reason,
                    "row": e.row,
                    "connection": conn.name,
                    "source": "item_pull",
                },
            )
        )
    raise_many(problems)
    good = [k for k in seen_keys if k not in refused]
    for start in range(0, len(good), 1000):
        _set_status(
            ExceptionRecord.objects.filter(dedupe_key__in=good[start : start + 1000], status__in=ACTIVE_STATUSES),
            "resolved",
            None,
            "item accepted by a later pull",
        )


# --- pending items from the stock feed -------------------------------------------------------------------------------
def create_pending_items(connection: Connection, skus: list[str]) -> dict[str, int]:
    """Create pending items for ``skus`` (unknown master SKUs in ``connection``'s stock feed) when ``connection`` is
    the SKU master; {sku: item id} of those now known. Runs in the caller's transaction; queues a pull of those
    SKUs after the commit. Two queries (insert, read back) per call."""
    if not skus or not (connection.options or {}).get("item_master"):
        return {}
    rules = SkuRules.for_connection(connection)
    good = sorted({s for s in skus if isinstance(s, str) and not rules.problems(s)})
    if not good:
        return {}
    source = f"stock:{connection.name}"[:40]
    Item.objects.bulk_create(
        [Item(sku=s, pending=True, source=source) for s in good], ignore_conflicts=True, batch_size=1000
    )
    known = dict(Item.objects.filter(sku__in=good).values_list("sku", "pk"))
    pk = connection.pk

    def pull_after_commit():
        try:
            nudge.enqueue("catalog.pull_master_items", args=[pk], kwargs={"skus": good[:500]}, retry=False)
        except Exception as exc:  # broker down: the scheduled pull completes the items
            log.warning("pending item pull not queued (%s)", exc)

    transaction.on_commit(pull_after_commit)
    return known
