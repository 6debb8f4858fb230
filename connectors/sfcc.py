"""Salesforce B2C Commerce (SFCC) as a Storefront, on either API family (``options.api_family``):

- ``ocapi`` (default; realms that have OCAPI settings — Salesforce no longer provisions them for new realms from
  2026-09-01): this module, OCAPI Shop / Data API (current version 24.5, documents as in 23.2) with inventory lists;
- ``scapi_oci`` (new realms, sites on Omnichannel Inventory): :mod:`connectors.sfcc_scapi` — B2C Commerce API Admin
  Orders + OCI; :func:`connectors.registry.get_connector` builds that class when the option says so.

The OCAPI family, with Account Manager (see :mod:`connectors.sandbox.sfcc` for the emulated routes):

- auth: Account Manager client-credentials grant, ``POST https://account.demandware.com/dwsso/oauth2/access_token``
  with HTTP Basic client authentication (``Connection.auth_url`` = the Account Manager root or the full token
  URL; the sandbox serves it under ``/sfcc/dwsso/oauth2/access_token``, so ``auth_url`` = ``<sandbox>/sfcc``);
- stock: Data API product inventory records (OCAPI Data API 23.2, ProductInventoryRecords resource and the
  ProductInventoryRecord document), one record per (inventory list, product). SFCC sells
  ``ats`` = allocation + pre-order/back-order allocation + ``inventory_turnover`` (the sum of the record's
  inventory transactions — the site's own order decrements — after ``allocation.reset_date``). The hub
  PATCHes only what it owns, ``{"allocation": {"amount": <its figure>, "reset_date": <InventoryTarget.as_of>}}``:
  the reset instant is when the hub computed the figure, so orders placed while the figure was on its way are
  still subtracted by the site (a write without reset_date resets at arrival and forgets them: an oversell
  window), and the record's other settings (pre-order / back-order handling and allocation, perpetual flag,
  in-stock date, custom attributes) are left as Business Manager set them (a PUT would replace them). A record
  that does not exist yet (404 ``ProductInventoryRecordNotFoundException``) is created with PUT. Orders placed
  before the snapshot and not yet captured by the hub are the remaining window (the order poll's lag).
  Drift reads back ``ats``. Records are written through the OCAPI batch resource (``POST /s/-/dw/batch``,
  ``multipart/mixed``, at most ``batch_size`` ≤ 50 sub-requests), per inventory list; per-record
  failures come back with their own ``x-dw-status-code``. A 409 on a record (resource state changed)
  is simply re-sent: the value is absolute, so the last writer is the hub's current figure;
- orders: Shop API ``order_search`` on ``last_modified`` (ascending, paged with start/count) per site;
  the cursor is ``<last_modified>|<order_no>`` of the last order seen, so orders sharing a timestamp
  across page boundaries are neither skipped nor repeated;
- readiness: only orders that are placed (``status`` new / open / completed; ``created`` = not placed yet,
  ``failed`` = its inventory was released) and released for export (``export_status`` = ready) are
  ``capturable``; a cancelled order follows the hub's cancel path (Orders API "Update Order Statuses");
- export handshake (:meth:`SFCCConnector.mark_exported`): once the warehouse acknowledged the order the hub sets
  ``export_status`` = exported (SFCC finalises the order's inventory transactions; other export jobs skip it),
  failed where the hub gives up (the order failed in the hub) — Data API
  ``PUT /s/-/dw/data/{version}/sites/{site}/orders/{order_no}/export_status`` ``{"status": …}``;
- shipped: the tracking numbers and carrier go into the custom attributes named by options
  ``tracking_attribute`` / ``carrier_attribute`` (defaults ``c_trackingNumbers`` / ``c_carrier``) with the Shop
  API ``PATCH /orders/{order_no}`` (which considers only ``status`` and custom attributes — the SFCC order has no
  tracking field, so sites carry it as a custom attribute), then ``shipping_status`` = shipped with the Data API
  ``PUT /s/-/dw/data/{version}/sites/{site}/orders/{order_no}/shipping_status`` (``{"status": "shipped"}``).
  SFCC orders have no integer version: ``version`` is None.
  The same PATCH writes the hub's marker (option ``hub_marker_attribute``, default ``c_hubDispatchRef``:
  ``hub-<digest of the tracking numbers>``), so the hub can tell its own shipped updates from anyone else's;
  like the tracking attributes it must be defined on the Order in Business Manager;
- storefront-side fulfilments (ship-from-store, store staff or an OMS shipping the order themselves):
  :meth:`SFCCConnector.storefront_fulfilments` reads them off the polled order, one per OCAPI shipment,
  ``fulfilment_ref`` = ``<order_no>/<shipment_id>`` (stable across polls), lines = the shipment's product
  items, location = the shipment's ``c_fromStoreId`` (the SFRA store-pickup / ship-from-store attribute).
  A shipment is store-shipped when its own ``shipping_status`` is ``shipped`` (the hub never writes
  shipment-level status), or when the order's ``shipping_status`` is ``shipped`` without the hub's
  marker (the store / OMS shipped the rest of the order, tracking in the order's tracking attribute).
  The hub reports them to the master until it acknowledges (``orders.fulfilments.send_fulfilments``).

``Channel.external_id`` is the inventory list id. An order's channel is the ``inventory_id`` of its
product items (BOPIS / multi-list sites), else ``options["default_inventory_list"]``.

Connection.options: ``api_family`` (``ocapi`` | ``scapi_oci``), ``site_id`` (required, :mod:`connectors.options`), ``api_version``
(default ``v24_5``, the current OCAPI version), ``organization_id`` (``scapi_oci``: ``f_ecom_<realm>_<instance>``),
``default_inventory_list``, ``batch_size`` (default 50), ``tracking_attribute``, ``carrier_attribute``,
``delivery_notes_attribute`` (default ``c_deliveryNotes``), ``scope``, ``orders_start`` (ISO instant: the
first poll starts there instead of at the beginning of time), ``hub_marker_attribute``,
``storefront_fulfilments`` (default true; false: the site never ships itself, nothing is read),
``storefront_fulfilments_from`` (ISO instant: orders created before it are never read as store-shipped —
set it when enabling the marker on a site whose earlier hub-shipped orders carry none).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Iterable

from django.utils.dateparse import parse_datetime

from . import errors
from .base import (
    Address,
    Connector,
    Fulfilment,
    InventoryResult,
    InventoryTarget,
    OrderLineData,
    Page,
    Parcel,
    Storefront,
    StorefrontOrder,
    StorefrontStock,
)
from .http import HttpClient, OAuthClientCredentials
from .multipart import build_multipart, parse_multipart
from .parsing import ParsedBatch, parse_iso

ACCOUNT_MANAGER = "https://account.demandware.com"
TOKEN_PATH = "/dwsso/oauth2/access_token"


def token_url(auth_url: str) -> str:
    """``Connection.auth_url`` is the Account Manager root (``https://account.demandware.com``; the sandbox:
    ``http://127.0.0.1:8765/sfcc``) or the full token URL; blank means Account Manager."""
    root = (auth_url or ACCOUNT_MANAGER).rstrip("/")
    return root if "/oauth2/" in root else root + TOKEN_PATH


MAX_BATCH = 50
HUB_MARKER_PREFIX = "hub-"
SHIPPING_STATUSES = ("not_shipped", "part_shipped", "shipped")
PLACED_STATUSES = ("new", "open", "completed")
# the current OCAPI version ("OCAPI Versioning and Deprecation Policy": the newest, 24.5; a version is supported for
# at least two years after it is published) — set options.api_version to pin another
OCAPI_VERSION = "v24_5"
_KNOWN_ORDER_KEYS = {"c_deliveryNotes"}
_ORDER_NO_RX = re.compile(r"[A-Za-z0-9_-]{1,100}")  # an order number named by a webhook becomes part of a request path


def _fault_text(doc) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("fault"), dict):
        return f"{doc['fault'].get('type', '')}: {doc['fault'].get('message', '')}"
    return str(doc)[:300]


