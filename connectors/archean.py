"""Archean R247 Stock as InventoryMaster + Warehouse (fulfilment).

Wire API: see :mod:`connectors.sandbox.archean` (modelled — no public R247 reference was found).
Patterns follow :mod:`connectors.wair`.

- Stock: ``/stock/changes`` feed with an opaque ``next_cursor`` and signed pushes
  (``{"type": "stock.changed", "data": [...]}``, ``X-Hub-Signature``) to ``/hooks/stock/<connection>/``.
  Buckets SALEABLE → available, QUARANTINE → inspection, DAMAGED → damaged, TRANSIT → in_transit;
  ``on_hand`` is absolute. Malformed rows are carried raw so the hub's validator rejects just that row.
- Orders: ``POST /sales-orders`` with ``Idempotency-Key`` = the hub order ref (and ``reference`` equal
  to it); a replay answers 200 + ``Idempotent-Replayed: true`` → ``Acknowledgement(duplicate=True)``.
- Shipped: **item fulfilment records are the only trigger**. ``dispatches_since`` reads
  ``/item-fulfilments`` and each record becomes one Dispatch (``ref`` = fulfilment id, ``complete`` =
  ``order_fully_fulfilled``). A sales-order status such as "SHIPPED" without a fulfilment record is
  never turned into a Dispatch.
- ``send_fulfilment`` posts a storefront-side fulfilment (ship-from-store / click & collect).

Connection: ``base_url`` = API root (sandbox ``http://127.0.0.1:8765/archean``), secret = API key
(``Authorization: Bearer``). options: ``page_size`` (default 500).
"""
from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import quote

from . import errors
from .base import (Acknowledgement, Connector, Dispatch, Fulfilment, InventoryMaster, Page, Parcel, StockChange, Warehouse,
                   WarehouseOrder)
from .http import HeaderAuth, HttpClient
from .parsing import ParsedBatch, RowError as _RowError, parse_iso as _dt, parse_rows, to_iso as _iso

API = "/api/v2"
STATUS_EVENTS = {"sales_order.status_changed", "sales_order.updated"}  # acknowledged and ignored: not shipments
STATE_FROM_WIRE = {"SALEABLE": "available", "QUARANTINE": "inspection", "DAMAGED": "damaged", "TRANSIT": "in_transit"}


def _addr(a) -> dict:
    if a is None:
        return {}
    return {"first_name": a.first_name, "last_name": a.last_name, "company": a.company, "line1": a.street, "line2": a.street2,
            "city": a.city, "region": a.region, "postcode": a.postal_code, "country": a.country, "phone": a.phone, "email": a.email}


