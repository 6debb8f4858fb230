"""WAIR in its published role — a replenishment engine (docs.wair.ai) — as a Planner.

Published (docs.wair.ai, "Integration core principles", "Highlevel interface architecture" and the endpoint
pages): the retailer's systems **push data in** and **pull recommendations out**. Every data endpoint is a
``POST`` that upserts by id (send the complete object); every upload cycle is wrapped in ``POST /Batch/start``
… ``POST /Batch/stop``; recommended maximum records per call: sales 10 000, stock / stock mutations 50 000,
items 25 000, transfers 10 000, purchase orders 25 000. Authentication: ``POST /Token`` (username / password,
``X-Tenant``) → bearer token, and ``X-Tenant`` on every call (:class:`connectors.wair.WairTokenAuth`).

- ``POST /Stock``: the **stock on hand** per location / SKU — not the available stock (allocations are sent
  separately). The hub sends the master's units in every state except in transit.
- ``POST /Sales``: sales and returns to end consumers; a return is a new sale id with negative quantities;
  e-commerce sales carry the location created for their online channel; prices in local currency.
- ``POST /StockNotForReplenishment?fullLoad=true``: stock held by orders of channels WAIR does not manage
  (open web orders), ``{id, locationId, skuId, startDateTime, endDateTime, quantity}``; sent complete each cycle.
- ``GET /Recommendations/stockTargets?offset=&limit=`` → ``{stockTargets: [{locationId, skuId, targetQuantity,
  forecastDate}], offset, limit, moreRecordsAvailable}`` (the stock to hold for the coming 7 days).
- ``GET /Recommendations/transfers?offset=&limit=`` → ``{transfers: [{fromLocationId, toLocationId, skuId,
  quantity, referenceId, transferType, plannedDispatchDate, …}], …}``; all open transfers every time.

One upload cycle of :meth:`push_demand` (one batch) on every feed run, new lines or not: Items (every
item), Locations (the hub's warehouses and one location per sales channel), Stock (on hand of every item
in every warehouse), Sales (the new / changed demand lines), StockNotForReplenishment (every open web-order
allocation, full load), each split to the documented sizes (``options["max_per_call"]`` may lower them). If
any call fails the batch is still stopped (WAIR then knows the cycle ended) and the error is raised; the
feed resends, which is harmless (upsert by id).

Not confirmed from the documents (assumptions, all in :data:`SHAPE`): the request bodies of Items,
Locations, Stock and Sales (field names below follow the published ``skuId`` / ``locationId`` naming and the
``{"<endpoint>": [...]}`` envelope of the pages that show a body); the Batch calls' bodies (none sent) and
answers; the maximum for Locations and StockNotForReplenishment (the sales size is used).

Connection: ``base_url`` = API root (``…/api/v1`` is appended; sandbox
``http://127.0.0.1:8765/wair_replenishment``); ``client_id`` = WAIR user name, secret = password;
options: ``tenant`` (X-Tenant), ``channel_locations`` (hub channel key → WAIR location id; default the key),
``warehouses`` (hub warehouse → WAIR location id, used by the demand feed), ``max_per_call``
(``{"Sales": n, …}``), ``page_size`` (recommendation reads, default 500).
"""

from __future__ import annotations

from datetime import datetime, timezone

from . import errors
from .base import Connector, DemandLine, Planner, PlannerAllocation, PlannerVariant, PlannerWarehouse, Recommendation
from .http import HttpClient
from .parsing import to_iso
from .wair import WairTokenAuth

DOCUMENT = "https://docs.wair.ai/v1/docs/integration-core-principles"

SHAPE = {
    "api": "/api/v1",
    "batch_start": "Batch/start",
    "batch_stop": "Batch/stop",
    "targets": "Recommendations/stockTargets",
    "transfers": "Recommendations/transfers",
    # endpoint → (envelope key, recommended maximum per call)
    "Items": ("items", 25_000),
    "Locations": ("locations", 10_000),
    "Stock": ("stock", 50_000),
    "Sales": ("sales", 10_000),
    "StockNotForReplenishment": ("stockNotForReplenishment", 10_000),
}
UPLOAD_ORDER = ("Items", "Locations", "Stock", "Sales", "StockNotForReplenishment")
EPOCH = "1970-01-01T00:00:00Z"  # the documented stand-in start of an allocation with no date


def _now() -> datetime:
    return datetime.now(timezone.utc)