def _fault_type(doc) -> str:
    return str(doc["fault"].get("type", "")) if isinstance(doc, dict) and isinstance(doc.get("fault"), dict) else ""


def utc_iso(value: datetime | None = None) -> str:
    """An OCAPI / SCAPI DateTime: UTC, milliseconds, ``Z``."""
    value = value or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def allocation_body(t: InventoryTarget) -> dict:
    """The only part of a ProductInventoryRecord the hub owns: the allocation and its reset instant."""
    return {"allocation": {"amount": int(t.quantity), "reset_date": utc_iso(t.as_of)}}


def _part_error(status: int, doc, sku: str, list_id: str) -> errors.ConnectorError:
    msg = f"sfcc inventory record {list_id}/{sku} → {status}: {_fault_text(doc)}"
    kw = dict(status=status, body=doc, system="sfcc")
    if status == 404:
        return errors.NotFoundError(msg, **kw)
    if status in (400, 422):
        return errors.BadDataError(msg, **kw)
    if status == 409:
        return errors.ConflictError(msg, **kw)
    if status == 429:
        return errors.RateLimitedError(msg, **kw)
    if status >= 500 or status == 408:
        return errors.RetryableError(msg, **kw)
    return errors.PermanentError(msg, **kw)


def _dt(value) -> datetime | None:
    if not value:
        return None
    return parse_datetime(str(value).replace("Z", "+00:00"))


