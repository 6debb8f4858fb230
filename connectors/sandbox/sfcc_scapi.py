"""The SFCC emulator's B2C Commerce API (SCAPI) Admin Orders and Omnichannel Inventory (OCI) routes, mixed into
:class:`connectors.sandbox.sfcc.SFCCEmulator` so that both API families see the same orders.

Routes (below ``/sfcc``), following commerce-sdk ``apis/orders-oas-1.5.2`` (Orders 1.5.2):
  GET   /checkout/orders/v1/organizations/{org}/orders                getOrders: ``siteId`` required; ``limit`` 1–200
                                                                      (default 100), ``offset`` ≥ 0, offset + limit ≤
                                                                      10,000; ``sortBy`` creation_date (default) |
                                                                      last_modified_date, ``sortOrder`` desc (default) |
                                                                      asc; ``exportStatus`` ≤ 3 and ``status`` ≤ 2
                                                                      comma-separated values; ``lastModifiedDateFrom``
                                                                      (≥) / ``lastModifiedDateTo`` (<), creationDate*
                                                                      likewise → ``{"data": [Order]}``
  GET   …/orders/{orderNo}                                            getOrder
  PATCH …/orders/{orderNo}                                            updateOrder: only ``c_`` properties → 204
  POST  …/orders/{orderNo}/oms-status-events                        createOmsStatusEvent → 202 (see the handler)
  PUT   …/orders/{orderNo}/{status|shipping-status|export-status|payment-status|confirmation-status}
                                                                      ``{"status": <enum>}`` (no other property) → 204
Errors are RFC 7807 ``{"type", "title", "detail"}``. Every call needs an Account Manager token whose scope holds
``SALESFORCE_COMMERCE_API:<tenant>`` for the organization (``f_ecom_<tenant>``) and ``sfcc.orders`` (reads) /
``sfcc.orders.rw`` (writes) — 403 otherwise. Dates are rendered with milliseconds, as SCAPI does.

OCI, as Salesforce's Inventory Availability RAML (``inventory/availability`` v1, published in commerce-sdk
``testIntegration/stagingApis/inventory/inventory-availability`` until 2025-02):
  POST /inventory/availability/v1/organizations/{tenantGroup}/availability-records/actions/batch-update
       batchInventoryUpdate ``{"records": [{"id", "location", "sku", "onHand"?, "effectiveDate"?, "safetyStockCount"?,
       "futureStock"?, "externalRefId"?}]}``, at most 100 records, nothing else in a record → 204 when every record
       landed; 200 ``{"errors": [{"details": {"id", "sku", "locationId"}, "errorCode", "message"}]}`` for those that
       did not (partial success; an unknown location is ``LocationDoesNotExist``, a bad value ``InvalidRequestParameter``);
       400 ``{"type": "about:blank", "errorCode", "message"}`` for a request refused whole. An (``id``, ``sku``) already
       applied is not applied again; an ``effectiveDate`` older than the record's is ignored (the newer figure stays).
  POST …/availability-records/actions/get-availability  skuAvailabilityByLocationAndOrGroup ``{"skus", "locations"}``
       (SKUs × locations ≤ 100; an unknown location → 400 ``LocationDoesNotExist``) → ``{"locations": [{"id",
       "records": [{"sku", "atf", "ato", "onHand", "reserved", "safetyStockCount", "effectiveDate"}]}]}``.
Scope ``sfcc.inventory.availability`` / ``.rw``. "Omnichannel Inventory uses the Tenant Group ID in place of the
Organization ID": with control ``configure_site`` ``{"tenant_group_id"}`` the OCI and Impex routes answer only for that
id (any other → 403 ``TenantNotProvisioned``); without it (the sandbox's leniency) they take the ``f_ecom_`` org.

Products (commerce-sdk ``apis/products-oas-1.2.0``, Admin Products 1.2):
  POST /product/products/v1/organizations/{org}/product-search   searchProducts: ``siteId`` optional;
       ProductSearchRequest ``{"query", "sorts"?, "limit"? 1–200, "offset"? ≥ 0}`` and nothing else; the query is
       ``matchAllQuery`` or a ``termQuery`` on ``id`` / ``type`` (operators is / one_of; ``type`` values item, master,
       variant, …); sorts on id / name / creationDate → ``{"limit", "offset", "total", "hits": [Product], "query",
       "sorts"}``; Product ``{"id", "name": {"default"}, "type": {"item" | "master" | "variant": true}, "owningCatalogId",
       "creationDate", "lastModified"}``. Scope ``sfcc.products`` / ``.rw``. Masters are seed_catalog's product keys,
       their SKUs variants, any other SKU a standard item. On an OCI site (control ``configure_site`` ``{"inventory": "oci"}``)
placing an order reserves its units at the order's location (ATF = on hand − reserved − safety stock), cancelling
or failing releases them, and shipping (the order's shipping status → shipped) fulfils them: on hand and reserved
both go down.
"""

