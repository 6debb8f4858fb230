"""Propagation of new and changed items to the systems that need a product record before stock or orders
reference them — through an outbox with the stock outbox's rules and the same exception queue.

:func:`enqueue` is called *inside the transaction that creates or changes the items* (the import, the master
pull): one ``INSERT … ON CONFLICT (connection_id, item_id) DO UPDATE`` per 2,000 items and target, so the
change and the work it causes commit together; repeats coalesce (``changes`` grows, a claiming worker's token
is cleared so it does not delete the row). A task is nudged after the commit; the beat sweep finds lost nudges.

:func:`drain` per target connection (enabled ones only):

* **Clarus WMS** (and any warehouse whose connector has ``sync_products``): find-or-create the products
  (``connectors.clarus`` — REST ``products``) and store their ids as ``WarehouseProduct`` (one upsert);
  warehouses whose orders name SKUs (``NotImplementedError``) need no record: the rows are dropped.
* **WAIR replenishment**: ``POST /Items`` inside ``Batch/start`` … ``Batch/stop`` (docs.wair.ai; the Items body
  is partly assumed, see :mod:`connectors.wair_replenishment`). The WAIR *master* adapter (:mod:`connectors.wair`)
  models no item endpoint — none is published — so WAIR masters get none.
* **Inventory Planner**: the variants file (``connectors.inventory_planner.push_variants``): uploaded by SFTP
  for the Advanced CSV connector; with URL delivery the complete ``products.csv`` the planner pulls already
  lists every item, so nothing is sent.
* **Storefronts** (commercetools, SFCC): nothing is pushed — the hub does not create storefront products. The
  item's storefront SKUs (its active mappings on the connection's channels, else its master SKU) are looked
  up in the storefront's catalogue; one that is not on sale there is filed ``not_on_storefront``
  (``not_on_storefront:<connection>:<sku>``, severity info) instead of a blind stock push, and cleared once the
  storefront lists it (this check, the nightly audit, or a commercetools ``ProductPublished`` /
  ``ProductVariantAdded`` Message — :func:`check_storefront_skus`).

A failure keeps the claimed rows (``attempts`` + 1, back-off in ``not_before``, ``last_error``) and files one
record per connection and operation with :func:`exceptions_app.services.error_key` (rate_limited /
sync_timeout / bad_payload / auth_failure); the next success clears it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Iterable

from django.conf import settings
from django.db import connection as db, transaction
from django.db.models import Q
from django.utils import timezone

from connectors import errors
from exceptions_app import kinds
from exceptions_app.services import Problem, clear, error_key, raise_exception, raise_many, transport_keys
from integration_hub.core import nudge
from integration_hub.core.models import Connection, STOREFRONT_SYSTEMS, SystemType

from .models import Item, PendingItemSync, SkuMapping, WarehouseProduct

log = logging.getLogger(__name__)

CHUNK = 2000  # items per upsert statement
CLAIM = 500  # rows one drain pass sends per connection
PRODUCT_SYSTEMS = {SystemType.CLARUS, SystemType.WAIR_REPLENISHMENT, SystemType.INVENTORY_PLANNER}
BUNDLE_OK = set(STOREFRONT_SYSTEMS)  # a bundle is a storefront product; warehouses and planners get components only
OPERATION = "item_sync"


def target_connections() -> list[tuple[int, str]]:
    """(id, system type) of the enabled connections that get item records or the storefront check."""
    return list(
        Connection.objects.filter(enabled=True, system_type__in=list(PRODUCT_SYSTEMS | set(STOREFRONT_SYSTEMS)))
        .order_by("pk")
        .values_list("pk", "system_type")
    )


def enqueue(item_ids: Iterable[int], *, reason: str = "", connection_ids: Iterable[int] | None = None) -> int:
    """Upsert one outbox row per (target connection, item). Bundles only for storefronts. Returns rows written."""
    ids = sorted({int(i) for i in item_ids})
    if not ids:
        return 0
    targets = target_connections()
    if connection_ids is not None:
        wanted = {int(c) for c in connection_ids}
        targets = [t for t in targets if t[0] in wanted]
    if not targets:
        return 0
    bundles = (
        set(Item.objects.filter(pk__in=ids, is_bundle=True).values_list("pk", flat=True))
        if any(t[1] not in BUNDLE_OK for t in targets)
        else set()
    )
    table = db.ops.quote_name(PendingItemSync._meta.db_table)
    now = timezone.now()
    written = 0
    with transaction.atomic(), db.cursor() as cur:
        for conn_id, system in targets:
            mine = [i for i in ids if system in BUNDLE_OK or i not in bundles]
            for start in range(0, len(mine), CHUNK):
                chunk = mine[start : start + CHUNK]
                values = ", ".join(["(%s, %s, %s, 1, 0, '', '', %s, %s)"] * len(chunk))
                params = [x for i in chunk for x in (conn_id, i, reason[:100], now, now)]
                cur.execute(
                    f"INSERT INTO {table} (connection_id, item_id, reason, changes, attempts, claim_token, last_error, created_at, "
                    f"updated_at) VALUES {values} ON CONFLICT (connection_id, item_id) DO UPDATE SET "
                    f"changes = {table}.changes + 1, reason = excluded.reason, claim_token = '', not_before = NULL, "
                    f"updated_at = excluded.updated_at",
                    params,
                )
                written += len(chunk)
    if written and not any(len(e) > 1 and e[1] is _nudge for e in (getattr(db, "run_on_commit", None) or [])):
        transaction.on_commit(_nudge)  # one nudge per outermost transaction, however many enqueue() calls it made
    return written


def _nudge() -> None:
    if not getattr(settings, "HUB", {}).get(
        "STOCK_PUSH_ON_COMMIT", True
    ):  # the stock outbox's switch, for tests/benches
        return
    try:
        nudge.enqueue("catalog.drain_item_outbox", retry=False)
    except Exception as exc:  # broker down: the beat sweep drains the rows
        log.warning("item outbox nudge lost (%s); the beat sweep will drain it", exc)


@dataclass
class DrainResult:
    connection: str
    sent: int = 0
    dropped: int = 0
    not_on_storefront: int = 0
    error: str = ""
    skus: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _claim(conn: Connection, limit: int) -> tuple[str, list[int]]:
    now = timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        ids = list(
            PendingItemSync.objects.filter(connection=conn)
            .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            PendingItemSync.objects.filter(pk__in=ids).update(claim_token=token)
    return token, ids


def _done(token: str, row_ids: list[int]) -> None:
    """Delete the rows sent, unless a change arrived meanwhile (its upsert cleared the token)."""
    PendingItemSync.objects.filter(pk__in=row_ids, claim_token=token).delete()


def _failed(conn: Connection, row_ids: list[int], exc: Exception) -> None:
    rows = PendingItemSync.objects.filter(pk__in=row_ids)
    attempts = max(rows.values_list("attempts", flat=True), default=0) + 1
    delay = min(3600, 30 * 2 ** min(attempts, 7))
    from django.db.models import F

    rows.update(
        attempts=F("attempts") + 1,
        not_before=timezone.now() + timedelta(seconds=delay),
        last_error=str(exc)[:2000],
        claim_token="",
    )
    kind, key = error_key(exc, conn.name, OPERATION)
    raise_exception(
        kind,
        key,
        f"Item records to {conn.name} failed",
        message=str(exc)[:2000],
        connection=conn,
        context={"operation": OPERATION, "error": type(exc).__name__, "items": len(row_ids), "retry_in_seconds": delay},
    )


def drain(conn: Connection, limit: int = CLAIM) -> DrainResult:
    """Send one claimed batch of ``conn``'s outbox rows (see the module docstring)."""
    from connectors.registry import get_connector

    out = DrainResult(conn.name)
    token, row_ids = _claim(conn, limit)
    if not row_ids:
        return out
    items = list(Item.objects.filter(pending_syncs__pk__in=row_ids).order_by("sku"))
    try:
        connector = get_connector(conn)
        if conn.system_type in STOREFRONT_SYSTEMS:
            out.not_on_storefront = check_storefront_items(conn, connector, items)
        elif conn.system_type == SystemType.WAIR_REPLENISHMENT:
            out.sent = connector.push_items([planner_variant(i) for i in items if not i.is_bundle])
        elif conn.system_type == SystemType.INVENTORY_PLANNER:
            out.sent = connector.push_variants([planner_variant(i) for i in items if not i.is_bundle])
        else:
            out.sent = _warehouse_products(conn, connector, [i for i in items if not i.is_bundle])
    except NotImplementedError:
        out.dropped = len(row_ids)  # this system needs no product record
    except errors.ConnectorError as exc:
        _failed(conn, row_ids, exc)
        out.error = str(exc)[:500]
        return out
    _done(token, row_ids)
    clear(transport_keys(conn.name, OPERATION), reason="item records delivered")
    out.skus = [i.sku for i in items][:20]
    return out


