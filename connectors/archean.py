"""Archean R247 Stock as InventoryMaster + Warehouse (fulfilment).

**Modelled on no published API.** No public Archean R247 Stock API reference was found: every path,
field, header and state name below is an *assumption*, mirrored by the emulator in
:mod:`connectors.sandbox.archean`. All of them live in one place, :class:`ArcheanShape` (``SHAPE``): a real
tenant's shape is one change there — or, per connection, ``options["shape"]`` overriding any of its
fields (e.g. ``{"api": "/rest/v1", "stock_row": {..., "sku": "sku_code"}}``). Patterns follow
:mod:`connectors.wair`.

- Stock: a change feed with an opaque cursor, and signed pushes (``{"type": "stock.changed", "data": [...]}``)
  to ``/hooks/stock/<connection>/``. Buckets SALEABLE → available, QUARANTINE → inspection, DAMAGED →
  damaged, TRANSIT → in_transit; the quantity is absolute. Malformed rows are carried raw so the hub's
  validator rejects just that row.
- Orders: ``POST <api>/sales-orders`` with ``Idempotency-Key`` = the hub order ref (and ``reference`` equal
  to it); a replay answers 200 + ``Idempotent-Replayed: true`` → ``Acknowledgement(duplicate=True)``.
- Shipped: **item fulfilment records are the only trigger**. ``dispatches_since`` reads the item
  fulfilments feed and each record becomes one Dispatch (``ref`` = fulfilment id, ``complete`` = the
  record's fully-fulfilled flag). A sales-order status such as "SHIPPED" without a fulfilment record is
  never turned into a Dispatch.
- ``send_fulfilment`` posts a storefront-side fulfilment (ship-from-store / click & collect).
- Items (the SKU master, issue 17): ``master_items(updated_since)`` reads ``GET <api>/items`` paged like the stock
  levels (``page`` / ``per_page``, ``meta.total``), filtered by ``updated_since`` (ISO 8601) — as modelled as
  the rest; each row becomes a :class:`~connectors.base.MasterItem` carrying the raw values, validated by the hub.

Connection: ``base_url`` = API root (sandbox ``http://127.0.0.1:8765/archean``), secret = API key
(``Authorization: Bearer``). options: ``page_size`` (default 500), ``shape`` (see above).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote

from . import errors
from .base import (
    Acknowledgement,
    Connector,
    Dispatch,
    Fulfilment,
    InventoryMaster,
    MasterItem,
    Page,
    Parcel,
    StockChange,
    Warehouse,
    WarehouseOrder,
)
from .http import HeaderAuth, HttpClient
from .parsing import ParsedBatch, RowError as _RowError, parse_iso as _dt, parse_rows, to_iso as _iso


def _d(**kw):
    return field(default_factory=lambda: dict(kw))


# --- the assumed wire shape: every Archean-specific name, in one place ---------------------------------
@dataclass(frozen=True)
class ArcheanShape:
    """Paths, headers, field and state names of the (modelled) R247 API; nothing Archean-specific is spelled
    anywhere else in this module. Dicts map the hub's concept (key) to the wire name (value)."""

    # paths, below the connection's base_url
    api: str = "/api/v2"
    stock_changes: str = "/stock/changes"
    stock: str = "/stock"
    sales_orders: str = "/sales-orders"
    cancel: str = "/cancel"
    item_fulfilments: str = "/item-fulfilments"
    items: str = "/items"
    # headers
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    idempotency_header: str = "Idempotency-Key"
    replayed_header: str = "Idempotent-Replayed"
    # envelopes, paging and query parameters
    envelope: dict = _d(
        data="data",
        errors="errors",
        error_code="code",
        error_detail="detail",
        next_cursor="next_cursor",
        has_more="has_more",
        meta="meta",
        per_page="per_page",
        total="total",
        id="id",
        type="type",
    )
    params: dict = _d(
        limit="limit",
        cursor="cursor",
        page="page",
        per_page="per_page",
        sku="item_code",
        order_reference="sales_order_reference",
        updated_since="updated_since",
    )
    # item master rows (wire field of each MasterItem attribute); size / colour land in MasterItem.attributes
    item_row: dict = _d(
        sku="item_code",
        name="description",
        parent_sku="style_code",
        size="size_code",
        colour="colour_code",
        barcode="barcode",
        weight="weight",
        weight_unit="weight_uom",
        unit_cost="unit_cost",
        active="active",
        updated_at="updated_at",
    )
    # stock rows and their buckets (wire → hub inventory state)
    stock_row: dict = _d(
        sku="item_code",
        location="store_code",
        quantity="on_hand",
        state="bucket",
        changed_at="changed_at",
        ref="change_id",
    )
    states: dict = _d(SALEABLE="available", QUARANTINE="inspection", DAMAGED="damaged", TRANSIT="in_transit")
    # pushes
    stock_push_type: str = "stock.changed"
    fulfilment_push_type: str = "item_fulfilment.created"
    status_push_types: tuple = (
        "sales_order.status_changed",
        "sales_order.updated",
    )  # acknowledged, ignored: not shipments
    # sales order body (WarehouseOrder / WarehouseOrderLine / Address attribute → wire field) and answer
    order: dict = _d(
        order_ref="reference",
        order_number="order_number",
        channel="channel",
        placed_at="ordered_at",
        currency="currency",
        total_cents="total_cents",
        customer_email="customer_email",
        shipping_method="service",
        carrier="carrier",
        shipping_address="delivery",
        billing_address="invoice",
        gift_message="gift_message",
        delivery_notes="delivery_notes",
        custom_fields="custom_fields",
        lines="lines",
        status="status",
        created_at="created_at",
    )
    line: dict = _d(
        line_id="line_ref",
        sku="item_code",
        quantity="quantity",
        parent_line_id="parent_line_ref",
        pickable="pickable",
        unit_price_cents="unit_price_cents",
        custom_fields="custom_fields",
    )
    address: dict = _d(
        first_name="first_name",
        last_name="last_name",
        company="company",
        street="line1",
        street2="line2",
        city="city",
        region="region",
        postal_code="postcode",
        country="country",
        phone="phone",
        email="email",
    )
    # item fulfilment records (read, and posted for storefront-side fulfilments)
    fulfilment: dict = _d(
        id="id",
        order_ref="sales_order_reference",
        order_id="sales_order_id",
        fulfilled_at="fulfilled_at",
        carrier="carrier",
        tracking_number="tracking_number",
        tracking_url="tracking_url",
        lines="lines",
        sku="item_code",
        quantity="quantity",
        complete="order_fully_fulfilled",
        location="store_code",
    )

    def path(self, *parts: str) -> str:
        return self.api + "".join(parts)

    @classmethod
    def with_overrides(cls, overrides: dict | None) -> "ArcheanShape":
        """``SHAPE`` with some fields replaced (dict fields are merged key by key)."""
        if not overrides:
            return SHAPE
        if not isinstance(overrides, dict):
            raise errors.PermanentError("options.shape must be an object", system="archean")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise errors.PermanentError(
                f"options.shape names unknown Archean shape fields: {', '.join(unknown)}", system="archean"
            )
        merged = {
            k: ({**getattr(SHAPE, k), **v} if isinstance(getattr(SHAPE, k), dict) and isinstance(v, dict) else v)
            for k, v in overrides.items()
        }
        return dataclasses.replace(SHAPE, **merged)


