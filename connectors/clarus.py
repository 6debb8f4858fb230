"""Clarus WMS as Warehouse + InventoryMaster, on its published API (documentation.claruswms.com).

Published (API reference and knowledge base "Integrations" pages):

- Authentication: OAuth 2.0 bearer token from the Clarus API's ``/oauth/token`` (client credentials) and the
  mandatory ``X-Clarus-Subdomain`` header (the tenant) on every REST and GraphQL request.
- REST (into Clarus, JSON:API documents): ``POST /api/products`` (``code``, ``description``, ``barcode``,
  ``external_system_reference1``…) — "before any order … can reference a product, the product must exist in
  Clarus … store its returned ID" — and ``POST /api/goods_outs`` (``goods_out_type: sales_order``,
  ``account_id``, ``warehouse_id``, ``reference``, ``lines_changes`` ``[{type: ADD, attributes: {product_id,
  order_quantity}}]``, ``relationships.address.data.attributes`` with an ISO country code);
  ``POST /api/goods_outs/{id}/cancel`` (Draft / Pending → deleted; Allocated / Picking → deallocated and
  cancelled; Completed → cannot cancel: already dispatched).
- GraphQL (out of Clarus, ``POST /graphql``): ``stock_balances`` (available, allocated, ordered, received,
  picked per product / account / warehouse), ``stocks`` (quantity, status, location, product), ``goods_outs``
  (reference, ``goods_out_status`` code DRAFT / PENDING / PICK / ALLOCATED / COMPLETED), ``goods_out_lines``
  (order / allocated / pick / dispatch quantities), ``products``; filters ``{field: {eq | in | …}}``.
- Webhooks (automations): the full record of the affected object is POSTed on triggers such as stock
  adjustment (positive / negative), stock placed on / taken off hold, sales order completed (dispatched).
  "Validate a webhook request": every call carries ``X-ClarusWMS-Domain``, ``X-ClarusWMS-API-Domain``,
  ``X-ClarusWMS-Subdomain``, ``X-ClarusWMS-Automation-ID`` and (if any) ``X-ClarusWMS-Integration-ID``; check
  each against what you expect. There is no signature — :meth:`verify_webhook` compares those headers with
  the connection's options (constant time) and refuses when they are not configured.

What the connector does with it:

- Products: :meth:`sync_products` (the catalogue's ``sync_warehouse_products`` job) finds each hub SKU in Clarus by
  ``code`` or creates it, and the hub stores the returned ids (``catalog.WarehouseProduct``); orders carry them
  (``WarehouseOrderLine.warehouse_product_id``). An order line whose product has no stored id yet is resolved
  the same way at send time, so an order never waits for the nightly sync.
- Orders: a goods out per hub order, ``reference`` = the hub's order ref (Clarus takes at most 50 characters: a
  longer ref is shortened stably, :func:`wire_reference`, the full ref in ``external_system_reference1``), the
  required ``expected_date_of_dispatch`` = the order's placed time + option ``dispatch_lead_hours`` (default 0: as
  soon as possible), numeric ``account_id`` / ``warehouse_id`` options sent as integers (the documents type them
  integer). The documents do not say Clarus refuses a
  repeated reference, so :meth:`send_order` **looks the reference up first** (GraphQL ``goods_outs``) and
  acknowledges the existing one as a duplicate; the POST is never retried blindly (a lost answer is followed
  by another look-up). Only picked lines are sent (a bundle's own line is paperwork; its components carry its
  SKU in ``string1``). Hub fields without a Clarus field go in the generic slots, as the documents advise:
  header ``string1`` = warehouse service code, ``string2`` = carrier, ``string3`` = gift message, ``string4`` =
  channel, ``external_system_reference1`` = order ref, ``external_system_reference2`` = order number;
  ``delivery_notes`` is Clarus's own.
- Allocation: a goods out is allocated at its warehouse; the acknowledgement names it for every picked line
  (``Acknowledgement.allocations``), so the hub releases the order's holds on a moved figure there.
- Dispatch: the "sales order completed (dispatched)" event is the confirmation (:meth:`parse_dispatch_webhook`);
  the poll fallback (:meth:`dispatches_since`) reads COMPLETED goods outs and their lines through GraphQL.
- Stock: hub location = the Clarus warehouse id (``Location.external_id``); ``stock_balances.available`` →
  available (it already excludes what goods outs hold), ``stocks`` on a hold status → inspection, ``damaged`` →
  damaged, ``in_transit`` → in_transit; an unknown status is carried raw (the hub rejects that row). A stock
  event names a stock record, so the connector re-reads that product's balances (absolute figures, order-safe).
- Cancellation: ``POST /api/goods_outs/{id}/cancel``; "already dispatched" → PermanentError.

Not confirmed from the documents (assumptions, all in :data:`SHAPE`): the token request's form fields (standard
OAuth 2 client credentials), the ``/cancel`` path, the webhook body's envelope (``{"data": {"type", "id",
"attributes"}}``), the hold status names, where tracking numbers are carried (``parcels`` on the goods out),
GraphQL paging (none is used), and the webhook events' automation ids (per tenant: ``options``).

Connection: ``base_url`` = ``https://clarus-api.com`` (sandbox ``http://127.0.0.1:8765/clarus``); ``auth_url`` =
token root when not the same; ``client_id`` / secret = OAuth client credentials. options: ``subdomain``
(required), ``account_id`` (stock owner), ``warehouse_id`` (where goods outs go), ``dispatch_lead_hours``, ``webhook_domain``,
``webhook_api_domain``, ``webhook_automation_ids`` (list), ``webhook_integration_id`` (optional).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from . import errors
from .base import (
    Acknowledgement,
    Connector,
    Dispatch,
    InventoryMaster,
    Page,
    Parcel,
    StockChange,
    Warehouse,
    WarehouseOrder,
    WarehouseProduct,
)
from .http import CachedTokenAuth, HttpClient
from .parsing import ParsedBatch, RowError as _RowError, parse_iso as _dt, parse_rows

DOCUMENT = "https://documentation.claruswms.com/api-reference/introduction"
SHAPE = {
    "token": "/oauth/token",
    "products": "/api/products",
    "goods_outs": "/api/goods_outs",
    "cancel": "/api/goods_outs/{id}/cancel",
    "graphql": "/graphql",
    "states": {
        "available": "available",
        "quarantine": "inspection",
        "qc_hold": "inspection",
        "on_hold": "inspection",
        "hold": "inspection",
        "damaged": "damaged",
        "in_transit": "in_transit",
    },
    "completed": "COMPLETED",
    "cancelled": "CANCELLED",
    "reference_max": 50,
    "header_slots": {
        "shipping_method": "string1",
        "carrier": "string2",
        "gift_message": "string3",
        "channel": "string4",
    },
    "line_bundle_slot": "string1",
    "webhook_headers": {
        "domain": "X-ClarusWMS-Domain",
        "api_domain": "X-ClarusWMS-API-Domain",
        "subdomain": "X-ClarusWMS-Subdomain",
        "automation": "X-ClarusWMS-Automation-ID",
        "integration": "X-ClarusWMS-Integration-ID",
    },
}
HUB_STATES = ("available", "inspection", "damaged")  # what a product's re-read reports, zeros included
STATE_FROM_WIRE = SHAPE["states"]


@dataclass
class ClarusTokenAuth(CachedTokenAuth):
    """OAuth 2 client credentials against Clarus's ``/oauth/token``; cached, renewed on a 401."""

    token_url: str
    client_id: str
    client_secret: str
    timeout: float = 10.0
    system = "clarus"

    @property
    def cache_key(self) -> str:
        return f"hub:clarus-token:{self.token_url}:{self.client_id}"

    def fetch(self, session):
        return session.post(
            self.token_url,
            data={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )


def _name(a) -> str:
    return " ".join(p for p in (a.first_name, a.last_name) if p).strip() or a.company


def _addr(a) -> dict:
    return {
        "name": _name(a),
        "company_name": a.company,
        "address_1": a.street,
        "address_2": a.street2,
        "address_3": a.city,
        "address_4": a.region,
        "postcode": a.postal_code,
        "country_code": a.country,
        "email_address": a.email,
        "phone_number": a.phone,
    }


def _now() -> datetime:
    return datetime.now(timezone.utc)


def wire_reference(order_ref: str) -> str:
    """The goods out ``reference`` for a hub order ref: the ref itself when it fits Clarus's 50 characters (Goods Out
    core resource: "reference … Maximum string length: 50"), else its first 33 characters, ``~`` and 16 hex of its
    SHA-1 — stable, so the look-up finds it again; the full ref travels in ``external_system_reference1``."""
    most = SHAPE["reference_max"]
    if len(order_ref) <= most:
        return order_ref
    return f"{order_ref[: most - 17]}~{hashlib.sha1(order_ref.encode()).hexdigest()[:16]}"


def order_ref_of(attrs: dict) -> Any:
    """The hub order ref a goods out record stands for: ``external_system_reference1`` when ``reference`` is its
    shortened form, else ``reference``."""
    ref, full = attrs.get("reference"), attrs.get("external_system_reference1")
    if isinstance(ref, str) and isinstance(full, str) and full != ref and wire_reference(full) == ref:
        return full
    return ref


def _int_id(value: str):
    """Clarus ids are integers in its documents (``account_id: 1``); a numeric option goes as a number."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def webhook_identification_configured(options) -> bool:
    """Whether a connection's options name everything :meth:`ClarusConnector.verify_webhook` compares (domain,
    API domain, subdomain, at least one automation id). Clarus signs nothing, so this — not a webhook secret —
    decides whether its webhooks can be accepted at all (the dashboard warns when not)."""
    o = options if isinstance(options, dict) else {}
    return bool(
        o.get("webhook_automation_ids")
        and o.get("webhook_domain")
        and o.get("webhook_api_domain")
        and o.get("subdomain")
    )


class ClarusConnector(Connector, Warehouse, InventoryMaster):
    system_type = "clarus"
    api_document = DOCUMENT
    modelled = False

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.subdomain = str(opts.get("subdomain") or "")
        if not self.subdomain:
            raise errors.PermanentError("Clarus needs options.subdomain (sent as X-Clarus-Subdomain)", system="clarus")
        self.account_id = str(opts.get("account_id") or "")
        self.warehouse_id = str(opts.get("warehouse_id") or "")
        self.dispatch_lead = timedelta(hours=float(opts.get("dispatch_lead_hours") or 0))
        self._product_ids: dict[str, str] = {}
        super().__init__(connection, client)

    def build_client(self):
        c = self.connection
        root = (c.auth_url or c.base_url).rstrip("/")
        auth = ClarusTokenAuth(root + SHAPE["token"], c.client_id, c.get_secret(), timeout=c.timeout_seconds)
        return HttpClient.for_connection(c, auth=auth, default_headers={"X-Clarus-Subdomain": self.subdomain})

    # --- webhooks: Clarus's identification headers -----------------------------------------------------------
    def verify_webhook(self, body: bytes, headers) -> bool:
        """As "Validate a webhook request" says: the domain, API domain, subdomain, automation id (and integration
        id, when configured) must be the ones this connection expects. Fails closed when not configured."""
        o, h = self.connection.options or {}, SHAPE["webhook_headers"]
        allowed = [str(x) for x in (o.get("webhook_automation_ids") or [])]
        expected = {
            h["domain"]: str(o.get("webhook_domain") or ""),
            h["api_domain"]: str(o.get("webhook_api_domain") or ""),
            h["subdomain"]: self.subdomain,
        }
        if o.get("webhook_integration_id"):
            expected[h["integration"]] = str(o["webhook_integration_id"])
        if not allowed or not all(expected.values()):
            return False
        ok = True
        for name, want in expected.items():
            got = str(headers.get(name, "") or "")
            ok = hmac.compare_digest(got.rstrip("/").lower().encode(), want.rstrip("/").lower().encode()) and ok
        automation = str(headers.get(h["automation"], "") or "")
        return ok and any(hmac.compare_digest(automation.encode(), a.encode()) for a in allowed)

    # --- GraphQL ----------------------------------------------------------------------------------------------
    def _gql(self, root: str, filter_type: str, fields: str, flt: dict | None = None) -> list[dict]:
        query = f"query($filter: {filter_type}) {{ {root} {{ all(filter: $filter) {{ edges {{ node {{ {fields} }} }} }} }} }}"
        body = self.client.post(
            SHAPE["graphql"], json={"query": query, "variables": {"filter": flt or {}}}, ok=(200,)
        ).json()
        if not isinstance(body, dict) or body.get("errors"):
            raise errors.BadDataError(
                f"Clarus GraphQL {root} failed: {(body or {}).get('errors')}", body=body, system="clarus"
            )
        edges = (((body.get("data") or {}).get(root) or {}).get("all") or {}).get("edges")
        if not isinstance(edges, list):
            raise errors.BadDataError(f"Clarus GraphQL {root} answer has no edges", body=body, system="clarus")
        return [e["node"] for e in edges if isinstance(e, dict) and isinstance(e.get("node"), dict)]

    def _owner(self, flt: dict) -> dict:
        return {**flt, "account_id": {"eq": self.account_id}} if self.account_id else flt

    # --- products -------------------------------------------------------------------------------------------
    def _lookup_products(self, codes: list[str]) -> dict[str, str]:
        out = {}
        for start in range(0, len(codes), 200):
            for n in self._gql(
                "products", "ProductFilterType", "id code", {"code": {"in": codes[start : start + 200]}}
            ):
                out[str(n["code"])] = str(n["id"])
        return out

    def catalogue_records(self, skus) -> dict[str, dict]:
        """{code: {"name", "barcode"}} of the products Clarus has for these SKUs (master data audit; GraphQL
        ``products``, 200 codes per query)."""
        codes = sorted(set(skus))
        out = {}
        for start in range(0, len(codes), 200):
            for n in self._gql(
                "products",
                "ProductFilterType",
                "id code description barcode",
                {"code": {"in": codes[start : start + 200]}},
            ):
                rec = {"name": str(n.get("description") or "")}
                if n.get("barcode"):
                    rec["barcode"] = str(n["barcode"])
                out[str(n["code"])] = rec
        return out

    def sync_products(self, products: list[WarehouseProduct]) -> dict[str, str]:
        """Find or create every product in Clarus → {sku: Clarus product id}."""
        wanted = {p.sku: p for p in products if p.sku}
        found = self._lookup_products(sorted(wanted))
        for sku in sorted(set(wanted) - set(found)):
            p = wanted[sku]
            doc = {
                "data": {
                    "type": "products",
                    "attributes": {
                        "code": sku,
                        "description": p.description or sku,
                        "barcode": p.barcode or None,
                        "external_system_reference1": sku,
                    },
                }
            }
            try:
                resp = self.client.post(SHAPE["products"], json=doc, ok=(200, 201), retries=0)
                found[sku] = str(((resp.json() or {}).get("data") or {}).get("id") or "")
            except (errors.BadDataError, errors.RetryableError):
                again = self._lookup_products([sku])  # taken meanwhile, or created before a lost answer
                if sku not in again:
                    raise
                found.update(again)
        self._product_ids.update({k: v for k, v in found.items() if v})
        return {k: v for k, v in found.items() if v}

    def _resolve(self, order: WarehouseOrder, lines) -> dict[str, str]:
        ids = {ln.sku: ln.warehouse_product_id for ln in lines if ln.warehouse_product_id}
        ids.update({s: self._product_ids[s] for s in {ln.sku for ln in lines} - set(ids) if s in self._product_ids})
        missing = sorted({ln.sku for ln in lines} - set(ids))
        if missing:
            ids.update(self.sync_products([WarehouseProduct(sku=s) for s in missing]))
        return ids

    # --- goods outs -----------------------------------------------------------------------------------------
    def find_goods_out(self, reference: str) -> dict | None:
        """The live (not cancelled) goods out with this reference, if Clarus has one."""
        nodes = self._gql(
            "goods_outs",
            "GoodsOutsFilterType",
            "id reference external_system_reference1 actual_date_of_dispatch goods_out_status { code } "
            "warehouse { id } parcels",
            self._owner({"reference": {"eq": wire_reference(reference)}}),
        )
        live = [n for n in nodes if str((n.get("goods_out_status") or {}).get("code") or "") != SHAPE["cancelled"]]
        return live[0] if live else None

    def goods_out_body(self, order: WarehouseOrder, product_ids: dict[str, str]) -> dict:
        slots = SHAPE["header_slots"]
        by_id = {ln.line_id: ln for ln in order.lines}
        changes = []
        for ln in order.lines:
            if not ln.pickable:
                continue  # a bundle's own line: paperwork; its components are the goods
            parent = by_id.get(ln.parent_line_id) if ln.parent_line_id else None
            attrs = {
                "product_id": int(product_ids[ln.sku]) if str(product_ids[ln.sku]).isdigit() else product_ids[ln.sku],
                "order_quantity": ln.quantity,
                "alt_line_reference": ln.line_id,
            }
            if parent is not None:
                attrs[SHAPE["line_bundle_slot"]] = parent.sku
            changes.append({"type": "ADD", "attributes": attrs})
        due = (order.placed_at or _now()) + self.dispatch_lead
        attributes = {
            "goods_out_type": "sales_order",
            "account_id": _int_id(self.account_id),
            "warehouse_id": _int_id(self.warehouse_id),
            "reference": wire_reference(order.order_ref),
            "expected_date_of_dispatch": due.astimezone(timezone.utc)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "external_system_reference1": order.order_ref,
            "external_system_reference2": order.order_number,
            "delivery_notes": order.delivery_notes,
            slots["shipping_method"]: order.shipping_method,
            slots["carrier"]: order.carrier,
            slots["gift_message"]: order.gift_message,
            slots["channel"]: order.channel,
            "lines_changes": changes,
        }
        return {
            "data": {
                "type": "goods_outs",
                "attributes": attributes,
                "relationships": {
                    "address": {"data": {"type": "addresses", "attributes": _addr(order.shipping_address)}}
                },
            }
        }

    def send_order(self, order: WarehouseOrder) -> Acknowledgement:
        picked = [ln for ln in order.lines if ln.pickable]

        def where(node: dict) -> dict[str, str]:
            # a goods out is allocated at its own warehouse (stock_balances.available already excludes it there)
            wh = str(
                (node.get("warehouse") or {}).get("id")
                or node.get("warehouse_id")
                or (node.get("attributes") or {}).get("warehouse_id")
                or ""
            )
            return {ln.sku: wh for ln in picked} if wh else {}

        existing = self.find_goods_out(order.order_ref)
        if existing is not None:
            return Acknowledgement(order.order_ref, str(existing["id"]), duplicate=True, allocations=where(existing))
        if not picked:
            raise errors.BadDataError(f"order {order.order_ref} has no line Clarus can pick", system="clarus")
        body = self.goods_out_body(order, self._resolve(order, picked))
        # Clarus's answer carries no time it took the goods out; the earliest it could have allocated is when it was
        # sent (the hub's clock, as the stock figures' read times are), so a figure read while the answer was on its
        # way still counts as carrying the order (issue 20: the allocation figure may arrive before the acknowledgement)
        sent_at = _now()
        try:
            resp = self.client.post(SHAPE["goods_outs"], json=body, ok=(200, 201), retries=0)
        except errors.RetryableError:
            found = self.find_goods_out(order.order_ref)  # created before the answer was lost?
            if found is not None:
                return Acknowledgement(order.order_ref, str(found["id"]), duplicate=True, allocations=where(found))
            raise
        except errors.BadDataError as exc:
            detail = (
                "; ".join(
                    str(e.get("detail") or e.get("title"))
                    for e in (exc.body or {}).get("errors") or []
                    if isinstance(e, dict)
                )
                if isinstance(exc.body, dict)
                else str(exc)
            )
            raise errors.BadDataError(
                f"Clarus rejected goods out {order.order_ref}: {detail or exc}",
                status=exc.status,
                body=exc.body,
                system="clarus",
            ) from exc
        data = (resp.json() or {}).get("data") or {}
        gid = data.get("id")
        if not gid:
            raise errors.RetryableError(f"Clarus answered {resp.status_code} without a goods out id", system="clarus")
        return Acknowledgement(
            order.order_ref,
            str(gid),
            duplicate=False,
            received_at=sent_at,
            allocations=where(data) or where({"warehouse_id": self.warehouse_id}),
        )

    def order_status(self, order_ref: str) -> str | None:
        found = self.find_goods_out(order_ref)
        return None if found is None else str((found.get("goods_out_status") or {}).get("code") or "")

    def cancel_order(self, order_ref: str) -> str:
        """Clarus's cancel: a draft / pending goods out is deleted, an allocated / picking one deallocated and
        cancelled; a completed one cannot be cancelled (already dispatched) → PermanentError."""
        found = self.find_goods_out(order_ref)
        if found is None:
            raise errors.NotFoundError(f"Clarus has no goods out {order_ref}", status=404, system="clarus")
        try:
            resp = self.client.post(SHAPE["cancel"].format(id=found["id"]), json={}, ok=(200,))
        except errors.BadDataError as exc:
            raise errors.PermanentError(
                f"Clarus refuses to cancel {order_ref}: already dispatched",
                status=exc.status,
                body=exc.body,
                system="clarus",
            ) from exc
        attrs = ((resp.json() or {}).get("data") or {}).get("attributes") or {}
        return "DELETED" if attrs.get("deleted") else str(attrs.get("goods_out_status_code") or SHAPE["cancelled"])

    def send_fulfilment(self, fulfilment) -> str:
        """Clarus publishes no way to record goods of a goods out shipped elsewhere (ship-from-store): refused,
        so the hub's exception queue tells people to amend or cancel the goods out in Clarus."""
        raise errors.PermanentError(
            f"Clarus has no published API for a fulfilment done outside the warehouse "
            f"({fulfilment.order_ref}/{fulfilment.fulfilment_ref}): amend the goods out in Clarus",
            system="clarus",
        )

    # --- dispatch -------------------------------------------------------------------------------------------
    @staticmethod
    def dispatch_from_record(rec: Any) -> Dispatch:
        """A completed goods out (the webhook's ``data`` or a GraphQL node merged with its lines) → Dispatch."""
        if not isinstance(rec, dict):
            raise _RowError("", "goods out record is not an object")
        a = rec.get("attributes") if isinstance(rec.get("attributes"), dict) else rec
        ref = order_ref_of(a)
        if not isinstance(ref, str) or not ref:
            raise _RowError("reference", "reference is missing")
        try:
            when = _dt(a.get("actual_date_of_dispatch"))
        except ValueError:
            raise _RowError(
                "actual_date_of_dispatch", f"{a.get('actual_date_of_dispatch')!r} is not a timestamp"
            ) from None
        lines = []
        for j, ln in enumerate(a.get("lines") or []):
            qty = ln.get("dispatch_quantity") if isinstance(ln, dict) else None
            code = (ln.get("product") or {}).get("code") if isinstance(ln, dict) else None
            if not code or isinstance(qty, bool) or not isinstance(qty, (int, float)) or qty < 0:
                raise _RowError(f"lines[{j}]", f"goods out line {ln!r} needs product.code and dispatch_quantity")
            if qty:
                lines.append((str(code), int(qty)))
        if not lines:
            raise _RowError("lines", "a completed goods out with nothing dispatched")
        parcels = [
            Parcel(
                carrier=str(p.get("carrier") or ""),
                tracking_number=str(p.get("tracking_number") or ""),
                tracking_url=str(p.get("tracking_url") or ""),
                lines=list(lines) if i == 0 else [],
            )
            for i, p in enumerate(a.get("parcels") or [])
            if isinstance(p, dict)
        ] or [Parcel(carrier="", tracking_number="", lines=lines)]
        gid = str(rec.get("id") or a.get("id") or "")
        return Dispatch(
            order_ref=ref, warehouse_ref=gid, dispatched_at=when, parcels=parcels, ref=f"goods_out:{gid}", complete=True
        )

    def parse_dispatch_webhook(self, payload: dict) -> ParsedBatch:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or data.get("type") != "goods_outs":
            raise errors.BadDataError("Clarus webhook: not a goods out record", body=payload, system="clarus")
        status = str((data.get("attributes") or {}).get("goods_out_status_code") or "")
        if status != SHAPE["completed"]:
            return ParsedBatch([])  # only a completed (dispatched) sales order is a dispatch
        return parse_rows([data], self.dispatch_from_record, ("id", "reference"))

    def _completed(self, flt: dict) -> list[dict]:
        nodes = self._gql(
            "goods_outs",
            "GoodsOutsFilterType",
            "id reference external_system_reference1 actual_date_of_dispatch goods_out_status { code } "
            "warehouse { id } parcels",
            self._owner({**flt, "goods_out_status_code": {"eq": SHAPE["completed"]}}),
        )
        if not nodes:
            return []
        lines: dict[str, list] = {}
        for n in self._gql(
            "goods_out_lines",
            "GoodsOutLineFilterType",
            "id dispatch_quantity product { id code } goods_out { id reference }",
            {"goods_out_id": {"in": [str(x["id"]) for x in nodes]}},
        ):
            lines.setdefault(str((n.get("goods_out") or {}).get("id")), []).append(n)
        return [dict(n, lines=lines.get(str(n["id"]), [])) for n in nodes]

    def dispatches_since(self, cursor: str, limit: int | None = None) -> Page:
        """Poll fallback: completed goods outs dispatched at or after ``cursor`` (ISO time; '' = all). Clarus answers
        them in one list: ``limit`` does not apply."""
        nodes = [n for n in self._completed({}) if not cursor or str(n.get("actual_date_of_dispatch") or "") >= cursor]
        batch = parse_rows(nodes, self.dispatch_from_record, ("id", "reference"))
        newest = max([str(n.get("actual_date_of_dispatch") or "") for n in nodes] + [cursor or ""])
        return Page(batch, newest, False)

    def dispatches_for(self, order_ref: str) -> list[Dispatch]:
        if self.find_goods_out(order_ref) is None:
            raise errors.NotFoundError(f"Clarus has no goods out {order_ref}", status=404, system="clarus")
        return list(
            parse_rows(
                self._completed({"reference": {"eq": wire_reference(order_ref)}}),
                self.dispatch_from_record,
                ("id", "reference"),
            )
        )

    # --- stock ----------------------------------------------------------------------------------------------
    def _stock(self, codes: list[str] | None, zero_fill: bool) -> list[StockChange]:
        flt = self._owner({"product_code": {"in": codes}} if codes else {})
        now = _now()
        levels: dict[tuple[str, str, str], Any] = {}
        for n in self._gql(
            "stock_balances", "StockBalancesFilterType", "available allocated product { id code } warehouse { id }", flt
        ):
            key = (
                str((n.get("product") or {}).get("code") or ""),
                str((n.get("warehouse") or {}).get("id") or ""),
                "available",
            )
            levels[key] = n.get("available")
        for n in self._gql(
            "stocks",
            "StockFilterType",
            "id quantity status product { id code } location { id code } warehouse { id }",
            flt,
        ):
            status = str(n.get("status") or "")
            if status == "available":
                continue  # counted by the balance (which already excludes allocations)
            state = STATE_FROM_WIRE.get(status.lower(), status)
            key = (
                str((n.get("product") or {}).get("code") or ""),
                str((n.get("warehouse") or {}).get("id") or ""),
                state,
            )
            qty = n.get("quantity")
            levels[key] = (
                (levels.get(key) or 0) + qty if isinstance(qty, int) and not isinstance(levels.get(key), str) else qty
            )
        if zero_fill:
            for code, wh in {(k[0], k[1]) for k in levels}:
                for state in HUB_STATES:
                    levels.setdefault((code, wh, state), 0)
        return [
            StockChange(
                sku=code or None,
                location=wh or None,
                quantity=qty,
                state=state,
                changed_at=now,
                ref=f"{code}@{wh}:{state}",
            )
            for (code, wh, state), qty in sorted(levels.items(), key=lambda kv: kv[0])
        ]

    def stock_changes(self, cursor: str) -> Page:
        """GraphQL has no change feed: every poll reads the current levels (absolute; unchanged ones change
        nothing in the hub). The cursor is the read time, for logs."""
        return Page(self._stock(None, zero_fill=False), _now().isoformat(), False)

    def parse_stock_webhook(self, payload: dict) -> list[StockChange]:
        """A stock adjustment / hold event names one stock record: re-read that product's levels (all states,
        zeros included, so a released hold clears)."""
        data = payload.get("data") if isinstance(payload, dict) else None
        code = (
            (((data or {}).get("attributes") or {}).get("product") or {}).get("code")
            if isinstance(data, dict)
            else None
        )
        if not isinstance(data, dict) or data.get("type") != "stocks" or not code:
            raise errors.BadDataError(
                "Clarus stock webhook: not a stock record with product.code", body=payload, system="clarus"
            )
        return self._stock([str(code)], zero_fill=True)

    def stock_snapshot(self, skus: Iterable[str] | None = None) -> Iterable[StockChange]:
        if skus is None:
            yield from self._stock(None, zero_fill=True)
            return
        codes = list(dict.fromkeys(skus))
        for start in range(0, len(codes), 200):
            yield from self._stock(codes[start : start + 200], zero_fill=True)
