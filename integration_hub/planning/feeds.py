"""The demand files a planner pulls from the hub, and the reference data (variants, warehouses) that goes with
the demand.

Inventory Planner's Starter CSV connector fetches *complete* files from permanent URLs once a day, one
warehouse per connector (GET, HEAD on set-up, optional HTTP basic auth). The hub serves, per planner
connection and planner warehouse id:

  /planning/feeds/<connection>/<warehouse>/products.csv       every non-bundle item, with its available stock
                                                              in that warehouse (the hub's stock levels)
  /planning/feeds/<connection>/<warehouse>/sales-orders.csv   every demand line the feed has published for that
                                                              warehouse (``DemandFeedEntry``) with a quantity ≠ 0:
                                                              cancelled lines drop out of the complete file

Access: the connection's feed token, as the HTTP basic password (any user name) or ``?token=``; only its
SHA-256 is stored (:class:`FeedToken`), compared in constant time; a wrong token, an unknown connection or
a connection that is not a pulling planner all answer 401 alike. Responses are streamed row by row from
``.iterator()`` querysets. Tokens are issued with ``manage.py planner_feed_token <connection>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Iterable, Iterator

from django.db.models import Sum

from connectors.base import DemandLine, PlannerAllocation, PlannerVariant, PlannerWarehouse
from integration_hub.catalog.models import Item
from integration_hub.core.models import Connection, PLANNER_SYSTEMS

from .models import DemandFeedEntry, FeedToken

ITER_CHUNK = 2000


# --- tokens ------------------------------------------------------------------------------------------------
def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(connection: Connection) -> str:
    """A new random feed token for ``connection`` (the previous one stops working). Shown once."""
    token = secrets.token_urlsafe(32)
    FeedToken.objects.update_or_create(connection=connection, defaults={"token_sha256": _digest(token)})
    return token


def presented_token(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:6].lower() == "basic ":
        try:
            _, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
            return password
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return ""
    return request.GET.get("token", "")


def authorised_connection(name: str, token: str) -> Connection | None:
    """The pulling planner connection ``name`` if ``token`` is its feed token, else None (constant-time
    comparison; the same answer whatever was wrong)."""
    stored = (
        FeedToken.objects.filter(
            connection__name=name, connection__enabled=True, connection__system_type__in=list(PLANNER_SYSTEMS)
        )
        .select_related("connection")
        .first()
    )
    expected = stored.token_sha256 if stored else "0" * 64
    ok = hmac.compare_digest(_digest(token or ""), expected) and bool(token) and stored is not None
    return stored.connection if ok else None


# --- warehouses ----------------------------------------------------------------------------------------------
def planner_warehouse_map(connection: Connection) -> dict[str, str]:
    """Hub warehouse connection name → the planner's warehouse id (``options["warehouses"]``; default: the name)."""
    return {str(k): str(v) for k, v in ((connection.options or {}).get("warehouses") or {}).items()}


def hub_warehouses(connection: Connection, planner_ids: Iterable[str]) -> dict[str, str]:
    """Hub warehouse connection name → planner id, for the planner ids given."""
    mapping = planner_warehouse_map(connection)
    wanted = set(planner_ids)
    names = set(Connection.objects.filter(name__in=wanted).values_list("name", flat=True))  # ids that are names
    out = {name: mapping.get(name, name) for name in names if mapping.get(name, name) in wanted}
    out.update({name: pid for name, pid in mapping.items() if pid in wanted})
    return out


def planner_warehouses(connection: Connection, planner_ids: Iterable[str]) -> list[PlannerWarehouse]:
    currency = str((connection.options or {}).get("currency") or "")
    return [PlannerWarehouse(id=pid, name=pid, currency=currency) for pid in sorted(set(planner_ids)) if pid]


# --- variants --------------------------------------------------------------------------------------------------
def _stock(connection: Connection, planner_ids: Iterable[str], skus: Iterable[str] | None):
    """``(available, on_hand)``: sku → planner warehouse id → units. On hand = every state but in transit."""
    from integration_hub.inventory.models import StockLevel

    names = hub_warehouses(connection, planner_ids)
    if not names:
        return {}, {}
    qs = StockLevel.objects.filter(location__connection__name__in=list(names)).exclude(state="in_transit")
    if skus is not None:
        qs = qs.filter(item__sku__in=list(skus))
    available: dict[str, dict[str, int]] = {}
    on_hand: dict[str, dict[str, int]] = {}
    for sku, wh, state, qty in (
        qs.values_list("item__sku", "location__connection__name", "state").annotate(q=Sum("quantity")).order_by()
    ):
        for target, wanted in ((on_hand, True), (available, state == "available")):
            if wanted:
                slot = target.setdefault(sku, {})
                slot[names[wh]] = slot.get(names[wh], 0) + int(qty or 0)
    return available, on_hand