def drain_all(limit: int = CLAIM, time_budget: float = 60.0) -> list[dict]:
    """Batches of every connection with due rows, round after round, until none is due or ``time_budget`` seconds
    have passed (a 40,000-item import drains in one run, not one batch per beat tick). A connection whose batch
    failed is not retried in the same run."""
    import time

    deadline = time.monotonic() + time_budget
    totals: dict[str, dict] = {}
    failed: set[int] = set()
    while time.monotonic() < deadline:
        now = timezone.now()
        due = (
            PendingItemSync.objects.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
            .exclude(connection_id__in=failed)
            .values("connection_id")
            .distinct()
        )
        conns = list(Connection.objects.filter(pk__in=due, enabled=True).order_by("pk"))
        if not conns:
            break
        for c in conns:
            r = drain(c, limit)
            t = totals.setdefault(
                c.name, {"connection": c.name, "sent": 0, "dropped": 0, "not_on_storefront": 0, "error": ""}
            )
            t["sent"] += r.sent
            t["dropped"] += r.dropped
            t["not_on_storefront"] += r.not_on_storefront
            if r.error:
                t["error"] = r.error
                failed.add(c.pk)
    return list(totals.values())


def planner_variant(item: Item):
    from connectors.base import PlannerVariant

    return PlannerVariant(
        sku=item.sku,
        title=item.name or item.sku,
        product_id=item.parent_sku or item.sku,
        barcode=item.barcode,
        is_bundle=item.is_bundle,
        updated_at=item.updated_at,
    )