def _error_detail(exc: errors.ConnectorError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return "; ".join(f"{e.get('code')}: {e.get('detail')}" for e in body.get("errors") or [] if isinstance(e, dict)) or str(exc)


class ArcheanConnector(Connector, InventoryMaster, Warehouse):
    system_type = "archean"

    def __init__(self, connection, client=None):
        self.page_size = int((connection.options or {}).get("page_size") or 500)
        super().__init__(connection, client)

    def build_client(self):
        return HttpClient.for_connection(self.connection, auth=HeaderAuth("Authorization", f"Bearer {self.connection.get_secret()}"))

    # --- inventory master ----------------------------------------------------------------------------
    @staticmethod
    def stock_change_from_row(row: Any, index: int = 0) -> StockChange:
        if not isinstance(row, dict):
            return StockChange(sku=None, location=None, quantity=None, ref=f"row-{index}")  # type: ignore[arg-type]
        qty = row.get("on_hand")
        if isinstance(qty, str) and qty.strip().lstrip("-").isdigit():
            qty = int(qty)
        bucket = row.get("bucket")
        state = STATE_FROM_WIRE.get(str(bucket).upper(), bucket) if bucket not in (None, "") else "available"
        when = row.get("changed_at")
        try:
            when = _dt(when)
        except ValueError:
            pass
        loc = row.get("store_code")
        return StockChange(sku=row.get("item_code"), location=str(loc) if loc not in (None, "") else None, quantity=qty,
                           state=state, changed_at=when, ref=str(row.get("change_id") or ""))

    def stock_changes(self, cursor: str) -> Page:
        params = {"limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        body = self.client.get(f"{API}/stock/changes", params=params).json()
        rows = body.get("data")
        if not isinstance(rows, list):
            raise errors.BadDataError("R247 stock/changes answer has no 'data' list", body=body, system="archean")
        return Page([self.stock_change_from_row(r, i) for i, r in enumerate(rows)], str(body.get("next_cursor") or cursor or ""),
                    bool(body.get("has_more")))

    def parse_stock_webhook(self, payload: dict) -> list[StockChange]:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise errors.BadDataError("R247 stock push: 'data' must be a list", body=payload, system="archean")
        if payload.get("type") not in (None, "stock.changed"):
            raise errors.BadDataError(f"R247 stock push: unexpected type {payload.get('type')!r}", body=payload, system="archean")
        return [self.stock_change_from_row(r, i) for i, r in enumerate(payload["data"])]

    def stock_snapshot(self, skus: Iterable[str] | None = None) -> Iterable[StockChange]:
        sku_list = list(dict.fromkeys(skus)) if skus is not None else None
        chunks = [None] if sku_list is None else [sku_list[i:i + 100] for i in range(0, len(sku_list), 100)]
        for chunk in chunks:
            page = 1
            while True:
                params = {"page": page, "per_page": self.page_size}
                if chunk:
                    params["item_code"] = ",".join(chunk)
                body = self.client.get(f"{API}/stock", params=params).json()
                rows = body.get("data")
                if not isinstance(rows, list):
                    raise errors.BadDataError("R247 stock answer has no 'data' list", body=body, system="archean")
                for i, row in enumerate(rows):
                    yield self.stock_change_from_row(row, i)
                meta = body.get("meta") or {}
                if not rows or page * int(meta.get("per_page") or self.page_size) >= int(meta.get("total") or 0):
                    break
                page += 1

    # --- warehouse ------------------------------------------------------------------------------------
    @staticmethod
    def order_body(order: WarehouseOrder) -> dict:
        return {"reference": order.order_ref, "order_number": order.order_number, "channel": order.channel,
                "ordered_at": _iso(order.placed_at), "currency": order.currency, "total_cents": order.total_cents,
                "customer_email": order.customer_email, "service": order.shipping_method, "carrier": order.carrier,
                "delivery": _addr(order.shipping_address), "invoice": _addr(order.billing_address),
                "gift_message": order.gift_message, "delivery_notes": order.delivery_notes,
                "custom_fields": dict(order.custom_fields or {}),
                # a bundle's own line: ``pickable: false`` (paperwork only); its components are fulfilled
                "lines": [{"line_ref": l.line_id, "item_code": l.sku, "quantity": l.quantity,
                           "parent_line_ref": l.parent_line_id or None, "pickable": l.pickable, "unit_price_cents": l.unit_price_cents,
                           "custom_fields": dict(l.custom_fields or {})} for l in order.lines]}

    def send_order(self, order: WarehouseOrder) -> Acknowledgement:
        try:
            resp = self.client.post(f"{API}/sales-orders", json=self.order_body(order),
                                    headers={"Idempotency-Key": order.order_ref}, ok=(200, 201))
        except errors.BadDataError as exc:
            raise errors.BadDataError(f"R247 rejected sales order {order.order_ref}: {_error_detail(exc)}", status=exc.status,
                                      body=exc.body, system="archean") from exc
        data = (resp.json() or {}).get("data") or {}
        if not data.get("id"):
            raise errors.RetryableError(f"R247 answered {resp.status_code} without a sales order id", body=data, system="archean")
        duplicate = resp.status_code == 200 or resp.headers.get("Idempotent-Replayed", "").lower() == "true"
        try:
            received = _dt(data.get("created_at"))
        except (ValueError, TypeError):
            received = None
        return Acknowledgement(order.order_ref, str(data["id"]), duplicate=duplicate, received_at=received)

    def order_status(self, order_ref: str) -> str | None:
        try:
            return str((self.client.get(f"{API}/sales-orders/{quote(order_ref, safe='')}").json().get("data") or {}).get("status") or "")
        except errors.NotFoundError:
            return None

    def cancel_order(self, order_ref: str) -> str:
        """``POST /sales-orders/{ref}/cancel`` (Idempotency-Key) → "CANCELLED". R247 refuses (409
        ``already_fulfilled``) once any item fulfilment exists: raised as PermanentError."""
        try:
            resp = self.client.post(f"{API}/sales-orders/{quote(order_ref, safe='')}/cancel", json={}, ok=(200,),
                                    headers={"Idempotency-Key": f"{order_ref}:cancel"})
        except errors.ConflictError as exc:
            raise errors.PermanentError(f"R247 refuses to cancel {order_ref}: {_error_detail(exc)}", status=exc.status,
                                        body=exc.body, system="archean") from exc
        return str(((resp.json() or {}).get("data") or {}).get("status") or "")

    def dispatches_for(self, order_ref: str) -> list[Dispatch]:
        """Item fulfilments of one sales order (``/item-fulfilments?sales_order_reference=``); NotFoundError if
        R247 does not have the order."""
        self.client.get(f"{API}/sales-orders/{quote(order_ref, safe='')}")  # 404 → NotFoundError
        body = self.client.get(f"{API}/item-fulfilments", params={"sales_order_reference": order_ref, "limit": self.page_size}).json()
        rows = body.get("data")
        if not isinstance(rows, list):
            raise errors.BadDataError("R247 item-fulfilments answer has no 'data' list", body=body, system="archean")
        return [d for d in self._rows(rows) if d.order_ref == order_ref]

    @staticmethod
    def dispatch_from_fulfilment(row: Any) -> Dispatch:
        if not isinstance(row, dict):
            raise _RowError("", "item fulfilment is not an object")
        ref = row.get("sales_order_reference")
        if not isinstance(ref, str) or not ref:
            raise _RowError("sales_order_reference", "sales_order_reference is missing")
        if not row.get("id"):
            raise _RowError("id", "item fulfilment id is missing")
        try:
            when = _dt(row.get("fulfilled_at"))
        except ValueError:
            raise _RowError("fulfilled_at", f"{row.get('fulfilled_at')!r} is not a timestamp") from None
        lines = []
        for j, line in enumerate(row.get("lines") or []):
            qty = line.get("quantity") if isinstance(line, dict) else None
            if not isinstance(line, dict) or not line.get("item_code") or isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                raise _RowError(f"lines[{j}]", f"fulfilment line {line!r} needs item_code and a positive quantity")
            lines.append((str(line["item_code"]), qty))
        if not lines:
            raise _RowError("lines", "an item fulfilment needs at least one line")
        parcel = Parcel(carrier=str(row.get("carrier") or ""), tracking_number=str(row.get("tracking_number") or ""),
                        tracking_url=str(row.get("tracking_url") or ""), lines=lines)
        return Dispatch(order_ref=ref, warehouse_ref=str(row.get("sales_order_id") or ""), dispatched_at=when, parcels=[parcel],
                        ref=str(row["id"]), complete=bool(row.get("order_fully_fulfilled", False)))

    def _rows(self, rows: list) -> ParsedBatch:
        return parse_rows(rows, self.dispatch_from_fulfilment, ("id", "sales_order_reference"))

    def dispatches_since(self, cursor: str) -> Page:
        """Item fulfilment records since ``cursor`` as Dispatch items (a ParsedBatch; see ``.rejected``)."""
        params = {"limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        body = self.client.get(f"{API}/item-fulfilments", params=params).json()
        rows = body.get("data")
        if not isinstance(rows, list):
            raise errors.BadDataError("R247 item-fulfilments answer has no 'data' list", body=body, system="archean")
        return Page(self._rows(rows), str(body.get("next_cursor") or cursor or ""), bool(body.get("has_more")))

    def parse_dispatch_webhook(self, payload: dict) -> ParsedBatch:
        if isinstance(payload, dict) and payload.get("type") in STATUS_EVENTS:
            # order status pushes (e.g. "SHIPPED") are not evidence of shipment: only item fulfilments are
            return ParsedBatch([])
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise errors.BadDataError("R247 fulfilment push: 'data' must be a list", body=payload, system="archean")
        if payload.get("type") != "item_fulfilment.created":
            raise errors.BadDataError(f"R247 push of type {payload.get('type')!r} is not an item fulfilment", body=payload,
                                      system="archean")
        return self._rows(payload["data"])

    def send_fulfilment(self, fulfilment: Fulfilment) -> str:
        body = {"sales_order_reference": fulfilment.order_ref, "store_code": fulfilment.location or None,
                "fulfilled_at": _iso(fulfilment.fulfilled_at),
                "lines": [{"item_code": sku, "quantity": qty} for sku, qty in fulfilment.lines]}
        resp = self.client.post(f"{API}/item-fulfilments", json=body, ok=(200, 201),
                                headers={"Idempotency-Key": f"{fulfilment.order_ref}:{fulfilment.fulfilment_ref}"})
        fid = ((resp.json() or {}).get("data") or {}).get("id")
        if not fid:
            raise errors.RetryableError(f"R247 answered {resp.status_code} without a fulfilment id", system="archean")
        return str(fid)