def _variant(item: Item, stock) -> PlannerVariant:
    available, on_hand = stock
    return PlannerVariant(
        sku=item.sku,
        title=item.name or item.sku,
        product_id=item.parent_sku or item.sku,
        barcode=item.barcode,
        is_bundle=item.is_bundle,
        stock=available.get(item.sku, {}),
        on_hand=on_hand.get(item.sku, {}),
        updated_at=getattr(item, "updated_at", None),
    )


def planner_variants(connection: Connection, skus: Iterable[str], planner_ids: Iterable[str]) -> list[PlannerVariant]:
    """The item-master variants named by demand lines, with their stock per planner warehouse."""
    skus = sorted(set(skus))
    ids = list(planner_ids)
    stock = _stock(connection, ids, skus)
    return [_variant(i, stock) for i in Item.objects.filter(sku__in=skus).order_by("sku")]


def all_variants(connection: Connection, planner_ids: Iterable[str]) -> Iterator[PlannerVariant]:
    """Every non-bundle item (sales lines name components, never bundles) with its stock in the planner
    warehouses given, streamed."""
    stock = _stock(connection, list(planner_ids), None)
    for item in Item.objects.filter(is_bundle=False).order_by("sku").iterator(chunk_size=ITER_CHUNK):
        yield _variant(item, stock)


def all_planner_warehouse_ids(connection: Connection) -> list[str]:
    """The planner ids of every enabled stock master / warehouse connection."""
    from integration_hub.core.models import MASTER_SYSTEMS

    mapping = planner_warehouse_map(connection)
    names = Connection.objects.filter(enabled=True, system_type__in=list(MASTER_SYSTEMS)).values_list("name", flat=True)
    return sorted({mapping.get(n, n) for n in names})


OPEN_STATES = ("validated", "sent", "acknowledged", "held")  # taken, not yet dispatched: the stock is allocated


def open_allocations(connection: Connection) -> list[PlannerAllocation]:
    """Every unit held by an order not yet dispatched, per (order, sku), at the planner warehouse id of its
    warehouse — bundles as their components (the order's exploded lines). One query."""
    from integration_hub.orders.models import OrderLine

    mapping = planner_warehouse_map(connection)
    acc: dict[str, PlannerAllocation] = {}
    rows = (
        OrderLine.objects.filter(order__state__in=OPEN_STATES, item__isnull=False, item__is_bundle=False)
        .values_list(
            "order__idempotency_key",
            "item__sku",
            "order__warehouse__name",
            "quantity",
            "order__placed_at",
            "order__created_at",
        )
        .order_by("order_id", "id")
    )
    for ref, sku, wh, qty, placed, created in rows.iterator(chunk_size=ITER_CHUNK):
        key = f"{ref}|{sku}"
        if key not in acc:
            acc[key] = PlannerAllocation(
                id=key, sku=sku, location=mapping.get(wh or "", wh or ""), quantity=0, since=placed or created
            )
        acc[key].quantity += qty
    return [a for a in acc.values() if a.quantity > 0 and a.location]


# --- demand lines -------------------------------------------------------------------------------------------------
def published_lines(connection: Connection, planner_id: str) -> Iterator[tuple[DemandLine, object]]:
    """``(line, sent_at)`` for every published line of ``planner_id`` whose quantity is not 0, streamed."""
    qs = (
        DemandFeedEntry.objects.filter(connection=connection, location=planner_id)
        .exclude(quantity=0)
        .order_by("key")
        .values_list(
            "key",
            "order_ref",
            "sku",
            "bundle_sku",
            "channel",
            "location",
            "quantity",
            "is_return",
            "currency",
            "unit_price_cents",
            "ordered_at",
            "sent_at",
            "order__idempotency_key",
        )
    )
    for key, ref, sku, bundle, channel, loc, qty, is_return, currency, price, ordered, sent, order_key in qs.iterator(
        chunk_size=ITER_CHUNK
    ):
        yield (
            DemandLine(
                order_ref=ref or order_key or key.split("|", 1)[0],
                sku=sku,
                quantity=abs(qty),
                channel=channel,
                location=loc,
                ordered_at=ordered,
                bundle_sku=bundle,
                unit_price_cents=price,
                is_return=is_return,
                currency=currency,
                key=key,
            ),
            sent,
        )