def _warehouse_products(conn: Connection, connector, items: list[Item]) -> int:
    from connectors.base import WarehouseProduct as ProductSpec

    if not items:
        return 0
    ids = connector.sync_products(
        [ProductSpec(sku=i.sku, description=i.name or i.sku, barcode=i.barcode) for i in items]
    )
    by_sku = {i.sku: i for i in items}
    rows = [
        WarehouseProduct(connection=conn, item=by_sku[s], external_id=str(e))
        for s, e in ids.items()
        if s in by_sku and e
    ]
    WarehouseProduct.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["connection", "item"],
        update_fields=["external_id", "synced_at"],
        batch_size=1000,
    )
    return len(rows)


# --- the storefront side ---------------------------------------------------------------------------------------
def storefront_skus(conn: Connection, items: list[Item]) -> dict[str, Item]:
    """{storefront sku: item}: the items' active mappings on ``conn``'s channels (or global), else the master SKU."""
    by_id = {i.pk: i for i in items}
    out: dict[str, Item] = {}
    mapped = set()
    for item_id, sku in (
        SkuMapping.objects.filter(item_id__in=list(by_id), active=True)
        .filter(Q(channel__isnull=True) | Q(channel__connection=conn))
        .values_list("item_id", "storefront_sku")
    ):
        out[sku] = by_id[item_id]
        mapped.add(item_id)
    for i in items:
        if i.pk not in mapped:
            out[i.sku] = i
    return out


