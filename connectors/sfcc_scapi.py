"""Salesforce B2C Commerce on the B2C Commerce API (SCAPI) + Omnichannel Inventory (OCI): ``api_family`` = ``scapi_oci``.

Chosen per connection (``Connection.options["api_family"]``; :func:`connectors.registry.get_connector` builds this
class when it says ``scapi_oci``). Everything the hub does with an order after reading it (channel, lines,
store-shipped fulfilments, the hub's marker) is the OCAPI connector's: SCAPI's camelCase order document is
turned into the OCAPI shape (:func:`to_ocapi`) first.

- auth: Account Manager client-credentials grant as for OCAPI, with the Admin API scopes: the tenant scope
  ``SALESFORCE_COMMERCE_API:<tenant>`` (``<tenant>`` = ``organization_id`` without ``f_ecom_``) plus ``sfcc.orders.rw``
  and the OCI scope (``sfcc.inventory.availability.rw``) — "Authorization for Admin APIs" guide; option ``scope``
  overrides. ``Connection.base_url`` = ``https://<shortCode>.api.commercecloud.salesforce.com``.
- orders: Admin Orders API 1.5 (commerce-sdk ``apis/orders-oas-1.5.2``). ``getOrders``
  ``GET /checkout/orders/v1/organizations/{org}/orders?siteId=…&lastModifiedDateFrom=…&sortBy=last_modified_date
  &sortOrder=asc&exportStatus=ready,exported,failed&limit=…&offset=…``: limit ≤ 200, offset + limit ≤ 10,000, the
  answer is ``{"data": [...]}`` without a total. The window moves instead of the offset: the cursor is
  ``<lastModified>|<orderNo>,<orderNo>…`` (the orders already seen at that instant), the next call starts at that
  instant, so neither offsets past 10,000 nor ties at the boundary lose or repeat an order. ``not_exported`` orders
  are not read (never capturable); ``exported`` / ``failed`` are, so cancellations and store shipments of orders the
  hub already has still arrive. Capture gating as OCAPI: status new / completed and exportStatus ready.
- export handshake: ``PUT …/orders/{orderNo}/export-status`` ``{"status": "exported" | "failed"}`` (204).
- shipped: ``PATCH …/orders/{orderNo}`` with the ``c_`` tracking / carrier / marker attributes (OrderUpdateRequest
  takes only ``c_`` properties; 204), then ``PUT …/orders/{orderNo}/shipping-status`` ``{"status": "shipped"}``.
- stock: OCI availability batch update (Salesforce's Inventory Availability RAML, ``inventory/availability`` v1 —
  commerce-sdk ``testIntegration/stagingApis/inventory/inventory-availability``, ``batchInventoryUpdate``):
  ``POST /inventory/availability/v1/organizations/{org}/availability-records/actions/batch-update`` with ≤ 100
  ``BatchInventoryUpdateRequestRecord`` ``{"id", "location", "sku", "onHand", "effectiveDate"}``; 204 when every
  record landed, 200 ``{"errors": [{"details": {"id", "sku", "locationId"}, "errorCode", "message"}]}`` for the ones
  that did not (partial success), 400 problem ``{"type", "errorCode", "message"}`` for a request it refuses whole.
  (The Salesforce-org Connect API resource ``/commerce/oci/availability-records/actions/batch-update`` names the same
  fields ``actionRequestId`` / ``locationIdentifier`` / ``stockKeepingUnit``; that is not this API.) Salesforce
  recommends batchInventoryUpdate for deltas of ≤ 100 SKUs and the Impex file import for full loads ("Inventory
  IMPEX Best Practices"). ``Channel.external_id`` is the OCI location id. ``id`` is the idempotency key ("used in
  combination with the SKU, so that future requests with the same combination have the same result"): a record
  re-sent after a lost answer carries the same id and is not applied twice. ``effectiveDate`` is the hub's snapshot
  instant (``InventoryTarget.as_of``): OCI keeps the newest, so a late, older figure never overwrites a newer one.
  ``{org}`` on the OCI routes is the OCI tenant group id (the RAML: "Omnichannel Inventory uses the Tenant Group ID
  in place of the Organization ID"): option ``oci_tenant_group_id``, default ``organization_id``.

  Which figure OCI gets: OCI computes available-to-fulfil itself — ATF = on hand − its own reservations (made when
  the site places an order, held until the order is fulfilled or the reservation released) − safety stock. The hub
  therefore sends **on hand**: the master's sellable quantity at the channel's locations, *not* net of the hub's
  reservations for orders OCI already holds — the same order subtracted by both would be oversold the other way
  (undersold twice). The hub's reservations on an OCI channel's own orders thus mean nothing to OCI; they keep their
  meaning for the *other* channels selling from the same shelves (a commercetools channel sharing the DC still must
  not sell units an OCI order took). The push engine's figure includes every hub reservation, so the connector adds
  back the units the hub holds for this storefront's own orders (``InventoryTarget.held``, filled by the push engine;
  0 when unknown). Drift reads OCI's ATF back through ``availability-records/actions/get-availability``
  (``skuAvailabilityByLocationAndOrGroup``: ``{"skus", "locations"}``, SKUs × locations ≤ 100 →
  ``{"locations": [{"id", "records": [{"sku", "atf", "ato", "onHand", "reserved", "safetyStockCount", …}]}]}``).

- full loads (:meth:`SFCCScapiConnector.push_full`: a channel's first sync / full resync,
  :mod:`integration_hub.inventory.full_load`): the OCI Inventory Impex availability import, as Salesforce's Inventory
  Impex RAML (``inventory/impex`` 1.1.15, commerce-sdk ``testIntegration/stagingApis/inventory/impex``) and its
  description lay it out — ``POST /inventory/impex/v1/organizations/{org}/availability-records/imports``
  (submitInventoryImport ``{"fileName", "fileFormat": "JSON", "fileHash", "fileHashType": "SHA-256", "linkDuration"}``
  → ``importId``, ``uploadLink``), the NDJSON file ``POST``ed as ``multipart/form-data`` to the ``uploadLink``
  (postUploadImportFile; a 409 "already received" after a lost answer counts as received), then
  ``GET …/imports/{importId}/status`` every ``oci_import_poll_seconds`` (default 2) until COMPLETED / FAILED / STOPPED /
  EXPIRED (at most ``oci_import_timeout_seconds``, default 240 — under the push lease; past it a RetryableError and
  the rows are retried), then the result file ``GET …/imports/{importId}/file-content`` (a status line, then one
  ``{"recordId", "locationId", "sku", "message"}`` line per refused record → that target's BadDataError, an
  exception record through the push engine; the other records landed). The file uses the high-performance layout
  Salesforce asks for (every line ``{"recordId", "sku", "onHand", "effectiveDate", "locationId"}``, grouped by SKU;
  a fresh UUID ``recordId`` per record, ``onHand`` and ``effectiveDate`` as for batch updates). Loads smaller than
  ``oci_import_min_records`` (default 500) go through the batch updates: below that they take fewer requests.
  Scope ``sfcc.inventory.impex-inventory.rw``.

- catalogue audit (:meth:`SFCCScapiConnector.list_skus`): Admin Products API 1.2 ``searchProducts`` (commerce-sdk
  ``apis/products-oas-1.2.0``), ``POST /product/products/v1/organizations/{org}/product-search?siteId=…`` with
  ``{"query": {"termQuery": {"fields": ["type"], "operator": "one_of", "values": ["item", "variant"]}}, "sorts":
  [{"field": "id", "sortOrder": "asc"}], "limit": 200, "offset": …}`` (``type`` is a searchable "Special" attribute;
  limit ≤ 200), the hits' ``id`` until ``total``; scope ``sfcc.products``. Chosen over Shopper Search
  ``productSearch`` (a shopper token, only what is online and searchable; its hits are masters) and the OCI
  availability export (SKUs that have an availability record, i.e. what the hub itself wrote). Not confirmed: whether
  the search caps deep offsets for very large catalogues (the schema sets none).

- OMS status events (option ``oms_status_events``, default off): after the shipped update, one
  ``createOmsStatusEvent`` ``POST …/orders/{orderNo}/oms-status-events`` per parcel, ``{"fulfillmentEvent": {"id",
  "occurredAt", "type": "shipped", "lineItems": [{"id": <productItem itemId>, "quantity"}], "trackingNumber",
  "trackingUrl", "carrier"}}`` (Orders 1.5.2 ``OmsStatusEventRequest``; 202), for sites whose order event subscribers
  (notifications, service agents) want the carrier tracking; tracking stays in the ``c_`` attributes either way.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import datetime

from . import errors
from .base import (
    InventoryResult,
    InventoryTarget,
    Page,
    Parcel,
    StorefrontOrder,
    StorefrontStock,
)
from .http import HttpClient, OAuthClientCredentials
from .parsing import ParsedBatch
from .sfcc import SFCCConnector, hub_marker, token_url, utc_iso

ORDERS = "/checkout/orders/v1/organizations/{org}/orders"
OCI = "/inventory/availability/v1/organizations/{org}/availability-records/actions"
IMPEX = "/inventory/impex/v1/organizations/{org}/availability-records/imports"
PRODUCT_SEARCH = "/product/products/v1/organizations/{org}/product-search"
SELLABLE_TYPES = ("item", "variant")
IMPORT_MIN_RECORDS = 500  # below it the batch updates (≤ 100 records each) take fewer requests than an import
IMPORT_DONE = ("COMPLETED", "FAILED", "STOPPED", "EXPIRED")
MAX_LIMIT = 200
MAX_WINDOW = 10_000  # offset + limit
MAX_OCI_RECORDS = 100
READ_EXPORT_STATUSES = "ready,exported,failed"  # at most three values (getOrders exportStatus)
STATUS_ROUTES = {
    "status": "status",
    "shipping_status": "shipping-status",
    "export_status": "export-status",
    "payment_status": "payment-status",
    "confirmation_status": "confirmation-status",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    return key if key.startswith(("c_", "_")) else _CAMEL.sub(r"_\1", key).lower()


def to_ocapi(value):
    """A SCAPI (camelCase) document in the OCAPI (snake_case) shape; custom ``c_`` attributes are kept as they are."""
    if isinstance(value, dict):
        return {snake(k): to_ocapi(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_ocapi(v) for v in value]
    return value


def _instant(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def parse_cursor(cursor: str) -> tuple[datetime | None, set[str]]:
    ts, _, nos = (cursor or "").partition("|")
    return _instant(ts), {n for n in nos.split(",") if n}


class SFCCScapiConnector(SFCCConnector):
    system_type = "sfcc"
    api_family = "scapi_oci"
    reserves_own_orders = True  # OCI reserves every order placed on the site until it ships

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.org = str(opts.get("organization_id") or "")
        self.oci_tenant = str(opts.get("oci_tenant_group_id") or self.org)  # OCI's {organizationId}: the tenant group
        self.oci_batch = max(1, min(MAX_OCI_RECORDS, int(opts.get("oci_batch_size", MAX_OCI_RECORDS))))
        self.import_min = max(1, int(opts.get("oci_import_min_records", IMPORT_MIN_RECORDS)))
        self.oms_events = str(opts.get("oms_status_events", False)).lower() in ("true", "1", "yes")
        self.import_poll = max(0.0, float(opts.get("oci_import_poll_seconds", 2.0)))
        self.import_timeout = max(1.0, float(opts.get("oci_import_timeout_seconds", 240.0)))  # < the push lease
        super().__init__(connection, client)

    @property
    def tenant(self) -> str:
        return self.org.removeprefix("f_ecom_")

    def build_client(self):
        c = self.connection
        scope = (c.options or {}).get("scope") or (
            f"SALESFORCE_COMMERCE_API:{self.tenant} sfcc.orders.rw "
            "sfcc.inventory.availability.rw sfcc.inventory.impex-inventory.rw sfcc.products"
        )
        auth = OAuthClientCredentials(
            token_url=token_url(c.auth_url),
            client_id=c.client_id,
            client_secret=c.get_secret(),
            scope=scope,
            timeout=c.timeout_seconds,
        )
        return HttpClient.for_connection(c, auth=auth)

    def _orders(self, suffix: str = "") -> str:
        return ORDERS.format(org=self.org) + suffix

    # --- orders -----------------------------------------------------------------------------------------
    def orders_since(self, cursor: str, limit: int = 100) -> Page:
        since, seen = parse_cursor(cursor or self.orders_start)
        lim = max(1, min(MAX_LIMIT, limit))
        params = {
            "siteId": self.site_id,
            "sortBy": "last_modified_date",
            "sortOrder": "asc",
            "exportStatus": READ_EXPORT_STATUSES,
            "limit": lim,
        }
        if since:
            params["lastModifiedDateFrom"] = utc_iso(since)
        offset, out, has_more = 0, [], False
        while True:
            if offset + lim > MAX_WINDOW:  # the window is full: the next call starts from the last order read
                has_more = True
                break
            data = self.client.get(self._orders(), params={**params, "offset": offset}).json().get("data") or []
            offset += len(data)
            has_more = len(data) == lim
            for doc in data:
                at = _instant(doc.get("lastModified"))
                if since and at is not None and (at < since or (at == since and str(doc.get("orderNo")) in seen)):
                    continue
                out.append(doc)
            if out or not has_more:
                break
        if not out:
            return Page(ParsedBatch(), cursor or "", has_more)
        last_at = out[-1].get("lastModified", "")
        same = {str(d.get("orderNo")) for d in out if d.get("lastModified") == last_at}
        if since and _instant(last_at) == since:
            same |= seen
        return Page(self.read_orders([to_ocapi(d) for d in out]), f"{last_at}|{','.join(sorted(same))}", has_more)

    def get_order(self, external_id: str) -> StorefrontOrder:
        return self._to_order(
            to_ocapi(self.client.get(self._orders(f"/{external_id}"), params={"siteId": self.site_id}).json())
        )

    def mark_shipped(
        self, external_id: str, parcels: list[Parcel], known_version: int | None = None, known_order: dict | None = None
    ) -> int | None:
        tracking = ",".join(p.tracking_number for p in parcels if p.tracking_number)
        body = {
            self.tracking_attr: tracking,
            self.carrier_attr: ",".join(dict.fromkeys(p.carrier for p in parcels if p.carrier)),
            self.marker_attr: hub_marker(tracking),
        }
        urls = ",".join(p.tracking_url for p in parcels if p.tracking_url)
        if urls:
            body["c_trackingUrls"] = urls
        self.client.request("PATCH", self._orders(f"/{external_id}"), params={"siteId": self.site_id}, json=body)
        self.set_order_status(external_id, "shipping_status", "shipped")
        if self.oms_events:
            self._post_oms_events(external_id, parcels)
        return None

    def _post_oms_events(self, order_no: str, parcels: list[Parcel]) -> None:
        """One ``shipped`` fulfillment event per parcel (``createOmsStatusEvent``, 202), forwarded by SFCC to the
        site's order event subscribers. Its ``id`` is stable per (order, tracking number), so a retried shipped update
        repeats the same event. A parcel without tracking number and URL (both required for type ``shipped``) sends
        none: its tracking is still in the order's custom attributes."""
        order = None
        for p in parcels:
            if not (p.tracking_number and p.tracking_url):
                continue
            if order is None:
                order = self.client.get(self._orders(f"/{order_no}"), params={"siteId": self.site_id}).json()
            items = [i for i in order.get("productItems") or [] if isinstance(i, dict) and i.get("itemId")]
            wanted: dict[str, int] = {}
            for sku, qty in p.lines:  # the parcel's lines in storefront SKUs; none: the whole order
                wanted[sku] = wanted.get(sku, 0) + int(qty)
            lines = []
            for i in items:
                take = (
                    int(i.get("quantity") or 0)
                    if not p.lines
                    else min(int(i.get("quantity") or 0), wanted.get(i.get("productId"), 0))
                )
                if take > 0:
                    lines.append({"id": i["itemId"], "quantity": take})
                    if p.lines:
                        wanted[i["productId"]] -= take
            if not lines:
                continue
            event = {
                "id": hub_marker(f"{order_no}|{p.tracking_number}"),
                "occurredAt": utc_iso(),
                "type": "shipped",
                "lineItems": lines[:200],
                "trackingNumber": p.tracking_number[:256],
                "trackingUrl": p.tracking_url[:2048],
            }
            if p.carrier:
                event["carrier"] = p.carrier[:256]
            self.client.request(
                "POST",
                self._orders(f"/{order_no}/oms-status-events"),
                params={"siteId": self.site_id},
                json={"fulfillmentEvent": event},
                ok=(202,),
            )

    def set_order_status(self, order_no: str, field: str, value: str) -> None:
        self.client.request(
            "PUT",
            self._orders(f"/{order_no}/{STATUS_ROUTES[field]}"),
            params={"siteId": self.site_id},
            json={"status": value},
        )

    def list_skus(self):
        """Every sellable SKU of the site's catalogue (standard items and variants — masters, sets and bundles hold no
        inventory of their own) for the catalogue audit: Admin Products API ``searchProducts`` (see the module
        docstring), sorted by id, paged with offset / limit ≤ 200 until ``total``."""
        offset = 0
        while True:
            body = self.client.post(
                PRODUCT_SEARCH.format(org=self.org),
                params={"siteId": self.site_id},
                json={
                    "query": {"termQuery": {"fields": ["type"], "operator": "one_of", "values": list(SELLABLE_TYPES)}},
                    "sorts": [{"field": "id", "sortOrder": "asc"}],
                    "limit": MAX_LIMIT,
                    "offset": offset,
                },
            ).json()
            hits = body.get("hits") or []
            for hit in hits:
                if isinstance(hit, dict) and hit.get("id"):
                    yield str(hit["id"])
            offset += len(hits)
            if not hits or offset >= int(body.get("total") or 0):
                return

    # --- stock (OCI) ------------------------------------------------------------------------------------
    def set_stock(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        latest = {(t.channel_ref, t.sku): t for t in targets}  # a repeated pair: the last target wins
        items = list(latest.values())
        ids = {id(t): str(uuid.uuid4()) for t in items}  # one idempotency id per record, kept across retries
        results: list[InventoryResult] = []
        for start in range(0, len(items), self.oci_batch):
            chunk = items[start : start + self.oci_batch]
            records = [
                {
                    "id": ids[id(t)],
                    "location": t.channel_ref,
                    "sku": t.sku,
                    "onHand": int(t.quantity) + int(t.held or 0),
                    "effectiveDate": utc_iso(t.as_of),
                }
                for t in chunk
            ]
            resp = self.client.post(
                OCI.format(org=self.oci_tenant) + "/batch-update",
                json={"records": records},
                retry_conflicts=True,
                ok=(200, 204),
            )
            failed = {}
            if resp.status_code == 200:  # partial success: the records that did not land
                answer = resp.json()
                for e in (answer.get("errors") if isinstance(answer, dict) else None) or []:
                    d = e.get("details") if isinstance(e, dict) and isinstance(e.get("details"), dict) else {}
                    failed[(str(d.get("id") or ""), str(d.get("sku") or ""))] = e
            for t, rec in zip(chunk, records):
                err = failed.get((rec["id"], rec["sku"]))
                if err is None:
                    results.append(InventoryResult(t.sku, t.channel_ref, t.quantity, None, f"{t.channel_ref}/{t.sku}"))
                else:
                    results.append(
                        InventoryResult(t.sku, t.channel_ref, t.quantity, None, "", ok=False, error=_oci_error(err, t))
                    )
        return results

    def push_full(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """A full load through the OCI Impex availability import (see the module docstring); fewer than
        ``oci_import_min_records`` records go through the batch updates instead."""
        latest = {(t.channel_ref, t.sku): t for t in targets}
        if len(latest) < self.import_min:
            return self.set_stock(list(latest.values()))
        items = sorted(latest.values(), key=lambda t: (t.sku, t.channel_ref))  # SKUs grouped: the fast layout
        ids = [str(uuid.uuid4()) for _ in items]
        content = "".join(
            json.dumps(
                {
                    "recordId": rid,
                    "sku": t.sku,
                    "onHand": int(t.quantity) + int(t.held or 0),
                    "effectiveDate": utc_iso(t.as_of),
                    "locationId": t.channel_ref,
                },
                separators=(",", ":"),
            )
            + "\n"
            for rid, t in zip(ids, items)
        ).encode()
        base = IMPEX.format(org=self.oci_tenant)
        started = self.client.post(
            base,
            json={
                "fileName": f"hub-full-load-{ids[0]}.ndjson",
                "fileFormat": "JSON",
                "fileHash": hashlib.sha256(content).hexdigest(),
                "fileHashType": "SHA-256",
                "linkDuration": 60,
            },
        ).json()
        import_id, link = str(started.get("importId") or ""), str(started.get("uploadLink") or "")
        if not import_id or not link.startswith(("/", self.client.base_url + "/")):
            # the token goes with the upload: only to this connection's own host
            raise errors.BadDataError(
                f"OCI import answered without importId / an uploadLink on this host: {started!r}"[:500], system="sfcc"
            )
        boundary = f"hub-{uuid.uuid4().hex}"
        form = (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"full-load.ndjson\"\r\n"
                f"Content-Type: application/x-ndjson\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        # a lost answer to the upload is not re-sent blindly: 409 (already received) means OCI has the file
        self.client.request(
            "POST",
            link,
            data=form,
            ok=(200, 409),
            retries=0,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        # status and results through the documented routes (the RAML's example fullResults.href is an internal path)
        status = self._await_import(f"{base}/{import_id}/status", import_id)
        if status.get("status") != "COMPLETED":
            problems = (
                "; ".join(str(e) for e in (status.get("validation") or {}).get("errors") or []) or "no reason given"
            )
            raise errors.BadDataError(
                f"OCI import {import_id} {status.get('status')}: {problems}"[:2000], body=status, system="sfcc"
            )
        refused, failed_all = self._import_errors(self.client.get(f"{base}/{import_id}/file-content").text)
        results = []
        for rid, t in zip(ids, items):
            err = refused.get(rid)
            if err is None and not failed_all:
                results.append(InventoryResult(t.sku, t.channel_ref, t.quantity, None, f"{t.channel_ref}/{t.sku}"))
            else:
                msg = (err or {}).get("message") or "the import loaded no record"
                results.append(
                    InventoryResult(
                        t.sku,
                        t.channel_ref,
                        t.quantity,
                        None,
                        "",
                        ok=False,
                        error=errors.BadDataError(
                            f"OCI import {import_id}, record {t.channel_ref}/{t.sku}: {msg}", body=err, system="sfcc"
                        ),
                    )
                )
        return results

    def _await_import(self, status_link: str, import_id: str) -> dict:
        deadline = time.monotonic() + self.import_timeout
        while True:
            time.sleep(self.import_poll)
            status = self.client.get(status_link).json()
            if str(status.get("status") or "").upper() in IMPORT_DONE:
                return status
            if time.monotonic() >= deadline:  # still running: the rows are retried (absolute figures, newer as_of)
                raise errors.RetryableError(
                    f"OCI import {import_id} still {status.get('status')} after {self.import_timeout:.0f}s",
                    system="sfcc",
                )

    @staticmethod
    def _import_errors(text: str) -> tuple[dict[str, dict], bool]:
        """The result file: a status line (``FAILED``: no record loaded), then one line per refused record →
        ({recordId: line}, loaded nothing)."""
        refused, failed_all = {}, False
        for raw in text.splitlines():
            try:
                doc = json.loads(raw) if raw.strip() else None
            except ValueError:
                raise errors.BadDataError(f"OCI import result line is not JSON: {raw[:200]!r}", system="sfcc") from None
            if not isinstance(doc, dict):
                continue
            if "status" in doc and "recordId" not in doc:
                failed_all = doc["status"] == "FAILED"
            elif doc.get("recordId"):
                refused[str(doc["recordId"])] = doc
        return refused, failed_all

    def get_stock(self, skus: list[str], channel_ref: str) -> list[StorefrontStock]:
        """OCI's own available-to-fulfil for the location (what the site sells), for the drift check."""
        out = []
        skus = list(dict.fromkeys(skus))
        for start in range(0, len(skus), self.oci_batch):
            body = self.client.post(
                OCI.format(org=self.oci_tenant) + "/get-availability",
                json={"skus": skus[start : start + self.oci_batch], "locations": [channel_ref]},
            ).json()
            for loc in (body.get("locations") if isinstance(body, dict) else None) or []:
                if not isinstance(loc, dict) or loc.get("id") != channel_ref:
                    continue
                for rec in loc.get("records") or []:
                    if isinstance(rec, dict) and rec.get("sku"):
                        out.append(
                            StorefrontStock(
                                str(rec["sku"]),
                                channel_ref,
                                int(rec.get("atf") or 0),
                                None,
                                f"{channel_ref}/{rec['sku']}",
                            )
                        )
        return out


def _oci_error(err: dict, t: InventoryTarget) -> errors.ConnectorError:
    code = str(err.get("errorCode") or err.get("code") or "")
    msg = f"OCI record {t.channel_ref}/{t.sku}: {code}: {err.get('message', '')}"
    if code in ("LocationDoesNotExist", "EntityNotFound"):
        return errors.NotFoundError(msg, body=err, system="sfcc")
    return errors.BadDataError(msg, body=err, system="sfcc")