from __future__ import annotations

import re
from datetime import datetime

from .server import HttpError, Response, route

ORG = r"/checkout/orders/v1/organizations/(?P<org>[^/]+)/orders"
OCI = r"/inventory/availability/v1/organizations/(?P<org>[^/]+)/availability-records/actions"
PRODUCTS = r"/product/products/v1/organizations/(?P<org>[^/]+)"
PRODUCT_TYPES = (
    "item",
    "master",
    "variant",
    "set",
    "bundle",
    "bundled",
    "option",
    "partOfProductSet",
    "retailSet",
    "partOfRetailSet",
    "variationGroup",
)
STATUS_FIELDS = {
    "status": "status",
    "shipping-status": "shipping_status",
    "export-status": "export_status",
    "payment-status": "payment_status",
    "confirmation-status": "confirmation_status",
}
SCAPI_STATUS = {"status": ("created", "new", "completed", "cancelled", "failed", "failed_with_reopen")}
EXPORT = ("not_exported", "exported", "ready", "failed")
ORDER_STATUS_FILTER = ("new", "completed", "cancelled")
_SNAKE = re.compile(r"_([a-z0-9])")
ERR = "https://api.commercecloud.salesforce.com/documentation/error/v1/errors/"


def problem(status: int, slug: str, title: str, detail: str) -> HttpError:
    return HttpError(status, {"type": ERR + slug, "title": title, "detail": detail})


def camel(key: str) -> str:
    return key if key.startswith("c_") else _SNAKE.sub(lambda m: m.group(1).upper(), key)


def _ms(value: str) -> str:
    """A stored instant (microseconds) as SCAPI renders it (milliseconds)."""
    if not value:
        return value
    dt = datetime.fromisoformat(value)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scapi_view(value, key: str = ""):
    if isinstance(value, dict):
        return {camel(k): scapi_view(v, k) for k, v in value.items() if not k.startswith("_") and v is not None}
    if isinstance(value, list):
        return [scapi_view(v) for v in value]
    if key in ("last_modified", "creation_date") and isinstance(value, str):
        return _ms(value)
    return value