def _cents(value) -> int | None:
    if value is None:
        return None
    return int(round(float(value) * 100))


def _address(a: dict | None) -> Address:
    a = a or {}
    return Address(
        first_name=a.get("first_name", "") or "",
        last_name=a.get("last_name", "") or "",
        company=a.get("company_name", "") or "",
        street=a.get("address1", "") or "",
        street2=a.get("address2", "") or "",
        postal_code=a.get("postal_code", "") or "",
        city=a.get("city", "") or "",
        region=a.get("state_code", "") or "",
        country=a.get("country_code", "") or "",
        phone=a.get("phone", "") or "",
    )


class SFCCConnector(Connector, Storefront):
    system_type = "sfcc"
    api_family = "ocapi"

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.site_id = opts.get("site_id", "RefArch")
        self.version = opts.get("api_version", OCAPI_VERSION)
        self.batch_size = max(1, min(MAX_BATCH, int(opts.get("batch_size", MAX_BATCH))))
        self.default_list = opts.get("default_inventory_list", "")
        self.tracking_attr = opts.get("tracking_attribute", "c_trackingNumbers")
        self.carrier_attr = opts.get("carrier_attribute", "c_carrier")
        self.notes_attr = opts.get("delivery_notes_attribute", "c_deliveryNotes")
        self.marker_attr = opts.get("hub_marker_attribute", "c_hubDispatchRef")
        self.reads_fulfilments = str(opts.get("storefront_fulfilments", True)).lower() not in ("false", "0", "no", "")
        self.fulfilments_from = parse_iso(opts.get("storefront_fulfilments_from"))
        self.orders_start = str(opts.get("orders_start") or "")  # ISO instant bounding the very first poll
        super().__init__(connection, client)

    def build_client(self):
        c = self.connection
        auth = OAuthClientCredentials(
            token_url=token_url(c.auth_url),
            client_id=c.client_id,
            client_secret=c.get_secret(),
            scope=(c.options or {}).get("scope", ""),
            timeout=c.timeout_seconds,
        )
        return HttpClient.for_connection(c, auth=auth)

    # --- paths ----------------------------------------------------------------------------------------
    def _records_path(self, list_id: str) -> str:
        return f"/s/-/dw/data/{self.version}/inventory_lists/{list_id}/product_inventory_records"

    def _shop(self, path: str) -> str:
        return f"/s/{self.site_id}/dw/shop/{self.version}{path}"

    def _batch(self, method: str, list_id: str, subs: list[tuple[str, dict | None]]) -> dict[str, tuple[int, object]]:
        """One OCAPI batch request: ``subs`` = [(product id, body)] → {product id: (status, document)}."""
        boundary = f"hub-{uuid.uuid4().hex}"
        ids = {f"c{i}": pid for i, (pid, _) in enumerate(subs)}
        parts = [
            (
                {"x-dw-content-id": cid, "x-dw-resource-path-extension": pid},
                json.dumps(body) if body is not None else "",
            )
            for (cid, pid), (_, body) in zip(ids.items(), subs)
        ]
        resp = self.client.post(
            "/s/-/dw/batch",
            data=build_multipart(parts, boundary),
            headers={
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                "x-dw-http-method": method,
                "x-dw-resource-path": self._records_path(list_id) + "/",
            },
        )
        ctype = resp.headers.get("Content-Type", "")
        if "boundary=" not in ctype:
            raise errors.BadDataError(
                f"sfcc batch answered {ctype!r}, not multipart", status=resp.status_code, system="sfcc"
            )
        out = {}
        for headers, payload in parse_multipart(resp.content, ctype.split("boundary=", 1)[1].strip().strip('"')):
            pid = ids.get(headers.get("x-dw-content-id", ""))
            if pid is None:
                continue
            try:
                doc = json.loads(payload) if payload.strip() else {}
            except ValueError:
                doc = payload
            out[pid] = (int(headers.get("x-dw-status-code", "500")), doc)
        return out

    # --- stock ------------------------------------------------------------------------------------------
    def set_stock(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """PATCH each record's allocation (amount + reset_date = the target's ``as_of``), through the batch
        resource; a record that does not exist yet (404 ``ProductInventoryRecordNotFoundException``) is
        created with PUT. A 409 is re-sent (the body is absolute), at most twice."""
        by_list: dict[str, list[InventoryTarget]] = {}
        for t in targets:
            by_list.setdefault(t.channel_ref, []).append(t)
        results: list[InventoryResult] = []
        for list_id, items in by_list.items():
            latest = {t.sku: t for t in items}  # a repeated SKU: the last target wins
            pending = [("PATCH", t) for t in latest.values()]
            for attempt in range(4):
                again: list[tuple[str, InventoryTarget]] = []
                for method in ("PATCH", "PUT"):
                    todo = [t for m, t in pending if m == method]
                    for start in range(0, len(todo), self.batch_size):
                        chunk = todo[start : start + self.batch_size]
                        answers = self._batch(method, list_id, [(t.sku, allocation_body(t)) for t in chunk])
                        for t in chunk:
                            status, doc = answers.get(t.sku, (500, "missing from batch response"))
                            if status in (200, 201):
                                amount = ((doc or {}).get("allocation") or {}).get("amount", t.quantity)
                                results.append(InventoryResult(t.sku, list_id, int(amount), None, f"{list_id}/{t.sku}"))
                            elif (
                                method == "PATCH"
                                and status == 404
                                and _fault_type(doc) == "ProductInventoryRecordNotFoundException"
                            ):
                                again.append(("PUT", t))  # no record yet: create it
                            elif status == 409 and attempt < 2:
                                again.append((method, t))
                            else:
                                results.append(
                                    InventoryResult(
                                        t.sku,
                                        list_id,
                                        t.quantity,
                                        None,
                                        "",
                                        ok=False,
                                        error=_part_error(status, doc, t.sku, list_id),
                                    )
                                )
                if not again:
                    break
                pending = again
        return results

    def get_stock(self, skus: list[str], channel_ref: str) -> list[StorefrontStock]:
        """What the site sells now: each record's ``ats`` (allocation + pre-order/back-order − turnover since
        the reset date), not the allocation the hub wrote."""
        out = []
        skus = list(dict.fromkeys(skus))
        for start in range(0, len(skus), self.batch_size):
            answers = self._batch("GET", channel_ref, [(s, None) for s in skus[start : start + self.batch_size]])
            for sku, (status, doc) in answers.items():
                if status == 200 and isinstance(doc, dict):
                    out.append(
                        StorefrontStock(sku, channel_ref, int(doc.get("ats") or 0), None, f"{channel_ref}/{sku}")
                    )
                elif status != 404:
                    raise _part_error(status, doc, sku, channel_ref)
        return out

    def list_skus(self) -> Iterable[str]:
        start, count = 0, 200
        while True:
            body = self.client.post(
                f"/s/-/dw/data/{self.version}/product_search",
                json={"query": {"match_all_query": {}}, "select": "(**)", "start": start, "count": count},
            ).json()
            hits = body.get("hits") or []
            for hit in hits:
                yield hit.get("product_id") or hit.get("id")
            start += len(hits)
            if not hits or start >= int(body.get("total", 0)):
                return

    # --- orders -----------------------------------------------------------------------------------------
    def _to_order(self, o: dict) -> StorefrontOrder:
        items = o.get("product_items") or []
        shipment = (o.get("shipments") or [{}])[0]
        channel = (
            next((i.get("inventory_id") for i in items if i.get("inventory_id")), "")
            or self.default_list
            or o.get("site_id", "")
        )
        own = (self.notes_attr, self.tracking_attr, self.carrier_attr, self.marker_attr, "c_trackingUrls")
        custom = {k[2:]: v for k, v in o.items() if k.startswith("c_") and k not in own}
        lines = [
            OrderLineData(
                line_id=str(i.get("item_id") or i.get("product_id")),
                sku=str(i.get("product_id", "")),
                quantity=int(i.get("quantity", 0)),
                unit_price_cents=_cents(i.get("base_price")),
                name=i.get("product_name", "") or "",
                custom_fields={k[2:]: v for k, v in i.items() if k.startswith("c_")},
            )
            for i in items
        ]
        email = (o.get("customer_info") or {}).get("email", "") or ""
        ship_to = _address(shipment.get("shipping_address"))
        ship_to.email = email
        return StorefrontOrder(
            external_id=str(o["order_no"]),
            order_number=str(o["order_no"]),
            channel_ref=channel,
            lines=lines,
            version=None,
            placed_at=_dt(o.get("creation_date")),
            currency=o.get("currency", "") or "",
            total_cents=_cents(o.get("order_total")),
            customer_email=email,
            shipping_address=ship_to,
            billing_address=_address(o.get("billing_address")),
            shipping_method=((shipment.get("shipping_method") or {}).get("id", "") or ""),
            gift_message=shipment.get("gift_message", "") or "",
            delivery_notes=o.get(self.notes_attr, "") or "",
            custom_fields=custom,
            promotion_codes=[c["code"] for c in o.get("coupon_items") or [] if c.get("code")],
            status=o.get("status", "") or "",
            shipment_state=o.get("shipping_status", "") or "",
            raw=o,
            capturable=capturable(o),
            awaiting_export=_status(o.get("export_status")) == "ready",
        )

    def orders_since(self, cursor: str, limit: int = 100) -> Page:
        since, _, after_no = (cursor or self.orders_start).partition("|")
        count = max(1, min(200, limit))
        start, out = 0, []
        query: dict = {"match_all_query": {}}
        if since:
            query = {
                "filtered_query": {
                    "query": {"match_all_query": {}},
                    "filter": {"range_filter": {"field": "last_modified", "from": since, "from_inclusive": True}},
                }
            }
        while True:
            body = self.client.post(
                self._shop("/order_search"),
                json={
                    "query": query,
                    "select": "(**)",
                    "start": start,
                    "count": count,
                    "sorts": [
                        {"field": "last_modified", "sort_order": "asc"},
                        {"field": "order_no", "sort_order": "asc"},
                    ],
                },
            ).json()
            hits = [h.get("data") or {} for h in body.get("hits") or []]
            total = int(body.get("total", 0))
            fresh = (
                [o for o in hits if (o.get("last_modified", ""), str(o.get("order_no"))) > (since, after_no)]
                if since
                else hits
            )
            out = self.read_orders(fresh)
            start += len(hits)
            has_more = start < total
            if fresh or not has_more or not hits:  # a full page of already-seen orders: read on
                break
        if fresh:
            last = fresh[-1]
            cursor = f"{last.get('last_modified', '')}|{last.get('order_no')}"
        return Page(out, cursor or "", has_more)

    def read_orders(self, docs: list) -> ParsedBatch:
        """OCAPI order documents → StorefrontOrders; a document that cannot be read is a ``rejected`` row naming
        the order and what is wrong (the hub records it as a ``bad_payload``; the orders behind it still count)."""
        out = ParsedBatch()
        for i, doc in enumerate(docs):
            try:
                out.append(self._to_order(doc))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                no = str(doc.get("order_no") or "") if isinstance(doc, dict) else ""
                out.reject(
                    no or f"row-{i}",
                    "order",
                    f"sfcc order {no or f'row-{i}'} is malformed: {type(exc).__name__}: {exc}",
                    raw=doc,
                    name=no,
                )
        return out

    def get_order(self, external_id: str) -> StorefrontOrder:
        return self._to_order(self.client.get(self._shop(f"/orders/{external_id}")).json())

    def parse_order_webhook(self, payload: dict) -> list[str]:
        """The site's order hook (a custom cartridge job / hook script) posts ``{"order_no": ...}`` or
        ``{"orders": [{"order_no": ...}]}``; those are hints only: the hub fetches each order by number
        (:mod:`integration_hub.orders.notifications`), whatever else the body carries."""
        if not isinstance(payload, dict):
            raise errors.BadDataError("sfcc order webhook is not a JSON object", body=payload, system="sfcc")
        if payload.get("order_no"):
            nos = [payload["order_no"]]
        else:
            orders = payload.get("orders")
            nos = (
                [o.get("order_no") for o in orders if isinstance(o, dict) and o.get("order_no")]
                if isinstance(orders, list)
                else []
            )
        if not nos:
            raise errors.BadDataError("sfcc order webhook without order_no", body=payload, system="sfcc")
        out = []
        for no in nos:
            no = str(no) if isinstance(no, (str, int)) and not isinstance(no, bool) else ""
            if not _ORDER_NO_RX.fullmatch(no):
                raise errors.BadDataError(
                    f"sfcc order webhook with a malformed order_no {no[:60]!r}", body=payload, system="sfcc"
                )
            out.append(no)
        return out

    def mark_shipped(
        self, external_id: str, parcels: list[Parcel], known_version: int | None = None, known_order: dict | None = None
    ) -> int | None:
        """Tracking, carrier and the hub's marker into the order's custom attributes (Shop API PATCH — it
        considers only ``status`` and custom attributes), then ``shipping_status`` = shipped through the Data
        API status resource. The attributes go first, so the order never reads shipped without the marker
        (which would make it look store-shipped). Both calls are idempotent; a retry repeats both."""
        tracking = ",".join(p.tracking_number for p in parcels if p.tracking_number)
        carriers = ",".join(dict.fromkeys(p.carrier for p in parcels if p.carrier))
        body = {self.tracking_attr: tracking, self.carrier_attr: carriers, self.marker_attr: hub_marker(tracking)}
        urls = ",".join(p.tracking_url for p in parcels if p.tracking_url)
        if urls:
            body["c_trackingUrls"] = urls
        self.client.request("PATCH", self._shop(f"/orders/{external_id}"), json=body, retry_conflicts=True)
        self.set_order_status(external_id, "shipping_status", "shipped")
        return None

    def mark_exported(self, external_id: str, ok: bool) -> None:
        """The export handshake: ``export_status`` = exported once the warehouse acknowledged the order (SFCC
        then finalises its inventory transactions and other export jobs skip it), failed where the hub gave up."""
        self.set_order_status(external_id, "export_status", "exported" if ok else "failed")

    def set_order_status(self, order_no: str, field: str, value: str) -> None:
        """OCAPI Data API ``PUT /sites/{site}/orders/{order_no}/<field>`` with ``{"status": value}`` for
        ``status`` / ``shipping_status`` / ``export_status`` / ``payment_status`` / ``confirmation_status``."""
        self.client.request(
            "PUT",
            f"/s/-/dw/data/{self.version}/sites/{self.site_id}/orders/{order_no}/{field}",
            json={"status": value},
            retry_conflicts=True,
        )

    # --- storefront-side fulfilments ------------------------------------------------------------------
    def storefront_fulfilments(self, order: StorefrontOrder | dict) -> ParsedBatch:
        """Shipments someone other than the hub shipped (ship-from-store, store staff / OMS) as
        :class:`Fulfilment` rows to report to the master — see the module docstring for the rules. The
        hub's own shipped update (its marker on the order) is never one. A shipment that cannot be read
        (no product items, an item without product id or with a quantity that is not a positive whole
        number, an unknown shipping status, ``part_shipped`` with no shipment saying which lines left) is
        a ``rejected`` row naming the field, never a partial report; the order's other shipments still count."""
        raw = order.raw if isinstance(order, StorefrontOrder) else order
        if not isinstance(raw, dict) or not raw.get("order_no"):
            raise errors.BadDataError("storefront_fulfilments needs an SFCC order document", system=self.system_type)
        out = ParsedBatch()  # the good rows, and .rejected
        if not self.reads_fulfilments:
            return out
        no = str(raw["order_no"])
        if self.fulfilments_from:
            try:
                created = parse_iso(raw.get("creation_date"))
            except ValueError:
                created = None
            if created is not None and created < self.fulfilments_from:
                return out

        reject = out.reject

        status = _status(raw.get("shipping_status"))
        if status not in SHIPPING_STATUSES:
            reject(
                no,
                "shipping_status",
                f"shipping_status {raw.get('shipping_status')!r} is not one of {', '.join(SHIPPING_STATUSES)}",
                raw.get("shipping_status"),
            )
            return out
        shipments, items = raw.get("shipments"), raw.get("product_items")
        if status == "not_shipped" and not any(
            isinstance(s, dict) and _status(s.get("shipping_status")) == "shipped"
            for s in shipments or []
            if isinstance(shipments, list)
        ):
            return out  # the common case: nothing has left yet
        if not isinstance(shipments, list) or not shipments:
            reject(no, "shipments", "a shipped order without a shipments list", shipments)
            return out
        if not isinstance(items, list):
            reject(no, "product_items", "a shipped order without a product_items list", items)
            return out
        order_shipped_by_store = status == "shipped" and not raw.get(self.marker_attr)
        any_own = False
        for n, s in enumerate(shipments):
            where = f"shipments[{n}]"
            if not isinstance(s, dict) or not s.get("shipment_id"):
                reject(f"{no}/{where}", where, "a shipment that is not an object with a shipment_id", s)
                continue
            sid = str(s["shipment_id"])
            ref = f"{no}/{sid}"
            own = _status(s.get("shipping_status")) if s.get("shipping_status") is not None else ""
            if own and own not in SHIPPING_STATUSES:
                reject(
                    ref,
                    f"{where}.shipping_status",
                    f"shipping_status {s.get('shipping_status')!r} is not one of {', '.join(SHIPPING_STATUSES)}",
                    s,
                )
                continue
            any_own = any_own or own == "shipped"
            if own != "shipped" and not order_shipped_by_store:
                continue
            lines, problem = [], None
            mine = [
                i
                for i in items
                if not isinstance(i, dict)
                or str(i.get("shipment_id") or "") == sid
                or (not i.get("shipment_id") and len(shipments) == 1)
            ]
            for i, item in enumerate(mine):
                qty = item.get("quantity") if isinstance(item, dict) else None
                if not isinstance(item, dict) or not item.get("product_id"):
                    problem = (
                        "product_items",
                        f"product item {item.get('item_id') if isinstance(item, dict) else i!r} has no product_id",
                    )
                elif isinstance(qty, bool) or not isinstance(qty, (int, float)) or qty <= 0 or int(qty) != qty:
                    problem = (
                        "product_items.quantity",
                        f"product item {item.get('item_id') or item['product_id']!r} quantity "
                        f"{qty!r} is not a positive whole number",
                    )
                else:
                    lines.append((str(item["product_id"]), int(qty)))
                if problem:
                    break
            if problem is None and not lines:
                problem = ("product_items", f"shipment {sid!r} is shipped but holds no product items")
            if problem:
                reject(ref, f"{where}.{problem[0]}", problem[1], s)
                continue
            merged: dict[str, int] = {}
            for sku, q in lines:
                merged[sku] = merged.get(sku, 0) + q
            out.append(
                Fulfilment(
                    order_ref=no,
                    fulfilment_ref=ref,
                    lines=list(merged.items()),
                    location=str(s.get("c_fromStoreId") or ""),
                    fulfilled_at=_dt(raw.get("last_modified")),
                )
            )
        if status == "part_shipped" and not any_own:
            reject(
                no,
                "shipping_status",
                "shipping_status is part_shipped but no shipment is marked shipped: which lines "
                "left the store is unknown (set the shipped shipment's shipping_status)",
                status,
            )
        return out


def capturable(o: dict) -> bool:
    """An order the hub may send to the warehouse: placed (``status`` new / open / completed — ``created`` is
    not placed yet, ``failed`` released its inventory, ``cancelled`` follows the cancel path) and released for
    export (``export_status`` = ready)."""
    return _status(o.get("status")) in PLACED_STATUSES and _status(o.get("export_status")) == "ready"


def _status(value) -> str:
    return str(value or "").strip().lower()


def hub_marker(tracking: str) -> str:
    """What the hub writes to the marker attribute with its own shipped update."""
    return HUB_MARKER_PREFIX + hashlib.sha1(tracking.encode()).hexdigest()[:16]
