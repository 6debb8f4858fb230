"""Salesforce B2C Commerce (SFCC) emulator, modelled on OCAPI (Shop / Data API 23.2 documents, served under any
version v23_x … v29_x: 24.5 is the current one) and Account Manager; the B2C Commerce API (SCAPI) Admin Orders
and Omnichannel Inventory routes are in :mod:`connectors.sandbox.sfcc_scapi` (same orders, same state), the OCI
Impex full-load imports in :mod:`connectors.sandbox.sfcc_impex`.

Routes (below ``/sfcc``):
  POST /dwsso/oauth2/access_token                          Account Manager client-credentials grant (HTTP Basic
                                                           client auth, form body ``grant_type=client_credentials``)
  GET|PUT|PATCH /s/-/dw/data/{v}/inventory_lists/{list}/product_inventory_records/{product_id}
                                                           Data API product inventory record: PUT creates or replaces
                                                           (settings not in the body back to defaults), PATCH changes
                                                           only the given properties (404 when there is no record);
                                                           ``ats`` = allocation + pre-order/back-order allocation +
                                                           turnover since ``allocation.reset_date`` (orders decrement,
                                                           cancellations give back); read-only / unknown properties,
                                                           a bad reset_date or enum are 400 faults
  POST /s/-/dw/batch                                       OCAPI batch: ``multipart/mixed`` sub-requests, one part
                                                           per record (``x-dw-content-id``,
                                                           ``x-dw-resource-path-extension``), the method and resource
                                                           path in the outer ``x-dw-http-method`` /
                                                           ``x-dw-resource-path`` headers; answer is multipart with
                                                           ``x-dw-status-code`` per part
  POST /s/-/dw/data/{v}/product_search                   products (start/count paging)
  POST /s/{site}/dw/shop/{v}/order_search                Shop API order search: filtered_query with a
                                                           ``range_filter`` on ``last_modified``; sorts; start/count
  GET|PATCH /s/{site}/dw/shop/{v}/orders/{order_no}      order; PATCH considers only ``status`` and ``c_*`` custom
                                                           attributes (tracking is carried in ``c_trackingNumbers`` /
                                                           ``c_carrier``), anything else is ignored; every shipment
                                                           has its own ``shipping_status``, product items name
                                                           their ``shipment_id``
  GET /s/-/dw/data/{v}/sites/{site}/orders/{order_no}    Data API order
  PUT /s/-/dw/data/{v}/sites/{site}/orders/{order_no}/{status|shipping_status|export_status|payment_status|
      confirmation_status}                                 ``{"status": <enum>}`` → 204; order status transitions as
                                                           documented (a placed order never returns to created /
                                                           failed); failing / cancelling releases the order's
                                                           inventory (turnover given back)

Control actions beyond the storefront contract in :mod:`connectors.sandbox`: configure_client, revoke_tokens,
cancel_order, set_order {"order_no", "status", "export_status", "shipping_status"} (the
site changes an order), record {"list", "sku"} (the full inventory record), and store_ship {"order_no", "tracking",
"carrier", "store", "lines": [[sku, qty]] (default: every
line not shipped yet)} — store staff / an OMS ship the order themselves: all remaining lines → the order's
``shipping_status`` becomes ``shipped`` with the tracking appended to ``c_trackingNumbers`` (no hub marker);
some lines → they move to a new shipment (product items split where a quantity is partial) whose own
``shipping_status`` is ``shipped`` with ``tracking_number``, and the order becomes ``part_shipped``. The
shipment carries ``c_fromStoreId`` = ``store``. Either bumps ``last_modified`` (the order comes back in
order_search).

Errors use the OCAPI fault document ``{"_v": "23.2", "fault": {"type", "message", "arguments"}}``;
Account Manager errors use the OAuth ``{"error", "error_description"}`` shape. What is not confirmed
against the published docs (the exact batch header set) is kept close to the OCAPI batch description.
"""

from __future__ import annotations

import hashlib
import itertools
import json as _json
import re
import secrets
from base64 import b64decode
from datetime import UTC, datetime

from ..multipart import build_multipart, parse_multipart
from .common import TokenControls, send_webhook
from .server import Emulator, HttpError, Request, Response, route
from .sfcc_impex import ImpexRoutes
from .sfcc_scapi import ScapiRoutes

V = r"v(?:2[3-9])_\d+"  # OCAPI versions the emulator serves (URL form v<yy>_<n>; 24.5 is the current one)
DATA = rf"/s/-/dw/data/{V}"
SHOP = rf"/s/(?P<site>[^/]+)/dw/shop/{V}"
BOUNDARY = "sfcc-batch-boundary"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _fault(status: int, type_: str, message: str, **arguments) -> HttpError:
    return HttpError(status, {"_v": "23.2", "fault": {"type": type_, "message": message, "arguments": arguments}})


