"""Clarus WMS as Warehouse + InventoryMaster.

**Modelled on no published API (yet).** Clarus publishes its API at documentation.claruswms.com (OAuth 2
client credentials + ``X-Clarus-Subdomain``, JSON:API ``goods_outs``, GraphQL stock, webhook events); this
connector still speaks an assumed shape, described in :mod:`connectors.sandbox.clarus` — it is to be
rebuilt on the published one (issue 16). Patterns follow :mod:`connectors.wair`.

- Orders go in as **pick instructions**; ``client_reference`` = the hub's order ref, which Clarus keeps
  unique: a replay answers 409 ``DUPLICATE_REFERENCE`` with the existing ``pick_instruction_id``, which
  this connector turns into ``Acknowledgement(duplicate=True)`` — idempotent end to end.
- A dispatch is **confirmed only when its manifest closes**: ``/dispatches`` lists only dispatches on
  closed manifests, sequenced by close; ``Dispatch.dispatched_at`` is the manifest close time.
- Stock by location and state: AVAILABLE → available, QC_HOLD → inspection (quarantine), DAMAGED →
  damaged, IN_TRANSIT → in_transit. The movement feed carries absolute quantities; its cursor is the last
  sequence number read. Unknown states / malformed rows are passed through raw so the hub's single
  validator (``apply_stock_changes``) rejects exactly that row with an exception record.

Connection: ``base_url`` = API root (sandbox ``http://127.0.0.1:8765/clarus``), secret = API key
(``X-Api-Key``). options: ``page_size`` (default 500), ``client_code`` (sent as ``X-Clarus-Client``).
"""
from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import quote

from . import errors
from .base import (Acknowledgement, Connector, Dispatch, Fulfilment, InventoryMaster, Page, Parcel, StockChange, Warehouse,
                   WarehouseOrder)
from .http import HeaderAuth, HttpClient
from .parsing import ParsedBatch, RowError as _RowError, parse_iso as _dt, parse_rows, to_iso as _iso

STATE_FROM_WIRE = {"AVAILABLE": "available", "QC_HOLD": "inspection", "QUARANTINE": "inspection", "DAMAGED": "damaged",
                   "IN_TRANSIT": "in_transit"}
API = "/api/v1"


def _when(value):
    """An acknowledgement's timestamp, or None when absent or unreadable (not worth refusing the ack over)."""
    try:
        return _dt(value)
    except (ValueError, TypeError):
        return None


def _ship_to(a) -> dict:
    if a is None:
        return {}
    return {"name": " ".join(p for p in (a.first_name, a.last_name) if p).strip() or a.company, "company": a.company,
            "address_line_1": a.street, "address_line_2": a.street2, "town": a.city, "county": a.region,
            "postcode": a.postal_code, "country_code": a.country, "phone": a.phone, "email": a.email}