class WairReplenishmentConnector(Connector, Planner):
    system_type = "wair_replenishment"
    api_document = DOCUMENT
    modelled = False
    demand_delivery = "push"
    uses_allocations = True
    full_reference_data = True  # WAIR wants the stock on hand of every SKU, as soon as it changes

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.tenant = str(opts.get("tenant") or "")
        self.channel_locations = {str(k): str(v) for k, v in (opts.get("channel_locations") or {}).items()}
        limits = opts.get("max_per_call") or {}
        self.limits = {ep: max(1, min(SHAPE[ep][1], int(limits.get(ep) or SHAPE[ep][1]))) for ep in UPLOAD_ORDER}
        self.page_size = max(1, min(1000, int(opts.get("page_size") or 500)))
        super().__init__(connection, client)

    def build_client(self) -> HttpClient:
        c = self.connection
        if not c.client_id:
            raise errors.PermanentError(
                "WAIR replenishment needs client_id (user name) and the password as secret", system="wair"
            )
        auth = WairTokenAuth(
            f"{c.base_url.rstrip('/')}/Token", c.client_id, c.get_secret(), self.tenant, timeout=c.timeout_seconds
        )
        return HttpClient.for_connection(
            c, auth=auth, default_headers={"X-Tenant": self.tenant} if self.tenant else None
        )

    def _path(self, endpoint: str) -> str:
        return f"{SHAPE['api']}/{endpoint}"

    # --- bodies -----------------------------------------------------------------------------------------
    def sales_location(self, channel: str) -> str:
        return self.channel_locations.get(channel, channel)

    @staticmethod
    def item_record(v: PlannerVariant) -> dict:
        return {
            "itemId": v.product_id or v.sku,
            "code": v.product_id or v.sku,
            "description": v.title or v.sku,
            "skus": [
                {"skuId": v.sku, "code": v.sku, "styleId": v.product_id or v.sku, "description": v.title or v.sku}
            ],
        }

    @classmethod
    def item_records(cls, variants) -> list[dict]:
        """One Items record per style with every variant of it among ``variants`` as its ``skus`` (POST upserts by
        ``itemId`` with the complete object, so one record per variant would keep only the last variant)."""
        out: dict[str, dict] = {}
        for v in variants:
            if v.is_bundle:
                continue
            rec = cls.item_record(v)
            if rec["itemId"] in out:
                out[rec["itemId"]]["skus"] += rec["skus"]
            else:
                out[rec["itemId"]] = rec
        return list(out.values())

    @staticmethod
    def location_record(location_id: str, name: str, kind: str) -> dict:
        return {
            "locationId": location_id,
            "code": location_id,
            "description": name or location_id,
            "locationType": kind,
        }

    def sale_record(self, line: DemandLine) -> dict:
        qty = -abs(int(line.quantity)) if line.is_return else int(line.quantity)
        price = None if line.unit_price_cents is None else round(line.unit_price_cents / 100, 2)
        return {
            "salesId": line.key
            or f"{line.order_ref}|{line.sku}|{line.bundle_sku}|{'return' if line.is_return else 'sale'}",
            "receiptId": line.order_ref,
            "locationId": self.sales_location(line.channel),
            "skuId": line.sku,
            "quantity": qty,
            "salesDateTime": to_iso(line.ordered_at),
            "price": None if price is None else (-price if line.is_return else price),
            "currency": line.currency,
        }

    @staticmethod
    def allocation_record(a: PlannerAllocation) -> dict:
        return {
            "id": a.id,
            "locationId": a.location,
            "skuId": a.sku,
            "startDateTime": to_iso(a.since) or EPOCH,
            "endDateTime": None,
            "quantity": int(a.quantity),
        }

    def cycle(self, lines, variants, warehouses, allocations) -> dict[str, list[dict]]:
        """The records of one upload cycle, per endpoint."""
        channels = sorted({x.channel for x in lines if x.channel})
        locations = [self.location_record(w.id, w.name, "warehouse") for w in warehouses]
        locations += [self.location_record(self.sales_location(ch), ch, "webshop") for ch in channels]
        stock = [
            {"locationId": wid, "skuId": v.sku, "quantity": int(qty)}
            for v in variants
            for wid, qty in sorted(v.on_hand.items())
        ]
        return {
            "Items": self.item_records(variants),
            "Locations": locations,
            "Stock": stock,
            "Sales": [self.sale_record(x) for x in lines if x.quantity or x.is_return],
            "StockNotForReplenishment": [self.allocation_record(a) for a in allocations],
        }

    # --- the upload cycle -------------------------------------------------------------------------------------
    def push_demand(
        self,
        lines: list[DemandLine],
        variants: list[PlannerVariant] = (),
        warehouses: list[PlannerWarehouse] = (),
        allocations: list[PlannerAllocation] = (),
    ) -> int:
        bad = [x.key or x.order_ref for x in lines if not x.sku or not x.channel]
        if bad:
            raise errors.BadDataError(f"{len(bad)} demand line(s) lack a SKU or channel, e.g. {bad[:5]}", system="wair")
        records = self.cycle(lines, variants, warehouses, allocations)
        self.client.post(self._path(SHAPE["batch_start"]), json={}, ok=(200, 201, 204))
        try:
            for endpoint in UPLOAD_ORDER:
                key, _ = SHAPE[endpoint]
                rows, size = records[endpoint], self.limits[endpoint]
                if endpoint == "StockNotForReplenishment":  # full load: the complete current set, in one or more calls
                    chunks = [rows[i : i + size] for i in range(0, len(rows), size)] or [[]]
                    for n, chunk in enumerate(chunks):
                        self.client.post(
                            self._path(endpoint),
                            json={key: chunk},
                            ok=(200, 201, 204),
                            params={
                                "fullLoad": "true",
                                "moreRecordsAvailable": "true" if n < len(chunks) - 1 else "false",
                            },
                        )
                    continue
                for start in range(0, len(rows), size):
                    self.client.post(self._path(endpoint), json={key: rows[start : start + size]}, ok=(200, 201, 204))
        finally:
            try:
                self.client.post(self._path(SHAPE["batch_stop"]), json={}, ok=(200, 201, 204))
            except errors.ConnectorError:
                pass  # the upload's own error (if any) is the one to report; a lost stop is retried with the next cycle
        return len(lines)

    def push_items(self, variants: list[PlannerVariant]) -> int:
        """New / changed items (issue 17): one upload cycle of ``POST /Items`` only (``Batch/start`` … ``Batch/stop``,
        at most the documented 25,000 per call), so WAIR knows an item before stock or sales name it."""
        rows = self.item_records(variants)
        if not rows:
            return 0
        key, _ = SHAPE["Items"]
        size = self.limits["Items"]
        self.client.post(self._path(SHAPE["batch_start"]), json={}, ok=(200, 201, 204))
        try:
            for start in range(0, len(rows), size):
                self.client.post(self._path("Items"), json={key: rows[start : start + size]}, ok=(200, 201, 204))
        finally:
            try:
                self.client.post(self._path(SHAPE["batch_stop"]), json={}, ok=(200, 201, 204))
            except errors.ConnectorError:
                pass
        return sum(len(r["skus"]) for r in rows)

    # --- recommendations --------------------------------------------------------------------------------------
    def _read(self, endpoint: str, key: str):
        offset = 0
        while True:
            body = self.client.get(self._path(endpoint), params={"offset": offset, "limit": self.page_size}).json()
            rows = body.get(key) if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise errors.BadDataError(f"WAIR {endpoint} answer has no '{key}' list", body=body, system="wair")
            yield from (r for r in rows if isinstance(r, dict))
            if not rows or not body.get("moreRecordsAvailable"):
                return
            offset += len(rows)

    @staticmethod
    def _int(value) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(round(value))

    def recommendations(self) -> list[Recommendation]:
        out = []
        for t in self._read(SHAPE["targets"], "stockTargets"):
            qty = self._int(t.get("targetQuantity"))
            if t.get("skuId") and t.get("locationId") and qty is not None and qty >= 0:
                out.append(
                    Recommendation(
                        sku=str(t["skuId"]),
                        location=str(t["locationId"]),
                        recommended_quantity=qty,
                        kind="target",
                        reason=f"stock to hold for the coming 7 days (forecast {t.get('forecastDate') or '?'})",
                        raw=t,
                    )
                )
        transfers: dict[tuple[str, str], Recommendation] = {}
        for t in self._read(SHAPE["transfers"], "transfers"):
            qty = self._int(t.get("quantity"))
            if not t.get("skuId") or not t.get("toLocationId") or qty is None or qty <= 0:
                continue
            key = (str(t["skuId"]), str(t["toLocationId"]))
            if key in transfers:  # several open transfers to one location: one row, summed
                transfers[key].recommended_quantity += qty
                transfers[key].raw.setdefault("more", []).append(t)
                continue
            transfers[key] = Recommendation(
                sku=key[0],
                location=key[1],
                recommended_quantity=qty,
                kind="transfer",
                supplier=str(t.get("fromLocationId") or ""),
                reason=f"{t.get('transferType') or 'transfer'} from {t.get('fromLocationId')} "
                f"({t.get('referenceId')}), dispatch {t.get('plannedDispatchDate') or '?'}",
                raw=dict(t),
            )
        return out + list(transfers.values())