WRITABLE = (
    "allocation",
    "perpetual_flag",
    "pre_order_back_order_handling",
    "pre_order_back_order_allocation",
    "in_stock_date",
)
HANDLING = ("none", "preorder", "backorder")


def _iso(value) -> str:
    """A DateTime as the sandbox stores it (UTC, microseconds, ``Z``), so stored instants compare as text."""
    dt = datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _new_record(now: str) -> dict:
    return {
        "amount": 0,
        "reset_date": now,
        "transactions": [],
        "perpetual_flag": False,
        "pre_order_back_order_handling": "none",
        "pre_order_back_order_allocation": 0,
        "in_stock_date": None,
        "creation_date": now,
        "last_modified": now,
        "_resource_state": "",
    }


def _turnover(rec: dict) -> int:
    return sum(delta for at, delta in rec["transactions"] if at > rec["reset_date"])


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 0 and int(value) == value


def _record_problem(method: str, body: dict) -> tuple[str, str] | None:
    """Why OCAPI would refuse this ProductInventoryRecord body (fault type, message), or None."""
    for key in body:
        if key not in WRITABLE and not key.startswith(("c_", "_")):
            return "PropertyConstraintViolationException", f"Property '{key}' is read-only or unknown."
    allocation = body.get("allocation")
    if allocation is None and method == "PUT":
        return "MissingPropertyException", "allocation.amount is required."
    if allocation is not None:
        if not isinstance(allocation, dict) or set(allocation) - {"amount", "reset_date"}:
            return "InvalidDocumentException", "allocation must be an object with amount and reset_date."
        if method == "PUT" and "amount" not in allocation:
            return "MissingPropertyException", "allocation.amount is required."
        if "amount" in allocation and not _number(allocation["amount"]):
            return "InvalidDocumentException", "allocation.amount must be a non-negative number."
        if allocation.get("reset_date") is not None:
            try:
                _iso(allocation["reset_date"])
            except (TypeError, ValueError):
                return "InvalidDocumentException", "allocation.reset_date must be an ISO 8601 DateTime."
    if "pre_order_back_order_handling" in body and body["pre_order_back_order_handling"] not in HANDLING:
        return "InvalidEnumValueException", "pre_order_back_order_handling must be one of none, preorder, backorder."
    if "pre_order_back_order_allocation" in body and not _number(body["pre_order_back_order_allocation"]):
        return "InvalidDocumentException", "pre_order_back_order_allocation must be a non-negative number."
    if "perpetual_flag" in body and not isinstance(body["perpetual_flag"], bool):
        return "InvalidDocumentException", "perpetual_flag must be a boolean."
    return None


ORDER_STATUSES = {
    "status": ("created", "new", "open", "completed", "cancelled", "failed"),
    "shipping_status": ("not_shipped", "part_shipped", "shipped"),
    "export_status": ("not_exported", "exported", "ready", "failed"),
    "payment_status": ("not_paid", "part_paid", "paid"),
    "confirmation_status": ("not_confirmed", "confirmed"),
}
# order status changes the platform allows (Orders API "Order Status": a placed order never goes back to created /
# failed; only a created order fails; cancelled / failed orders can be brought back)
STATUS_TRANSITIONS = {
    ("created", "new"),
    ("created", "failed"),
    ("failed", "created"),
    ("new", "open"),
    ("new", "completed"),
    ("open", "completed"),
    ("new", "cancelled"),
    ("open", "cancelled"),
    ("completed", "cancelled"),
    ("cancelled", "new"),
    ("cancelled", "open"),
    ("cancelled", "completed"),
}