class ClarusConnector(Connector, Warehouse, InventoryMaster):
    system_type = "clarus"
    api_document = ""  # documentation.claruswms.com is published, but this connector does not follow it yet
    modelled = True

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.page_size = int(opts.get("page_size") or 500)
        self.client_code = str(opts.get("client_code") or "")
        super().__init__(connection, client)

    def build_client(self):
        headers = {"X-Clarus-Client": self.client_code} if self.client_code else None
        return HttpClient.for_connection(self.connection, auth=HeaderAuth("X-Api-Key", self.connection.get_secret()),
                                         default_headers=headers)

    # --- inventory master ----------------------------------------------------------------------------
    @staticmethod
    def stock_change_from_row(row: Any, index: int = 0) -> StockChange:
        if not isinstance(row, dict):
            return StockChange(sku=None, location=None, quantity=None, ref=f"row-{index}")  # type: ignore[arg-type]
        qty = row.get("quantity")
        if isinstance(qty, str) and qty.strip().lstrip("-").isdigit():
            qty = int(qty)
        state = row.get("state")
        state = STATE_FROM_WIRE.get(str(state).upper(), state) if state not in (None, "") else "available"
        when = row.get("occurred_at") or row.get("updated_at")
        try:
            when = _dt(when)
        except ValueError:
            pass  # carried raw: the hub rejects this row
        ref = row.get("movement_id") or row.get("sequence") or ""
        return StockChange(sku=row.get("sku"), location=str(row["location"]) if row.get("location") not in (None, "") else None,
                           quantity=qty, state=state, changed_at=when, ref=str(ref))

    def stock_changes(self, cursor: str) -> Page:
        body = self.client.get(f"{API}/stock/movements", params={"after": cursor or "0", "limit": self.page_size}).json()
        rows = body.get("movements")
        if not isinstance(rows, list):
            raise errors.BadDataError("Clarus movements answer has no 'movements' list", body=body, system="clarus")
        return Page([self.stock_change_from_row(r, i) for i, r in enumerate(rows)],
                    str(body.get("next_after") or cursor or ""), bool(body.get("has_more")))

    def parse_stock_webhook(self, payload: dict) -> list[StockChange]:
        if not isinstance(payload, dict) or not isinstance(payload.get("movements"), list):
            raise errors.BadDataError("Clarus stock webhook: 'movements' must be a list", body=payload, system="clarus")
        if payload.get("event") not in (None, "stock.moved"):
            raise errors.BadDataError(f"Clarus stock webhook: unexpected event {payload.get('event')!r}", body=payload, system="clarus")
        return [self.stock_change_from_row(r, i) for i, r in enumerate(payload["movements"])]

    def stock_snapshot(self, skus: Iterable[str] | None = None) -> Iterable[StockChange]:
        params: dict = {"page_size": self.page_size}
        sku_list = list(dict.fromkeys(skus)) if skus is not None else None
        chunks = [None] if sku_list is None else [sku_list[i:i + 100] for i in range(0, len(sku_list), 100)]
        for chunk in chunks:
            page = 1
            while True:
                p = dict(params, page=page)
                if chunk:
                    p["sku"] = ",".join(chunk)
                body = self.client.get(f"{API}/stock", params=p).json()
                rows = body.get("items")
                if not isinstance(rows, list):
                    raise errors.BadDataError("Clarus stock answer has no 'items' list", body=body, system="clarus")
                for i, row in enumerate(rows):
                    yield self.stock_change_from_row(row, i)
                if not rows or page * int(body.get("page_size") or self.page_size) >= int(body.get("total") or 0):
                    break
                page += 1

    # --- warehouse ------------------------------------------------------------------------------------
    @staticmethod
    def pick_body(order: WarehouseOrder) -> dict:
        return {
            "client_reference": order.order_ref, "order_number": order.order_number, "channel": order.channel,
            "order_date": _iso(order.placed_at), "service_code": order.shipping_method, "carrier": order.carrier,
            "ship_to": _ship_to(order.shipping_address), "bill_to": _ship_to(order.billing_address),
            "customer_email": order.customer_email, "gift_message": order.gift_message,
            "delivery_instructions": order.delivery_notes, "currency": order.currency, "order_value_cents": order.total_cents,
            "attributes": dict(order.custom_fields or {}),
            # a bundle's own line goes with ``pickable: false`` (paperwork only); its components are picked
            "lines": [{"line_no": l.line_id, "sku": l.sku, "quantity": l.quantity, "parent_line_no": l.parent_line_id or None,
                       "pickable": l.pickable, "unit_price_cents": l.unit_price_cents, "attributes": dict(l.custom_fields or {})} for l in order.lines],
        }

    def send_order(self, order: WarehouseOrder) -> Acknowledgement:
        try:
            resp = self.client.post(f"{API}/pick-instructions", json=self.pick_body(order), ok=(200, 201))
        except errors.ConflictError as exc:
            err = (exc.body or {}).get("error", {}) if isinstance(exc.body, dict) else {}
            pid = (err.get("details") or {}).get("pick_instruction_id")
            if err.get("code") == "DUPLICATE_REFERENCE" and pid:
                return Acknowledgement(order.order_ref, str(pid), duplicate=True,
                                       received_at=_when((err.get("details") or {}).get("received_at")))
            raise
        except errors.BadDataError as exc:
            err = (exc.body or {}).get("error", {}) if isinstance(exc.body, dict) else {}
            fields = (err.get("details") or {}).get("fields") or {}
            detail = "; ".join(f"{k}: {v}" for k, v in fields.items()) or err.get("message") or str(exc)
            raise errors.BadDataError(f"Clarus rejected pick instruction {order.order_ref}: {detail}", status=exc.status,
                                      body=exc.body, system="clarus") from exc
        body = resp.json()
        pid = body.get("pick_instruction_id")
        if not pid:
            raise errors.RetryableError(f"Clarus answered {resp.status_code} without a pick_instruction_id", body=body, system="clarus")
        return Acknowledgement(order.order_ref, str(pid), duplicate=False, received_at=_when(body.get("received_at")))

    def order_status(self, order_ref: str) -> str | None:
        try:
            return str(self.client.get(f"{API}/pick-instructions/{quote(order_ref, safe='')}").json().get("status") or "")
        except errors.NotFoundError:
            return None

    def cancel_order(self, order_ref: str) -> str:
        """``POST /pick-instructions/{ref}/cancel`` → "CANCELLED" (a repeat answers the same). Clarus refuses
        (409 ``ALREADY_PICKED``) once the goods are packed or dispatched: raised as PermanentError."""
        try:
            body = self.client.post(f"{API}/pick-instructions/{quote(order_ref, safe='')}/cancel", json={}, ok=(200,)).json()
        except errors.ConflictError as exc:
            err = (exc.body or {}).get("error", {}) if isinstance(exc.body, dict) else {}
            raise errors.PermanentError(f"Clarus refuses to cancel {order_ref}: {err.get('message') or exc}", status=exc.status,
                                        body=exc.body, system="clarus") from exc
        return str(body.get("status") or "")

    def dispatches_for(self, order_ref: str) -> list[Dispatch]:
        """Confirmed dispatches of one pick instruction (``/dispatches?client_reference=``); NotFoundError if
        Clarus does not have it."""
        self.client.get(f"{API}/pick-instructions/{quote(order_ref, safe='')}")  # 404 → NotFoundError
        body = self.client.get(f"{API}/dispatches", params={"client_reference": order_ref, "limit": self.page_size}).json()
        rows = body.get("dispatches")
        if not isinstance(rows, list):
            raise errors.BadDataError("Clarus dispatches answer has no 'dispatches' list", body=body, system="clarus")
        return [d for d in self._rows(rows) if d.order_ref == order_ref]

    @staticmethod
    def dispatch_from_row(row: Any) -> Dispatch:
        if not isinstance(row, dict):
            raise _RowError("", "dispatch row is not an object")
        ref = row.get("client_reference")
        if not isinstance(ref, str) or not ref:
            raise _RowError("client_reference", "client_reference is missing")
        if not row.get("manifest_closed_at"):
            raise _RowError("manifest_closed_at", "dispatch is not on a closed manifest: not confirmed")
        try:
            when = _dt(row["manifest_closed_at"])
        except ValueError:
            raise _RowError("manifest_closed_at", f"{row['manifest_closed_at']!r} is not a timestamp") from None
        parcels = []
        for i, p in enumerate(row.get("parcels") or []):
            if not isinstance(p, dict) or not p.get("tracking_number"):
                raise _RowError(f"parcels[{i}].tracking_number", "tracking_number is missing")
            lines = []
            for j, line in enumerate(p.get("lines") or []):
                qty = line.get("quantity") if isinstance(line, dict) else None
                if not isinstance(line, dict) or not line.get("sku") or isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                    raise _RowError(f"parcels[{i}].lines[{j}]", f"parcel line {line!r} needs sku and a positive quantity")
                lines.append((str(line["sku"]), qty))
            parcels.append(Parcel(carrier=str(p.get("carrier") or ""), tracking_number=str(p["tracking_number"]),
                                  tracking_url=str(p.get("tracking_url") or ""), lines=lines))
        if not parcels:
            raise _RowError("parcels", "a dispatch needs at least one parcel")
        return Dispatch(order_ref=ref, warehouse_ref=str(row.get("pick_instruction_id") or ""), dispatched_at=when,
                        parcels=parcels, ref=str(row.get("dispatch_id") or ""), complete=bool(row.get("complete", True)))

    def _rows(self, rows: list) -> ParsedBatch:
        return parse_rows(rows, self.dispatch_from_row, ("dispatch_id", "client_reference"))

    def dispatches_since(self, cursor: str) -> Page:
        """Confirmed dispatches (closed manifests). ``Page.items`` is a ParsedBatch (see ``.rejected``)."""
        body = self.client.get(f"{API}/dispatches", params={"after": cursor or "0", "limit": self.page_size}).json()
        rows = body.get("dispatches")
        if not isinstance(rows, list):
            raise errors.BadDataError("Clarus dispatches answer has no 'dispatches' list", body=body, system="clarus")
        return Page(self._rows(rows), str(body.get("next_after") or cursor or ""), bool(body.get("has_more")))

    def parse_dispatch_webhook(self, payload: dict) -> ParsedBatch:
        if not isinstance(payload, dict) or not isinstance(payload.get("dispatches"), list):
            raise errors.BadDataError("Clarus dispatch webhook: 'dispatches' must be a list", body=payload, system="clarus")
        if payload.get("event") not in (None, "manifest.closed"):
            raise errors.BadDataError(f"Clarus dispatch webhook: unexpected event {payload.get('event')!r}", body=payload,
                                      system="clarus")
        return self._rows(payload["dispatches"])

    def send_fulfilment(self, fulfilment: Fulfilment) -> str:
        """A storefront-side fulfilment (ship-from-store) for an order Clarus holds, so Clarus stops picking
        those units. Idempotent on ``<order ref>:<fulfilment ref>`` (a replay returns the first id)."""
        reference = f"{fulfilment.order_ref}:{fulfilment.fulfilment_ref}"
        body = {"reference": reference, "client_reference": fulfilment.order_ref, "location": fulfilment.location or None,
                "fulfilled_at": _iso(fulfilment.fulfilled_at), "lines": [{"sku": s, "quantity": q} for s, q in fulfilment.lines]}
        try:
            resp = self.client.post(f"{API}/external-fulfilments", json=body, ok=(200, 201))
        except errors.ConflictError as exc:
            err = (exc.body or {}).get("error", {}) if isinstance(exc.body, dict) else {}
            fid = (err.get("details") or {}).get("external_fulfilment_id")
            if err.get("code") == "DUPLICATE_REFERENCE" and fid:
                return str(fid)
            raise
        fid = resp.json().get("external_fulfilment_id")
        if not fid:
            raise errors.RetryableError(f"Clarus answered {resp.status_code} without an external_fulfilment_id", system="clarus")
        return str(fid)