SHAPE = ArcheanShape()


class ArcheanConnector(Connector, InventoryMaster, Warehouse):
    system_type = "archean"
    ITEM_ATTRIBUTES = ("size", "colour")  # the hub's variant attributes (Item.attributes keys) an item row carries
    api_document = ""  # none published
    modelled = True

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.page_size = int(opts.get("page_size") or 500)
        self.shape = ArcheanShape.with_overrides(opts.get("shape"))
        super().__init__(connection, client)

    def build_client(self):
        s = getattr(self, "shape", SHAPE)
        return HttpClient.for_connection(
            self.connection, auth=HeaderAuth(s.auth_header, f"{s.auth_scheme} {self.connection.get_secret()}")
        )

    # --- helpers ------------------------------------------------------------------------------------
    def _rows_of(self, body: Any, what: str) -> list:
        rows = body.get(self.shape.envelope["data"]) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise errors.BadDataError(
                f"R247 {what} answer has no '{self.shape.envelope['data']}' list", body=body, system="archean"
            )
        return rows

    def _one(self, resp) -> dict:
        body = resp.json() if resp.content else {}
        return (body or {}).get(self.shape.envelope["data"]) or {} if isinstance(body, dict) else {}

    def _error_detail(self, exc: errors.ConnectorError) -> str:
        e = self.shape.envelope
        body = exc.body if isinstance(exc.body, dict) else {}
        return "; ".join(
            f"{x.get(e['error_code'])}: {x.get(e['error_detail'])}"
            for x in body.get(e["errors"]) or []
            if isinstance(x, dict)
        ) or str(exc)

    def _addr(self, a) -> dict:
        if a is None:
            return {}
        return {wire: getattr(a, attr) for attr, wire in self.shape.address.items()}

    def _order_path(self, order_ref: str, *more: str) -> str:
        return self.shape.path(self.shape.sales_orders, "/" + quote(order_ref, safe=""), *more)

    # --- inventory master ----------------------------------------------------------------------------
    def stock_change_from_row(self, row: Any, index: int = 0) -> StockChange:
        f = self.shape.stock_row
        if not isinstance(row, dict):
            return StockChange(sku=None, location=None, quantity=None, ref=f"row-{index}")  # type: ignore[arg-type]
        qty = row.get(f["quantity"])
        if isinstance(qty, str) and qty.strip().lstrip("-").isdigit():
            qty = int(qty)
        bucket = row.get(f["state"])
        state = self.shape.states.get(str(bucket).upper(), bucket) if bucket not in (None, "") else "available"
        when = row.get(f["changed_at"])
        try:
            when = _dt(when)
        except ValueError:
            pass
        loc = row.get(f["location"])
        return StockChange(
            sku=row.get(f["sku"]),
            location=str(loc) if loc not in (None, "") else None,
            quantity=qty,
            state=state,
            changed_at=when,
            ref=str(row.get(f["ref"]) or ""),
        )

    def stock_changes(self, cursor: str) -> Page:
        e, p = self.shape.envelope, self.shape.params
        params = {p["limit"]: self.page_size}
        if cursor:
            params[p["cursor"]] = cursor
        body = self.client.get(self.shape.path(self.shape.stock_changes), params=params).json()
        rows = self._rows_of(body, "stock changes")
        return Page(
            [self.stock_change_from_row(r, i) for i, r in enumerate(rows)],
            str(body.get(e["next_cursor"]) or cursor or ""),
            bool(body.get(e["has_more"])),
        )

    def parse_stock_webhook(self, payload: dict) -> list[StockChange]:
        e = self.shape.envelope
        if not isinstance(payload, dict) or not isinstance(payload.get(e["data"]), list):
            raise errors.BadDataError(f"R247 stock push: '{e['data']}' must be a list", body=payload, system="archean")
        if payload.get(e["type"]) not in (None, self.shape.stock_push_type):
            raise errors.BadDataError(
                f"R247 stock push: unexpected type {payload.get(e['type'])!r}", body=payload, system="archean"
            )
        return [self.stock_change_from_row(r, i) for i, r in enumerate(payload[e["data"]])]

    def stock_snapshot(self, skus: Iterable[str] | None = None) -> Iterable[StockChange]:
        e, p = self.shape.envelope, self.shape.params
        sku_list = list(dict.fromkeys(skus)) if skus is not None else None
        chunks = [None] if sku_list is None else [sku_list[i : i + 100] for i in range(0, len(sku_list), 100)]
        for chunk in chunks:
            page = 1
            while True:
                params = {p["page"]: page, p["per_page"]: self.page_size}
                if chunk:
                    params[p["sku"]] = ",".join(chunk)
                body = self.client.get(self.shape.path(self.shape.stock), params=params).json()
                rows = self._rows_of(body, "stock")
                for i, row in enumerate(rows):
                    yield self.stock_change_from_row(row, i)
                meta = body.get(e["meta"]) or {}
                if not rows or page * int(meta.get(e["per_page"]) or self.page_size) >= int(meta.get(e["total"]) or 0):
                    break
                page += 1

    # --- item master ----------------------------------------------------------------------------------
    def master_item_from_row(self, row: Any) -> MasterItem | None:
        f = self.shape.item_row
        if not isinstance(row, dict) or row.get(f["sku"]) in (None, ""):
            return None
        v = {k: ("" if row.get(w) is None else str(row.get(w)).strip()) for k, w in f.items()}
        try:
            when = _dt(row.get(f["updated_at"]))
        except ValueError:
            when = None
        attrs = {k: v[k] for k in self.ITEM_ATTRIBUTES if v[k]}
        active = row.get(f["active"])
        return MasterItem(
            sku=v["sku"],
            name=v["name"],
            parent_sku=v["parent_sku"],
            attributes=attrs,
            barcode=v["barcode"],
            weight=v["weight"],
            weight_unit=v["weight_unit"],
            unit_cost=v["unit_cost"],
            active=active is not False and str(active).lower() not in ("false", "0", "no"),
            updated_at=when,
        )

    def master_items(self, updated_since=None, skus: Iterable[str] | None = None) -> Iterable[MasterItem | None]:
        """Every item the master lists (changed since ``updated_since``; only ``skus``, 100 per request, when
        given), page by page. A row without a SKU yields None (the pull counts it as refused)."""
        e, p = self.shape.envelope, self.shape.params
        sku_list = list(dict.fromkeys(skus)) if skus is not None else None
        chunks = [None] if sku_list is None else [sku_list[i : i + 100] for i in range(0, len(sku_list), 100)]
        for chunk in chunks:
            page = 1
            while True:
                params = {p["page"]: page, p["per_page"]: self.page_size}
                if updated_since is not None:
                    params[p["updated_since"]] = _iso(updated_since)
                if chunk:
                    params[p["sku"]] = ",".join(chunk)
                body = self.client.get(self.shape.path(self.shape.items), params=params).json()
                rows = self._rows_of(body, "items")
                for row in rows:
                    yield self.master_item_from_row(row)
                meta = body.get(e["meta"]) or {}
                if not rows or page * int(meta.get(e["per_page"]) or self.page_size) >= int(meta.get(e["total"]) or 0):
                    break
                page += 1

    # --- warehouse ------------------------------------------------------------------------------------
    def order_body(self, order: WarehouseOrder) -> dict:
        o, ln = self.shape.order, self.shape.line
        # a bundle's own line: ``pickable: false`` (paperwork only); its components are fulfilled
        lines = [
            {
                ln["line_id"]: ol.line_id,
                ln["sku"]: ol.sku,
                ln["quantity"]: ol.quantity,
                ln["parent_line_id"]: ol.parent_line_id or None,
                ln["pickable"]: ol.pickable,
                ln["unit_price_cents"]: ol.unit_price_cents,
                ln["custom_fields"]: dict(ol.custom_fields or {}),
            }
            for ol in order.lines
        ]
        return {
            o["order_ref"]: order.order_ref,
            o["order_number"]: order.order_number,
            o["channel"]: order.channel,
            o["placed_at"]: _iso(order.placed_at),
            o["currency"]: order.currency,
            o["total_cents"]: order.total_cents,
            o["customer_email"]: order.customer_email,
            o["shipping_method"]: order.shipping_method,
            o["carrier"]: order.carrier,
            o["shipping_address"]: self._addr(order.shipping_address),
            o["billing_address"]: self._addr(order.billing_address),
            o["gift_message"]: order.gift_message,
            o["delivery_notes"]: order.delivery_notes,
            o["custom_fields"]: dict(order.custom_fields or {}),
            o["lines"]: lines,
        }

    def send_order(self, order: WarehouseOrder) -> Acknowledgement:
        s = self.shape
        try:
            resp = self.client.post(
                s.path(s.sales_orders),
                json=self.order_body(order),
                headers={s.idempotency_header: order.order_ref},
                ok=(200, 201),
            )
        except errors.BadDataError as exc:
            raise errors.BadDataError(
                f"R247 rejected sales order {order.order_ref}: {self._error_detail(exc)}",
                status=exc.status,
                body=exc.body,
                system="archean",
            ) from exc
        data = self._one(resp)
        if not data.get(s.envelope["id"]):
            raise errors.RetryableError(
                f"R247 answered {resp.status_code} without a sales order id", body=data, system="archean"
            )
        duplicate = resp.status_code == 200 or resp.headers.get(s.replayed_header, "").lower() == "true"
        try:
            received = _dt(data.get(s.order["created_at"]))
        except (ValueError, TypeError):
            received = None
        return Acknowledgement(order.order_ref, str(data[s.envelope["id"]]), duplicate=duplicate, received_at=received)

    def order_status(self, order_ref: str) -> str | None:
        try:
            return str(self._one(self.client.get(self._order_path(order_ref))).get(self.shape.order["status"]) or "")
        except errors.NotFoundError:
            return None

    def cancel_order(self, order_ref: str) -> str:
        """``POST <api>/sales-orders/{ref}/cancel`` (Idempotency-Key) → "CANCELLED". R247 refuses (409
        ``already_fulfilled``) once any item fulfilment exists: raised as PermanentError."""
        s = self.shape
        try:
            resp = self.client.post(
                self._order_path(order_ref, s.cancel),
                json={},
                ok=(200,),
                headers={s.idempotency_header: f"{order_ref}:cancel"},
            )
        except errors.ConflictError as exc:
            raise errors.PermanentError(
                f"R247 refuses to cancel {order_ref}: {self._error_detail(exc)}",
                status=exc.status,
                body=exc.body,
                system="archean",
            ) from exc
        return str(self._one(resp).get(s.order["status"]) or "")

    def dispatches_for(self, order_ref: str) -> list[Dispatch]:
        """Item fulfilments of one sales order; NotFoundError if R247 does not have the order."""
        s = self.shape
        self.client.get(self._order_path(order_ref))  # 404 → NotFoundError
        body = self.client.get(
            s.path(s.item_fulfilments),
            params={s.params["order_reference"]: order_ref, s.params["limit"]: self.page_size},
        ).json()
        return [d for d in self._rows(self._rows_of(body, "item fulfilments")) if d.order_ref == order_ref]

    def dispatch_from_fulfilment(self, row: Any) -> Dispatch:
        f = self.shape.fulfilment
        if not isinstance(row, dict):
            raise _RowError("", "item fulfilment is not an object")
        ref = row.get(f["order_ref"])
        if not isinstance(ref, str) or not ref:
            raise _RowError(f["order_ref"], f"{f['order_ref']} is missing")
        if not row.get(f["id"]):
            raise _RowError(f["id"], "item fulfilment id is missing")
        try:
            when = _dt(row.get(f["fulfilled_at"]))
        except ValueError:
            raise _RowError(f["fulfilled_at"], f"{row.get(f['fulfilled_at'])!r} is not a timestamp") from None
        lines = []
        for j, line in enumerate(row.get(f["lines"]) or []):
            qty = line.get(f["quantity"]) if isinstance(line, dict) else None
            if (
                not isinstance(line, dict)
                or not line.get(f["sku"])
                or isinstance(qty, bool)
                or not isinstance(qty, int)
                or qty <= 0
            ):
                raise _RowError(
                    f"{f['lines']}[{j}]", f"fulfilment line {line!r} needs {f['sku']} and a positive {f['quantity']}"
                )
            lines.append((str(line[f["sku"]]), qty))
        if not lines:
            raise _RowError(f["lines"], "an item fulfilment needs at least one line")
        parcel = Parcel(
            carrier=str(row.get(f["carrier"]) or ""),
            tracking_number=str(row.get(f["tracking_number"]) or ""),
            tracking_url=str(row.get(f["tracking_url"]) or ""),
            lines=lines,
        )
        return Dispatch(
            order_ref=ref,
            warehouse_ref=str(row.get(f["order_id"]) or ""),
            dispatched_at=when,
            parcels=[parcel],
            ref=str(row[f["id"]]),
            complete=bool(row.get(f["complete"], False)),
        )

    def _rows(self, rows: list) -> ParsedBatch:
        return parse_rows(
            rows, self.dispatch_from_fulfilment, (self.shape.fulfilment["id"], self.shape.fulfilment["order_ref"])
        )

    def dispatches_since(self, cursor: str, limit: int | None = None) -> Page:
        """Item fulfilment records since ``cursor`` as Dispatch items (a ParsedBatch; see ``.rejected``); ``limit``
        records at most (None: the page size)."""
        s, e, p = self.shape, self.shape.envelope, self.shape.params
        params = {p["limit"]: limit or self.page_size}
        if cursor:
            params[p["cursor"]] = cursor
        body = self.client.get(s.path(s.item_fulfilments), params=params).json()
        rows = self._rows_of(body, "item fulfilments")
        return Page(self._rows(rows), str(body.get(e["next_cursor"]) or cursor or ""), bool(body.get(e["has_more"])))

    def parse_dispatch_webhook(self, payload: dict) -> ParsedBatch:
        s, e = self.shape, self.shape.envelope
        if isinstance(payload, dict) and payload.get(e["type"]) in s.status_push_types:
            # order status pushes (e.g. "SHIPPED") are not evidence of shipment: only item fulfilments are
            return ParsedBatch([])
        if not isinstance(payload, dict) or not isinstance(payload.get(e["data"]), list):
            raise errors.BadDataError(
                f"R247 fulfilment push: '{e['data']}' must be a list", body=payload, system="archean"
            )
        if payload.get(e["type"]) != s.fulfilment_push_type:
            raise errors.BadDataError(
                f"R247 push of type {payload.get(e['type'])!r} is not an item fulfilment",
                body=payload,
                system="archean",
            )
        return self._rows(payload[e["data"]])

    def send_fulfilment(self, fulfilment: Fulfilment) -> str:
        s, f = self.shape, self.shape.fulfilment
        body = {
            f["order_ref"]: fulfilment.order_ref,
            f["location"]: fulfilment.location or None,
            f["fulfilled_at"]: _iso(fulfilment.fulfilled_at),
            f["lines"]: [{f["sku"]: sku, f["quantity"]: qty} for sku, qty in fulfilment.lines],
        }
        resp = self.client.post(
            s.path(s.item_fulfilments),
            json=body,
            ok=(200, 201),
            headers={s.idempotency_header: f"{fulfilment.order_ref}:{fulfilment.fulfilment_ref}"},
        )
        fid = self._one(resp).get(s.envelope["id"])
        if not fid:
            raise errors.RetryableError(f"R247 answered {resp.status_code} without a fulfilment id", system="archean")
        return str(fid)