def _listed(connector, skus: list[str]) -> set[str]:
    """Which of ``skus`` the storefront sells: its own targeted look-up when it has one, else its SKU list."""
    if hasattr(connector, "skus_on_sale"):
        return set(connector.skus_on_sale(skus))
    wanted = set(skus)
    return {s for s in connector.list_skus() if s in wanted}


def not_on_storefront_key(conn: Connection, sku: str) -> str:
    return kinds.key("not_on_storefront", conn.name, sku)


def check_storefront_items(conn: Connection, connector, items: list[Item]) -> int:
    """File ``not_on_storefront`` for the items' storefront SKUs the storefront does not sell; clear the rest."""
    wanted = storefront_skus(conn, items)
    listed = _listed(connector, sorted(wanted))
    problems = [
        Problem(
            kind="not_on_storefront",
            key=not_on_storefront_key(conn, sku),
            severity="info",
            connection_id=conn.pk,
            sku=sku,
            title=f"{item.sku} is not on the storefront {conn.name} yet",
            message=f"The item master has {item.sku!r}{'' if sku == item.sku else f' (storefront SKU {sku!r})'}, but {conn.name} "
            f"does not sell it: no stock is pushed for it until the storefront lists it (the product is published).",
            context={
                "master_sku": item.sku,
                "storefront_sku": sku,
                "connection": conn.name,
                "action": "check_catalogue",
            },
        )
        for sku, item in sorted(wanted.items())
        if sku not in listed
    ]
    raise_many(problems)
    clear([not_on_storefront_key(conn, s) for s in listed], reason="listed on the storefront")
    return len(problems)


def check_storefront_skus(conn: Connection, skus: Iterable[str]) -> dict:
    """A storefront says (commercetools Message) that these SKUs are new on it: re-read them from the storefront
    (a Message authenticates nothing), clear their ``not_on_storefront`` records, re-queue their stock, and audit
    the ones the hub has no mapping for (``unknown_sku`` / ``sku_mismatch``) — without waiting for the nightly
    audit."""
    from connectors.registry import get_connector
    from integration_hub.inventory import outbox

    from .audit import audit_skus

    wanted = sorted({s for s in skus if isinstance(s, str) and s.strip()})
    if not wanted:
        return {"listed": 0}
    connector = get_connector(conn)
    listed = sorted(_listed(connector, wanted))
    cleared = clear([not_on_storefront_key(conn, s) for s in listed], reason="published on the storefront")
    audit = audit_skus(conn, listed, partial=True) if listed else None
    item_ids = set(
        SkuMapping.objects.filter(storefront_sku__in=listed, active=True)
        .filter(Q(channel__isnull=True) | Q(channel__connection=conn))
        .values_list("item_id", flat=True)
    )
    item_ids |= set(Item.objects.filter(sku__in=listed).values_list("pk", flat=True))
    requeued = 0
    if item_ids:
        from integration_hub.inventory.models import PendingPush

        requeued = outbox.enqueue(
            sorted(item_ids), priority=PendingPush.Priority.ROUTINE, reason="published on the storefront"
        )
        # a push refused while the product was missing waits out a back-off: the product is there now
        PendingPush.objects.filter(item_id__in=item_ids, channel__connection=conn).update(not_before=None)
        outbox.kick()
    return {
        "listed": len(listed),
        "cleared": cleared,
        "pushes_queued": requeued,
        "unknown": audit.unknown if audit else 0,
        "mismatches": audit.mismatches if audit else 0,
    }