class SFCCEmulator(ScapiRoutes, ImpexRoutes, TokenControls, Emulator):
    prefix = "sfcc"
    exempt_patterns = (r"^/dwsso/",)

    def reset(self):
        self.clients: dict[str, str] = {}  # client_id -> secret; empty = any non-empty pair is accepted
        self.tokens: dict[str, dict] = {}  # token -> {"client", "scope"}
        self.lists: dict[str, dict[str, dict]] = {}  # inventory list id -> product id -> record
        self.products: set[str] = set()
        self.masters: dict[str, list[str]] = {}  # master product id -> its variants (seed_catalog "products")
        self.orders: dict[str, dict] = {}
        self.order_seq = itertools.count(1001)
        self.webhook = {"order_url": "", "secret": ""}
        self.patches: list[dict] = []
        self.reset_scapi()
        self.reset_impex()

    def now(self) -> str:
        return _now()

    def error_body(self, status, message, code=""):
        types = {
            429: "QuotaExceededException",
            503: "ServiceUnavailableException",
            409: "ResourceStateConflictException",
            404: "ResourceNotFoundException",
            405: "MethodNotAllowedException",
        }
        return {
            "_v": "23.2",
            "fault": {"type": types.get(status, code or "InternalServerErrorException"), "message": message},
        }

    # --- Account Manager -------------------------------------------------------------------------
    @route("POST", r"/dwsso/oauth2/access_token")
    def token(self, req: Request) -> Response:
        auth = req.header("Authorization")
        client_id = secret = ""
        if auth.startswith("Basic "):
            try:
                client_id, secret = b64decode(auth[6:]).decode().split(":", 1)
            except (ValueError, UnicodeDecodeError):
                pass
        form = req.form()
        if form.get("grant_type") != "client_credentials":
            return Response(
                400, {"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}
            )
        with self.lock:
            known = self.clients.get(client_id) if self.clients else (secret or None)
            if not client_id or not secret or known != secret:
                return Response(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
            token = secrets.token_hex(16)
            self.tokens[token] = {"client": client_id, "scope": form.get("scope", "")}
        return Response(
            200, {"access_token": token, "scope": form.get("scope", "mail"), "token_type": "Bearer", "expires_in": 1799}
        )

    def _auth(self, req: Request) -> None:
        value = req.header("Authorization")
        token = value[7:] if value.startswith("Bearer ") else ""
        if token not in self.tokens:
            raise _fault(
                401, "InvalidAccessTokenException", "The request is unauthorized, the access token is invalid."
            )

    # --- inventory records -------------------------------------------------------------------------
    def _record_view(self, list_id: str, pid: str, rec: dict) -> dict:
        """The ProductInventoryRecord document (Data API 23.2): ``inventory_turnover`` is the sum of the
        record's inventory transactions after ``allocation.reset_date`` (negative when orders dominate),
        ``ats`` = allocation + pre-order/back-order allocation + that turnover, ``stock_level`` = allocation +
        turnover."""
        turnover = _turnover(rec)
        pboa = rec["pre_order_back_order_allocation"] if rec["pre_order_back_order_handling"] != "none" else 0
        return {
            "_v": "23.2",
            "_type": "product_inventory_record",
            "_resource_state": rec["_resource_state"],
            "product_id": pid,
            "inventory_list_id": list_id,
            "allocation": {"amount": rec["amount"], "reset_date": rec["reset_date"]},
            "ats": max(0, rec["amount"] + pboa + turnover),
            "stock_level": max(0, rec["amount"] + turnover),
            "inventory_turnover": turnover,
            "quantity_on_order": 0,
            "perpetual_flag": rec["perpetual_flag"],
            "pre_order_back_order_handling": rec["pre_order_back_order_handling"],
            "pre_order_back_order_allocation": rec["pre_order_back_order_allocation"],
            "in_stock_date": rec["in_stock_date"],
            "creation_date": rec["creation_date"],
            "last_modified": rec["last_modified"],
        }

    def _write_record(self, method: str, list_id: str, pid: str, body) -> tuple[int, dict]:
        """(status, body) for one PUT/PATCH of an inventory record; caller holds the lock. PUT creates (or
        replaces: every writable property not in the body goes back to its default); PATCH changes only the
        properties in the body and needs the record to exist. ``allocation.amount`` without
        ``allocation.reset_date`` resets the turnover at the server's "now"."""
        if list_id not in self.lists:
            return 404, {
                "_v": "23.2",
                "fault": {
                    "type": "InventoryListNotFoundException",
                    "message": f"No inventory list with ID '{list_id}' could be found.",
                    "arguments": {"listId": list_id},
                },
            }
        if pid not in self.products:
            return 404, {
                "_v": "23.2",
                "fault": {
                    "type": "ProductNotFoundException",
                    "message": f"No product with ID '{pid}' could be found.",
                    "arguments": {"productId": pid},
                },
            }
        if not isinstance(body, dict):
            return 400, {
                "_v": "23.2",
                "fault": {"type": "MalformedDocumentException", "message": "Body must be a JSON object."},
            }
        existing = self.lists[list_id].get(pid)
        if method == "PATCH" and existing is None:
            return 404, {
                "_v": "23.2",
                "fault": {
                    "type": "ProductInventoryRecordNotFoundException",
                    "message": f"No inventory record for product '{pid}' in list '{list_id}'.",
                    "arguments": {"productId": pid, "listId": list_id},
                },
            }
        problem = _record_problem(method, body)
        if problem:
            return 400, {
                "_v": "23.2",
                "fault": {"type": problem[0], "message": problem[1], "arguments": {"productId": pid}},
            }
        state = body.get("_resource_state")
        if existing is not None and state and state != existing["_resource_state"]:
            return 409, {
                "_v": "23.2",
                "fault": {
                    "type": "ResourceStateConflictException",
                    "message": "The resource state has changed.",
                    "arguments": {},
                },
            }
        if self.maybe_conflict():
            return 409, {
                "_v": "23.2",
                "fault": {
                    "type": "ResourceStateConflictException",
                    "message": "The resource state has changed.",
                    "arguments": {},
                },
            }
        now = _now()
        base = _new_record(now) if existing is None else dict(existing)
        if method == "PUT" and existing is not None:  # replace: the record's other settings back to defaults
            base = {
                **_new_record(now),
                "transactions": existing["transactions"],
                "creation_date": existing["creation_date"],
            }
        allocation = body.get("allocation") or {}
        if "amount" in allocation:
            base["amount"] = int(allocation["amount"])
            base["reset_date"] = _iso(allocation["reset_date"]) if allocation.get("reset_date") else now
        elif allocation.get("reset_date"):
            base["reset_date"] = _iso(allocation["reset_date"])
        for key in WRITABLE:
            if key in body and key != "allocation":
                base[key] = body[key]
        base["last_modified"] = now
        base["_resource_state"] = hashlib.sha1(
            f"{pid}:{base['amount']}:{base['reset_date']}:{now}".encode()
        ).hexdigest()
        self.lists[list_id][pid] = base
        return (201 if existing is None else 200), self._record_view(list_id, pid, base)

    def _inventory_event(self, order: dict, event: str) -> None:
        """What placing (``place``), cancelling / failing (``release``) or shipping (``fulfil``) an order does to
        the site's inventory: inventory lists record a transaction (turnover); OCI reserves / releases / fulfils."""
        if self.site_inventory == "oci":
            self.oci_order(order, event)
        elif event != "fulfil":
            self._order_transactions(order, -1 if event == "place" else +1)

    def _order_transactions(self, order: dict, sign: int) -> None:
        """The inventory transactions an order makes on its product items' records (caller holds the lock):
        placing it decrements (turnover goes down), cancelling / failing it gives the units back."""
        now = _now()
        for item in order["product_items"]:
            rec = self.lists.get(item.get("inventory_id") or "", {}).get(item["product_id"])
            if rec is not None:
                rec["transactions"].append((now, sign * int(item["quantity"])))
                rec["last_modified"] = now

    @route("GET", DATA + r"/inventory_lists/(?P<list>[^/]+)/product_inventory_records/(?P<pid>[^/]+)")
    def get_record(self, req):
        self._auth(req)
        list_id, pid = req.params["list"], req.params["pid"]
        with self.lock:
            rec = self.lists.get(list_id, {}).get(pid)
            if rec is None:
                raise _fault(
                    404,
                    "ProductInventoryRecordNotFoundException",
                    f"No inventory record for product '{pid}' in list '{list_id}'.",
                    productId=pid,
                    listId=list_id,
                )
            return Response(200, self._record_view(list_id, pid, rec))

    @route("PUT", DATA + r"/inventory_lists/(?P<list>[^/]+)/product_inventory_records/(?P<pid>[^/]+)")
    @route("PATCH", DATA + r"/inventory_lists/(?P<list>[^/]+)/product_inventory_records/(?P<pid>[^/]+)")
    def write_record(self, req):
        self._auth(req)
        with self.lock:
            status, body = self._write_record(req.method, req.params["list"], req.params["pid"], req.json())
        return Response(status, body)

    @route("POST", r"/s/-/dw/batch")
    def batch(self, req):
        self._auth(req)
        method = req.header("x-dw-http-method", "GET").upper()
        base = req.header("x-dw-resource-path")
        m = re.match(rf"^/s/-/dw/data/{V}/inventory_lists/([^/]+)/product_inventory_records/?$", base)
        if m is None:
            raise _fault(400, "UnsupportedBatchResourceException", f"Batch not supported for resource path '{base}'.")
        list_id = m.group(1)
        ctype = req.header("Content-Type")
        if "boundary=" not in ctype:
            raise _fault(400, "MalformedDocumentException", "multipart/mixed body with a boundary is required.")
        boundary = ctype.split("boundary=", 1)[1].strip().strip('"')
        parts = parse_multipart(req.body, boundary)
        if len(parts) > 50:
            raise _fault(
                400, "BatchRequestLimitExceededException", "A batch request may contain at most 50 sub-requests."
            )
        out = []
        with self.lock:
            for headers, body in parts:
                cid = headers.get("x-dw-content-id", "")
                pid = headers.get("x-dw-resource-path-extension", "").strip("/")
                sub_method = headers.get("x-dw-http-method", method).upper()
                if sub_method == "GET":
                    rec = self.lists.get(list_id, {}).get(pid)
                    if rec is None:
                        status, doc = (
                            404,
                            {
                                "_v": "23.2",
                                "fault": {
                                    "type": "ProductInventoryRecordNotFoundException",
                                    "message": f"No inventory record for '{pid}'.",
                                },
                            },
                        )
                    else:
                        status, doc = 200, self._record_view(list_id, pid, rec)
                else:
                    try:
                        payload = _json.loads(body) if body.strip() else None
                    except ValueError:
                        payload = None
                    status, doc = self._write_record(sub_method, list_id, pid, payload)
                out.append((cid, status, doc))
        return Response(
            200,
            build_multipart(
                [({"x-dw-content-id": c, "x-dw-status-code": str(s)}, _json.dumps(d)) for c, s, d in out], BOUNDARY
            ),
            content_type=f"multipart/mixed; boundary={BOUNDARY}",
        )

    @route("POST", DATA + r"/product_search")
    def product_search(self, req):
        self._auth(req)
        body = req.json() or {}
        start, count = int(body.get("start", 0)), min(200, int(body.get("count", 25)))
        with self.lock:
            ids = sorted(self.products)
        hits = [{"_type": "product_search_hit", "product_id": p, "id": p} for p in ids[start : start + count]]
        return Response(200, {"_v": "23.2", "count": len(hits), "hits": hits, "start": start, "total": len(ids)})

    # --- orders ----------------------------------------------------------------------------------------
    @route("POST", SHOP + r"/order_search")
    def order_search(self, req):
        self._auth(req)
        body = req.json() or {}
        start, count = int(body.get("start", 0)), int(body.get("count", 25))
        if count > 200:
            raise _fault(400, "ValueOutOfRangeException", "count must be between 1 and 200.", count=count)
        flt = (((body.get("query") or {}).get("filtered_query") or {}).get("filter") or {}).get("range_filter") or {}
        site = req.params["site"]
        with self.lock:
            orders = [o for o in self.orders.values() if o["site_id"] == site]
            if flt.get("field") == "last_modified" and flt.get("from"):
                inclusive = flt.get("from_inclusive", True)
                orders = [
                    o
                    for o in orders
                    if (o["last_modified"] >= flt["from"] if inclusive else o["last_modified"] > flt["from"])
                ]
            orders.sort(key=lambda o: (o["last_modified"], o["order_no"]))
            page = [dict(o) for o in orders[start : start + count]]
        hits = [{"_type": "order_search_hit", "data": o, "relevance": 1.0} for o in page]
        return Response(
            200,
            {
                "_v": "23.2",
                "_type": "order_search_result",
                "count": len(hits),
                "hits": hits,
                "start": start,
                "total": len(orders),
            },
        )

    @route("GET", SHOP + r"/orders/(?P<no>[^/]+)")
    def get_order(self, req):
        self._auth(req)
        with self.lock:
            order = self.orders.get(req.params["no"])
            if order is None or order["site_id"] != req.params["site"]:
                raise _fault(
                    404,
                    "OrderNotFoundException",
                    f"No order with number '{req.params['no']}' was found.",
                    orderNo=req.params["no"],
                )
            return Response(200, dict(order))

    @route("PATCH", SHOP + r"/orders/(?P<no>[^/]+)")
    def patch_order(self, req):
        """Shop API order update: only ``status`` and custom attributes are considered (OCAPI Shop API
        ``PATCH /orders/{order_no}``); other properties (``shipping_status``, ``export_status`` …) are ignored —
        they are set through the Data API status resources."""
        self._auth(req)
        body = req.json()
        if not isinstance(body, dict):
            raise _fault(400, "MalformedDocumentException", "Body must be a JSON object.")
        with self.lock:
            order = self._site_order(req)
            changes = {k: v for k, v in body.items() if k.startswith("c_")}
            if "status" in body and body["status"] != order["status"]:
                self._set_status(order, "status", body["status"])
            order.update(changes)
            order["last_modified"] = _now()
            self.patches.append(
                {"order_no": order["order_no"], **changes, **({"status": body["status"]} if "status" in body else {})}
            )
            return Response(200, dict(order))

    def _site_order(self, req) -> dict:
        order = self.orders.get(req.params["no"])
        if order is None or order["site_id"] != req.params["site"]:
            raise _fault(
                404,
                "OrderNotFoundException",
                f"No order with number '{req.params['no']}' was found.",
                orderNo=req.params["no"],
            )
        return order

    def _set_status(self, order: dict, field: str, value) -> None:
        """One order status change with the platform's side effects (caller holds the lock): an order that
        fails or is cancelled gives its inventory back; one brought back from there takes it again."""
        allowed = ORDER_STATUSES[field]
        if value not in allowed:
            raise _fault(
                400,
                "InvalidEnumValueException",
                f"{field} '{value}' is not one of {', '.join(allowed)}.",
                property=field,
            )
        current = order[field]
        if field == "status":
            if (current, value) not in STATUS_TRANSITIONS and current != value:
                raise _fault(
                    400,
                    "OrderStatusTransitionException",
                    f"The order status cannot change from '{current}' to '{value}'.",
                    fromStatus=current,
                    toStatus=value,
                )
            released = ("cancelled", "failed")
            if value in released and current not in released:
                self._inventory_event(order, "release")
            elif current in released and value not in released:
                self._inventory_event(order, "place")
        if field == "shipping_status" and value == "shipped" and order["status"] in ("cancelled", "failed"):
            raise _fault(400, "OrderStatusTransitionException", f"A {order['status']} order cannot be shipped.")
        if field == "shipping_status" and value == "shipped" and order["shipping_status"] != "shipped":
            self._inventory_event(order, "fulfil")
        order[field] = value  # order level only: a shipment's own shipping_status is the store's / OMS's

    @route("GET", DATA + r"/sites/(?P<site>[^/]+)/orders/(?P<no>[^/]+)")
    def data_get_order(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, dict(self._site_order(req)))

    @route(
        "PUT",
        DATA + r"/sites/(?P<site>[^/]+)/orders/(?P<no>[^/]+)/(?P<field>status|shipping_status|export_status|"
        r"payment_status|confirmation_status)",
    )
    def data_order_status(self, req):
        """Data API order status resources: ``PUT …/orders/{no}/<field>`` with ``{"status": <enum value>}``
        (OrderStatusUpdateRequest and its siblings); 204 No Content."""
        self._auth(req)
        body = req.json()
        if not isinstance(body, dict) or set(body) - {"status", "_v", "_type"} or "status" not in body:
            raise _fault(400, "InvalidDocumentException", "The body must be a status update request: {\"status\": …}.")
        with self.lock:
            order = self._site_order(req)
            self._set_status(order, req.params["field"], body["status"])
            order["last_modified"] = _now()
            self.patches.append({"order_no": order["order_no"], req.params["field"]: body["status"]})
        return Response(204, None)

    # --- control ---------------------------------------------------------------------------------------
    def control_configure_client(self, payload):
        with self.lock:
            self.clients[payload["client_id"]] = payload["client_secret"]
        return {"clients": sorted(self.clients)}

    def control_seed_catalog(self, payload):
        qty = int(payload.get("quantity", 0))
        skus = list(payload.get("skus") or [])
        for product in payload.get("products") or []:
            skus += list(product.get("skus") or [])
        with self.lock:
            self.products.update(skus)
            for product in payload.get("products") or []:
                if product.get("key") and product["key"] not in self.products:
                    self.masters[str(product["key"])] = list(product.get("skus") or [])
            for list_id in payload.get("channels") or []:
                records = self.lists.setdefault(list_id, {})
                for sku in skus:
                    if sku not in records:
                        rec = _new_record(_now())
                        rec["amount"] = qty
                        rec["_resource_state"] = hashlib.sha1(f"{sku}:{qty}:{rec['reset_date']}".encode()).hexdigest()
                        records[sku] = rec
                oci = self.oci.setdefault(list_id, {})  # the same id as an OCI location
                for sku in skus:
                    oci.setdefault(sku, {"onHand": qty, "reserved": 0, "safetyStockCount": 0, "effectiveDate": ""})
        return {"inventory_lists": sorted(self.lists), "products": len(self.products)}

    def _address(self, a: dict) -> dict:
        return {
            "first_name": a.get("first_name", ""),
            "last_name": a.get("last_name", ""),
            "company_name": a.get("company", ""),
            "address1": a.get("street", ""),
            "address2": a.get("street2", ""),
            "postal_code": a.get("postal_code", ""),
            "city": a.get("city", ""),
            "state_code": a.get("region", ""),
            "country_code": a.get("country", ""),
            "phone": a.get("phone", ""),
        }

    def control_create_orders(self, payload):
        ids = []
        with self.lock:
            for spec in payload.get("orders") or []:
                no = str(spec.get("order_no") or f"{next(self.order_seq):08d}")
                now = _now()
                address = self._address(
                    spec.get("address")
                    or {
                        "first_name": "Sam",
                        "last_name": "Shopper",
                        "street": "1 High St",
                        "postal_code": "SW1A 1AA",
                        "city": "London",
                        "country": "GB",
                    }
                )
                items = []
                for i, line in enumerate(spec.get("lines") or [], start=1):
                    price = line.get("price", 19.99)
                    items.append(
                        {
                            "_type": "product_item",
                            "item_id": f"{no}-{i}",
                            "product_id": line["sku"],
                            "product_name": line.get("name", line["sku"]),
                            "quantity": int(line.get("quantity", 1)),
                            "base_price": price,
                            "price": round(price * int(line.get("quantity", 1)), 2),
                            "shipment_id": "me",
                            "inventory_id": spec.get("channel", ""),
                        }
                    )
                order = {
                    "_v": "23.2",
                    "_type": "order",
                    "order_no": no,
                    "site_id": spec.get("site", "RefArch"),
                    "status": spec.get("status", "new"),
                    "shipping_status": "not_shipped",
                    "export_status": spec.get("export_status", "ready"),
                    "confirmation_status": "confirmed",
                    "payment_status": "paid",
                    "creation_date": now,
                    "last_modified": now,
                    "currency": spec.get("currency", "GBP"),
                    "order_total": round(sum(i["price"] for i in items), 2),
                    "customer_info": {
                        "email": spec.get("email", "shopper@example.com"),
                        "customer_name": "Sam Shopper",
                    },
                    "billing_address": address,
                    "product_items": items,
                    "shipments": [
                        {
                            "shipment_id": "me",
                            "shipping_address": address,
                            "shipping_method": {"id": spec.get("shipping_method", "standard")},
                            "gift": bool(spec.get("gift_message")),
                            "gift_message": spec.get("gift_message", ""),
                            "shipping_status": "not_shipped",
                            "tracking_number": None,
                        }
                    ],
                    "coupon_items": [
                        {"code": c, "status_code": "applied", "valid": True}
                        for c in (spec.get("promotion_codes") or spec.get("discount_codes") or [])
                    ],
                    "c_deliveryNotes": spec.get("delivery_notes", ""),
                }
                for k, v in (spec.get("custom_fields") or {}).items():
                    order[f"c_{k}"] = v
                self.orders[no] = order
                if order["status"] != "failed":
                    self._inventory_event(order, "place")  # placing the order decrements / reserves its inventory
                ids.append(no)
            hook = dict(self.webhook)
        if hook["order_url"]:
            for no in ids:
                send_webhook(
                    hook["order_url"],
                    hook["secret"],
                    {"type": "order.created", "order_no": no, "site_id": self.orders[no]["site_id"]},
                )
        return {"ids": ids}

    def control_cancel_order(self, payload):
        with self.lock:
            order = self.orders[payload["order_no"]]
            if order["status"] not in ("cancelled", "failed"):
                self._inventory_event(order, "release")
            order["status"] = "cancelled"
            order["last_modified"] = _now()
        return {"ok": True}

    def control_store_ship(self, payload):
        """Store staff / an OMS ship (part of) an order themselves — see the module docstring."""
        no = str(payload.get("order_no", ""))
        tracking, carrier, store = (
            str(payload.get("tracking") or ""),
            str(payload.get("carrier") or ""),
            payload.get("store"),
        )
        with self.lock:
            order = self.orders.get(no)
            if order is None:
                raise _fault(404, "OrderNotFoundException", f"No order with number '{no}' was found.", orderNo=no)
            if order["status"] == "cancelled":
                raise _fault(400, "OrderStatusTransitionException", "A cancelled order cannot be shipped.")
            shipped = {s["shipment_id"] for s in order["shipments"] if s.get("shipping_status") == "shipped"}
            open_items = [i for i in order["product_items"] if i["shipment_id"] not in shipped]
            wanted = payload.get("lines")
            remaining = {}
            for i in open_items:
                remaining[i["product_id"]] = remaining.get(i["product_id"], 0) + i["quantity"]
            if wanted:
                asked = {}
                for sku, qty in wanted:
                    asked[sku] = asked.get(sku, 0) + int(qty)
                for sku, qty in asked.items():
                    if qty <= 0 or qty > remaining.get(sku, 0):
                        raise _fault(
                            400,
                            "InvalidQuantityException",
                            f"order {no} has {remaining.get(sku, 0)} unshipped of {sku!r}, cannot ship {qty}.",
                        )
            if not open_items:
                raise _fault(400, "OrderStatusTransitionException", f"order {no} has nothing left to ship.")
            if not wanted or asked == remaining:  # everything that is left: the order-level update
                for s in order["shipments"]:
                    if s["shipment_id"] not in shipped and store:
                        s["c_fromStoreId"] = store
                if order["shipping_status"] != "shipped":
                    self._inventory_event(order, "fulfil")
                order["shipping_status"] = "shipped"
                if tracking:
                    order["c_trackingNumbers"] = ",".join(
                        t for t in (order.get("c_trackingNumbers") or "", tracking) if t
                    )
                if carrier:
                    order["c_carrier"] = carrier
                sid = ",".join(s["shipment_id"] for s in order["shipments"] if s["shipment_id"] not in shipped)
            else:
                sid = f"store-{len(order['shipments'])}"
                base = next(s for s in order["shipments"] if s["shipment_id"] not in shipped)
                order["shipments"].append(
                    {
                        "shipment_id": sid,
                        "shipping_address": base["shipping_address"],
                        "shipping_method": base["shipping_method"],
                        "gift": False,
                        "gift_message": "",
                        "shipping_status": "shipped",
                        "tracking_number": tracking or None,
                        "c_carrier": carrier,
                        **({"c_fromStoreId": store} if store else {}),
                    }
                )
                for sku, qty in asked.items():
                    for item in [i for i in open_items if i["product_id"] == sku]:
                        if qty <= 0:
                            break
                        take = min(qty, item["quantity"])
                        qty -= take
                        if take == item["quantity"]:
                            item["shipment_id"] = sid
                            continue
                        item["quantity"] -= take
                        item["price"] = round(item["base_price"] * item["quantity"], 2)
                        order["product_items"].append(
                            {
                                **item,
                                "item_id": f"{item['item_id']}-{sid}",
                                "quantity": take,
                                "price": round(item["base_price"] * take, 2),
                                "shipment_id": sid,
                            }
                        )
                order["shipping_status"] = "part_shipped"
            order["last_modified"] = _now()
            return {
                "order_no": no,
                "shipment_id": sid,
                "shipping_status": order["shipping_status"],
                "last_modified": order["last_modified"],
            }

    def control_set_order(self, payload):
        """The site (a job, an OMS, Business Manager) changes an order: {"order_no", "status", "export_status",
        "shipping_status"} — each through the same rules and side effects as the Data API; bumps last_modified."""
        with self.lock:
            order = self.orders.get(str(payload.get("order_no", "")))
            if order is None:
                raise _fault(
                    404, "OrderNotFoundException", f"No order with number '{payload.get('order_no')}' was found."
                )
            for field in ("status", "export_status", "shipping_status"):
                if field in payload:
                    self._set_status(order, field, payload[field])
            order["last_modified"] = _now()
            return {"order_no": order["order_no"], "status": order["status"], "export_status": order["export_status"]}

    def control_record(self, payload):
        """The full ProductInventoryRecord document of {"list", "sku"} (what Business Manager shows)."""
        with self.lock:
            rec = self.lists.get(payload.get("list", ""), {}).get(payload.get("sku", ""))
            return self._record_view(payload["list"], payload["sku"], rec) if rec else {}

    def control_configure_webhooks(self, payload):
        with self.lock:
            self.webhook = {"order_url": payload.get("order_url", ""), "secret": payload.get("secret", "")}
        return self.webhook

    def control_state(self, payload):
        skus = set(payload.get("skus") or [])
        with self.lock:
            if self.site_inventory == "oci":  # what the site sells: OCI's available-to-fulfil per location
                inventory = {
                    loc: {sku: self._oci_view(loc, sku, r)["atf"] for sku, r in recs.items() if not skus or sku in skus}
                    for loc, recs in self.oci.items()
                }
            else:
                inventory = {
                    lid: {
                        pid: self._record_view(lid, pid, r)["ats"] for pid, r in recs.items() if not skus or pid in skus
                    }
                    for lid, recs in self.lists.items()
                }
            orders = {
                no: {
                    "status": o["status"],
                    "export_status": o["export_status"],
                    "shipment_state": o["shipping_status"],
                    "shipping_status": o["shipping_status"],
                    "tracking": [t for t in (o.get("c_trackingNumbers") or "").split(",") if t],
                    "carrier": o.get("c_carrier", ""),
                    "last_modified": o["last_modified"],
                    "hub_marker": o.get("c_hubDispatchRef", ""),
                    "shipments": {s["shipment_id"]: s.get("shipping_status", "") for s in o["shipments"]},
                }
                for no, o in self.orders.items()
            }
        return {"inventory": inventory, "orders": orders, "patches": len(self.patches)}