def _date(req, name: str) -> datetime | None:
    value = req.q(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise problem(400, "bad-request", "Bad Request", f"{name} {value!r} is not a date-time.") from None


def _int(req, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = req.q(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        raise problem(400, "bad-request", "Bad Request", f"{name} must be an integer.") from None
    if value < low or (high is not None and value > high):
        raise problem(
            400,
            "bad-request",
            "Bad Request",
            f"{name} must be between {low} and {high}." if high is not None else f"{name} must be ≥ {low}.",
        )
    return value


class ScapiRoutes:
    """Mixed into the SFCC emulator; uses its lock, tokens, orders and ``_set_status``."""

    def reset_scapi(self) -> None:
        self.site_inventory = "lists"  # "lists" (inventory lists, OCAPI) or "oci"
        self.oci: dict[
            str, dict[str, dict]
        ] = {}  # location -> sku -> {"onHand", "reserved", "safetyStockCount", "effectiveDate"}
        self.oci_applied: set = set()  # (batch update id, sku) pairs and Impex record keys already applied
        self.oci_tenant_group = ""  # OCI's {organizationId}; "" = the f_ecom_ organization (lenient)
        self.oms_events: dict[str, list[dict]] = {}  # order no -> createOmsStatusEvent bodies accepted

    # --- auth -------------------------------------------------------------------------------------------
    def _admin_auth(self, req, org: str, scope: str, write: bool) -> None:
        value = req.header("Authorization")
        token = value[7:] if value.startswith("Bearer ") else ""
        grant = self.tokens.get(token)
        if grant is None:
            raise problem(401, "unauthorized", "Unauthorized", "The access token is missing, invalid or expired.")
        granted = set(str(grant.get("scope", "")).split())
        tenant = org.removeprefix("f_ecom_") if org.startswith("f_ecom_") else None
        needed = {f"{scope}.rw"} if write else {scope, f"{scope}.rw"}
        if tenant is None or f"SALESFORCE_COMMERCE_API:{tenant}" not in granted or not needed & granted:
            raise problem(
                403,
                "forbidden",
                "Forbidden",
                f"The token's scopes do not allow this call (needs SALESFORCE_COMMERCE_API:{tenant} and "
                f"{' or '.join(sorted(needed))}).",
            )

    def _oci_auth(self, req, scope: str, write: bool) -> None:
        """OCI / Impex routes: the path names the tenant group (when one is configured), the token holds a
        ``SALESFORCE_COMMERCE_API:`` tenant scope and the route's scope."""
        org = req.params["org"]
        if not self.oci_tenant_group:
            return self._admin_auth(req, org, scope, write)
        value = req.header("Authorization")
        grant = self.tokens.get(value[7:] if value.startswith("Bearer ") else "")
        if grant is None:
            raise HttpError(
                401,
                {
                    "type": "about:blank",
                    "errorCode": "Unauthorized",
                    "message": "The access token is missing, invalid or expired.",
                },
            )
        granted = set(str(grant.get("scope", "")).split())
        needed = {f"{scope}.rw"} if write else {scope, f"{scope}.rw"}
        if (
            org != self.oci_tenant_group
            or not any(g.startswith("SALESFORCE_COMMERCE_API:") for g in granted)
            or not needed & granted
        ):
            raise HttpError(
                403,
                {
                    "type": "about:blank",
                    "errorCode": "TenantNotProvisioned",
                    "message": "The client is not correctly configured to access the system.",
                },
            )

    def _scapi_order(self, req) -> dict:
        site = req.q("siteId")
        if not site:
            raise problem(400, "bad-request", "Bad Request", "The query parameter siteId is required.")
        order = self.orders.get(req.params["no"])
        if order is None or order["site_id"] != site:
            raise problem(
                404, "order-not-found", "Order Not Found", f"No order with number '{req.params['no']}' was found."
            )
        return order

    # --- Admin Orders -----------------------------------------------------------------------------------
    @route("GET", ORG)
    def scapi_get_orders(self, req):
        self._admin_auth(req, req.params["org"], "sfcc.orders", write=False)
        site = req.q("siteId")
        if not site:
            raise problem(400, "bad-request", "Bad Request", "The query parameter siteId is required.")
        limit = _int(req, "limit", 100, 1, 200)
        offset = _int(req, "offset", 0, 0)
        if offset + limit > 10_000:
            raise problem(
                400, "bad-request", "Bad Request", "The sum of offset and limit cannot be greater than 10000."
            )
        sort_by, sort_order = req.q("sortBy", "creation_date"), req.q("sortOrder", "desc")
        if sort_by not in ("creation_date", "last_modified_date") or sort_order not in ("asc", "desc"):
            raise problem(400, "bad-request", "Bad Request", "sortBy / sortOrder is not a valid value.")
        filters = {}
        for name, field, allowed, most in (
            ("exportStatus", "export_status", EXPORT, 3),
            ("status", "status", ORDER_STATUS_FILTER, 2),
        ):
            raw = req.q(name)
            if raw:
                values = [v.strip() for v in raw.split(",") if v.strip()]
                if len(values) > most or any(v not in allowed for v in values):
                    raise problem(
                        400, "bad-request", "Bad Request", f"{name} takes at most {most} of {', '.join(allowed)}."
                    )
                filters[field] = set(values)
        bounds = {
            k: _date(req, k)
            for k in ("lastModifiedDateFrom", "lastModifiedDateTo", "creationDateFrom", "creationDateTo")
        }
        with self.lock:
            docs = [
                scapi_view(o)
                for o in self.orders.values()
                if o["site_id"] == site and all(o[f] in vals for f, vals in filters.items())
            ]

        def at(doc, key):
            return datetime.fromisoformat(doc[key])

        for key, field, lower in (
            ("lastModifiedDateFrom", "lastModified", True),
            ("lastModifiedDateTo", "lastModified", False),
            ("creationDateFrom", "creationDate", True),
            ("creationDateTo", "creationDate", False),
        ):
            if bounds[key] is not None:
                docs = [d for d in docs if (at(d, field) >= bounds[key] if lower else at(d, field) < bounds[key])]
        field = "lastModified" if sort_by == "last_modified_date" else "creationDate"
        docs.sort(key=lambda d: (d[field], d["orderNo"]), reverse=sort_order == "desc")
        return Response(200, {"data": docs[offset : offset + limit]})

    @route("GET", ORG + r"/(?P<no>[^/]+)")
    def scapi_get_order(self, req):
        self._admin_auth(req, req.params["org"], "sfcc.orders", write=False)
        with self.lock:
            return Response(200, scapi_view(self._scapi_order(req)))

    @route("PATCH", ORG + r"/(?P<no>[^/]+)")
    def scapi_update_order(self, req):
        self._admin_auth(req, req.params["org"], "sfcc.orders", write=True)
        body = req.json()
        if not isinstance(body, dict) or any(not k.startswith("c_") for k in body):
            bad = [k for k in body if not k.startswith("c_")] if isinstance(body, dict) else ["(not an object)"]
            raise problem(
                400, "bad-request", "Bad Request", f"OrderUpdateRequest takes only c_ properties, not {', '.join(bad)}."
            )
        with self.lock:
            order = self._scapi_order(req)
            order.update(body)
            order["last_modified"] = self.now()
            self.patches.append({"order_no": order["order_no"], **body})
        return Response(204, None)

    @route(
        "PUT",
        ORG + r"/(?P<no>[^/]+)/(?P<field>status|shipping-status|export-status|payment-status|confirmation-status)",
    )
    def scapi_order_status(self, req):
        self._admin_auth(req, req.params["org"], "sfcc.orders", write=True)
        body = req.json()
        if not isinstance(body, dict) or set(body) != {"status"}:
            raise problem(400, "bad-request", "Bad Request", "The body must be {\"status\": …} and nothing else.")
        field = STATUS_FIELDS[req.params["field"]]
        value = body["status"]
        if field == "status" and value == "failed_with_reopen":
            value = "failed"
        with self.lock:
            order = self._scapi_order(req)
            try:
                self._set_status(order, field, value)
            except HttpError as exc:  # the emulator's OCAPI fault → the SCAPI problem document
                fault = (exc.body or {}).get("fault") or {}
                raise problem(400, "bad-request", "Bad Request", fault.get("message", "invalid status")) from None
            order["last_modified"] = self.now()
            self.patches.append({"order_no": order["order_no"], field: value})
        return Response(204, None)

    @route("POST", ORG + r"/(?P<no>[^/]+)/oms-status-events")
    def scapi_oms_status_event(self, req):
        """createOmsStatusEvent (Orders 1.5.2): exactly one of fulfillmentEvent / adjustment; a fulfillment event has
        id, occurredAt, type, 1–200 lineItems {id, quantity ≥ 0} (ids of the order's product items — the sandbox's
        reading), and trackingNumber + trackingUrl unless its type is processing → 202, kept for control oms_events."""
        self._admin_auth(req, req.params["org"], "sfcc.orders", write=True)
        body = req.json()

        def bad(detail):
            return problem(400, "bad-request", "Bad Request", detail)

        if (
            not isinstance(body, dict)
            or set(body) - {"omsOrderId", "fulfillmentEvent", "adjustment"}
            or ("fulfillmentEvent" in body) == ("adjustment" in body)
        ):
            raise bad("Exactly one of fulfillmentEvent or adjustment, and only omsOrderId beside it.")
        with self.lock:
            order = self._scapi_order(req)
            event = body.get("fulfillmentEvent")
            if event is not None:
                allowed = {
                    "id",
                    "occurredAt",
                    "type",
                    "lineItems",
                    "trackingNumber",
                    "trackingUrl",
                    "carrier",
                    "description",
                }
                if (
                    not isinstance(event, dict)
                    or set(event) - allowed
                    or not all(event.get(k) for k in ("id", "occurredAt", "type"))
                ):
                    raise bad("fulfillmentEvent needs id, occurredAt, type, lineItems and nothing unknown.")
                try:
                    datetime.fromisoformat(str(event["occurredAt"]))
                except ValueError:
                    raise bad("occurredAt is an RFC 3339 date-time.") from None
                lines, ids = event.get("lineItems"), {i["item_id"] for i in order["product_items"]}
                if (
                    not isinstance(lines, list)
                    or not 1 <= len(lines) <= 200
                    or any(
                        not isinstance(ln, dict)
                        or set(ln) != {"id", "quantity"}
                        or ln["id"] not in ids
                        or isinstance(ln["quantity"], bool)
                        or not isinstance(ln["quantity"], int)
                        or ln["quantity"] < 0
                        for ln in lines
                    )
                ):
                    raise bad("lineItems: 1 to 200 {id, quantity ≥ 0} naming the order's product items.")
                if event["type"] != "processing" and not (event.get("trackingNumber") and event.get("trackingUrl")):
                    raise bad("trackingNumber and trackingUrl are required unless type is processing.")
            self.oms_events.setdefault(order["order_no"], []).append(body)
        return Response(202, None)

    def control_oms_events(self, payload):
        with self.lock:
            return {no: list(events) for no, events in self.oms_events.items()}

    # --- OCI ----------------------------------------------------------------------------------------------
    def _oci_view(self, location: str, sku: str, rec: dict) -> dict:
        atf = max(0, rec["onHand"] - rec["reserved"] - rec["safetyStockCount"])
        return {
            "sku": sku,
            "onHand": rec["onHand"],
            "reserved": rec["reserved"],
            "safetyStockCount": rec["safetyStockCount"],
            "atf": atf,
            "ato": atf,
            "effectiveDate": rec["effectiveDate"],
        }

    @staticmethod
    def _ias(status: int, code: str, message: str) -> HttpError:
        return HttpError(status, {"type": "about:blank", "errorCode": code, "message": message})

    @route("POST", OCI + r"/batch-update")
    def oci_batch_update(self, req):
        self._oci_auth(req, "sfcc.inventory.availability", write=True)
        body = req.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records or set(body) != {"records"}:
            raise self._ias(400, "InvalidRequestParameter", "records must be a non-empty list (and the only property).")
        if len(records) > 100:
            raise self._ias(400, "InvalidRequestParameter", "A batch update takes at most 100 records.")
        failed = []
        with self.lock:
            for rec in records:
                why = self._oci_problem(rec)
                if why:
                    r = rec if isinstance(rec, dict) else {}
                    failed.append(
                        {
                            "details": {"id": r.get("id"), "sku": r.get("sku"), "locationId": r.get("location")},
                            "errorCode": why[0],
                            "message": why[1],
                        }
                    )
                    continue
                key = (rec["id"], rec["sku"])
                if key in self.oci_applied:  # a replay: applied once already
                    continue
                stored = self.oci[rec["location"]].setdefault(
                    rec["sku"], {"onHand": 0, "reserved": 0, "safetyStockCount": 0, "effectiveDate": ""}
                )
                when = datetime.fromisoformat(rec.get("effectiveDate") or self.now())
                if not stored["effectiveDate"] or when >= datetime.fromisoformat(stored["effectiveDate"]):
                    if "onHand" in rec:
                        stored["onHand"] = rec["onHand"]
                    if "safetyStockCount" in rec:
                        stored["safetyStockCount"] = rec["safetyStockCount"]
                    stored["effectiveDate"] = when.isoformat()
                self.oci_applied.add(key)
        return Response(200, {"errors": failed}) if failed else Response(204, None)

    RECORD_KEYS = {
        "id",
        "location",
        "sku",
        "onHand",
        "effectiveDate",
        "safetyStockCount",
        "futureStock",
        "externalRefId",
    }
    _LOCATION = re.compile(r"[a-zA-Z0-9_-]{2,128}")
    _SKU = re.compile(r"[^\\<>;%/\s]{2,250}")

    def _oci_problem(self, rec) -> tuple[str, str] | None:
        if not isinstance(rec, dict):
            return "InvalidRequestParameter", "a record must be an object"
        unknown = set(rec) - self.RECORD_KEYS
        if unknown:
            return "InvalidRequestParameter", f"unknown record properties {', '.join(sorted(unknown))}"
        for key, rx in (("id", None), ("location", self._LOCATION), ("sku", self._SKU)):
            value = rec.get(key)
            if not value or not isinstance(value, str) or (rx is not None and not rx.fullmatch(value)):
                return "InvalidRequestParameter", f"{key} is required (a valid {key})"
        for key in ("onHand", "safetyStockCount"):
            value = rec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                return "InvalidRequestParameter", f"{key} must be a number ≥ 0"
        if "effectiveDate" in rec:
            try:
                when = datetime.fromisoformat(str(rec["effectiveDate"]).replace("Z", "+00:00"))
            except ValueError:
                return "InvalidRequestParameter", "effectiveDate must be an RFC 3339 date-time"
            if when.tzinfo is None:
                return "InvalidRequestParameter", "effectiveDate must be an RFC 3339 date-time (with its offset)"
        if rec["location"] not in self.oci:
            return "LocationDoesNotExist", f"location {rec['location']!r} does not exist"
        return None

    @route("POST", OCI + r"/get-availability")
    def oci_get_availability(self, req):
        self._oci_auth(req, "sfcc.inventory.availability", write=False)
        body = req.json()
        if not isinstance(body, dict) or set(body) - {"sku", "group", "skus", "locations", "groups"}:
            raise self._ias(400, "InvalidRequestParameter", "The body is {sku?, group?, skus?, locations?, groups?}.")
        skus, locations = body.get("skus") or [], body.get("locations") or []
        if not isinstance(skus, list) or not isinstance(locations, list) or len(skus) * len(locations) > 100:
            raise self._ias(400, "InvalidRequestParameter", "skus × locations cannot be more than 100.")
        with self.lock:
            missing = [loc for loc in locations if loc not in self.oci]
            if missing:
                raise self._ias(400, "LocationDoesNotExist", "A location provided in the request does not exist.")
            out = [
                {
                    "id": loc,
                    "records": [self._oci_view(loc, sku, self.oci[loc][sku]) for sku in skus if sku in self.oci[loc]],
                }
                for loc in locations
            ]
        return Response(200, {"locations": out})

    def oci_order(self, order: dict, event: str) -> None:
        """An order's OCI reservation (caller holds the lock): ``place`` reserves, ``release`` frees, ``fulfil``
        ships (on hand and reserved go down)."""
        for item in order["product_items"]:
            rec = self.oci.get(item.get("inventory_id") or "", {}).get(item["product_id"])
            if rec is None:
                continue
            qty = int(item["quantity"])
            if event == "place":
                rec["reserved"] += qty
            elif event == "release":
                rec["reserved"] = max(0, rec["reserved"] - qty)
            elif event == "fulfil":
                rec["reserved"] = max(0, rec["reserved"] - qty)
                rec["onHand"] = max(0, rec["onHand"] - qty)

    # --- Products -----------------------------------------------------------------------------------------
    def _product_docs(self) -> list[dict]:
        variants = {sku for skus in self.masters.values() for sku in skus}
        docs = [{"id": m, "type": {"master": True}} for m in self.masters]
        docs += [{"id": p, "type": {"variant": True} if p in variants else {"item": True}} for p in self.products]
        return [
            {
                **d,
                "name": {"default": d["id"]},
                "owningCatalogId": "hub-catalog",
                "creationDate": "2026-01-01T00:00:00.000Z",
                "lastModified": "2026-01-01T00:00:00.000Z",
            }
            for d in docs
        ]

    @route("POST", PRODUCTS + r"/product-search")
    def scapi_search_products(self, req):
        self._admin_auth(req, req.params["org"], "sfcc.products", write=False)
        body = req.json()
        if not isinstance(body, dict) or "query" not in body or set(body) - {"query", "sorts", "limit", "offset"}:
            raise problem(
                400, "bad-request", "Bad Request", "ProductSearchRequest is {query, sorts?, limit?, offset?}."
            )
        limit, offset = body.get("limit", 25), body.get("offset", 0)
        if (
            any(isinstance(v, bool) or not isinstance(v, int) for v in (limit, offset))
            or not 1 <= limit <= 200
            or offset < 0
        ):
            raise problem(400, "bad-request", "Bad Request", "limit is 1 to 200, offset ≥ 0.")
        query = body["query"]
        if not isinstance(query, dict) or len(query) != 1:
            raise problem(400, "bad-request", "Bad Request", "A query holds exactly one query object.")
        with self.lock:
            docs = self._product_docs()
        if "termQuery" in query:
            term = query["termQuery"]
            fields, op, values = term.get("fields"), term.get("operator"), term.get("values") or []
            if (
                not isinstance(fields, list)
                or not fields
                or set(fields) - {"id", "type"}
                or op not in ("is", "one_of")
                or not isinstance(values, list)
                or (op == "is" and len(values) != 1)
            ):
                raise problem(400, "bad-request", "Bad Request", "termQuery: fields id / type, operator is / one_of.")
            if "type" in fields and set(values) - set(PRODUCT_TYPES) and fields == ["type"]:
                raise problem(400, "bad-request", "Bad Request", f"type is one of {', '.join(PRODUCT_TYPES)}.")
            docs = [
                d
                for d in docs
                if ("id" in fields and d["id"] in values)
                or ("type" in fields and any(d["type"].get(v) for v in values))
            ]
        elif "matchAllQuery" not in query:
            raise problem(400, "bad-request", "Bad Request", "The sandbox serves matchAllQuery and termQuery.")
        sorts = body.get("sorts") or [{"field": "id"}]
        for sort in reversed(sorts):
            if (
                not isinstance(sort, dict)
                or sort.get("field") not in ("id", "name", "creationDate")
                or sort.get("sortOrder", "asc") not in ("asc", "desc")
            ):
                raise problem(
                    400, "bad-request", "Bad Request", "sorts: field id / name / creationDate, sortOrder asc / desc."
                )
            key = (lambda d: d["name"]["default"]) if sort["field"] == "name" else (lambda d, f=sort["field"]: d[f])
            docs.sort(key=key, reverse=sort.get("sortOrder") == "desc")
        return Response(
            200,
            {
                "limit": limit,
                "offset": offset,
                "total": len(docs),
                "hits": docs[offset : offset + limit],
                "query": query,
                "sorts": sorts,
            },
        )

    def control_configure_site(self, payload):
        """{"inventory": "lists" | "oci", "tenant_group_id"?}: whether the site sells from inventory lists (OCAPI records)
        or OCI, and the OCI tenant group id its OCI / Impex routes answer for ("" = the f_ecom_ organization)."""
        mode = payload.get("inventory", "lists")
        if mode not in ("lists", "oci"):
            raise problem(400, "bad-request", "Bad Request", "inventory must be lists or oci")
        with self.lock:
            self.site_inventory = mode
            self.oci_tenant_group = str(payload.get("tenant_group_id") or "")
        return {"inventory": mode, "tenant_group_id": self.oci_tenant_group}

    def control_oci(self, payload):
        """The OCI records of {"location"} (all when omitted)."""
        with self.lock:
            return {
                loc: {sku: self._oci_view(loc, sku, r) for sku, r in recs.items()}
                for loc, recs in self.oci.items()
                if not payload.get("location") or loc == payload["location"]
            }
