"""WAIR replenishment emulator — the published API (docs.wair.ai), served under ``/wair_replenishment``.

See :mod:`connectors.wair_replenishment` for the documents and for what in the bodies is assumed.

  POST /Token                                   X-Tenant + {username, password} → {accessToken, expiresIn, …}
  POST /api/v1/Batch/start, /api/v1/Batch/stop  every upload cycle; data POSTs outside a batch answer 400
  POST /api/v1/Items | Locations | Stock | Sales | StockNotForReplenishment
                                                upsert by id ({"<endpoint>": [...]}); more records in one call
                                                than the recommended maximum answer 400 (the emulator is strict);
                                                StockNotForReplenishment?fullLoad=true replaces the whole set
                                                (a full load split over calls: moreRecordsAvailable=true until the last)
  GET  /api/v1/Recommendations/stockTargets     {stockTargets, offset, limit, moreRecordsAvailable}
  GET  /api/v1/Recommendations/transfers        {transfers, offset, limit, moreRecordsAvailable}

Stock targets (emulated): per (warehouse location holding stock, sku) ``targetQuantity`` = units sold of that sku
(all sales locations) + units held by open allocations at that location. Transfers come from ``seed_transfers``.

Control: set_credentials {"username", "password", "tenant"}, seed_transfers {"transfers": [...]}, state.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from .server import Emulator, HttpError, Request, Response, route

API = r"/api/v1"
DEFAULT_USERNAME, DEFAULT_PASSWORD, DEFAULT_TENANT = "hub", "wair-demo-password", "DEMO"
MAX = {"Items": 25_000, "Locations": 10_000, "Stock": 50_000, "Sales": 10_000, "StockNotForReplenishment": 10_000}
KEYS = {
    "Items": ("items", "itemId"),
    "Locations": ("locations", "locationId"),
    "Stock": ("stock", None),
    "Sales": ("sales", "salesId"),
    "StockNotForReplenishment": ("stockNotForReplenishment", "id"),
}


def _err(status: int, message: str) -> HttpError:
    return HttpError(status, {"statusCode": status, "message": message, "errors": [{"message": message}]})


class WairReplenishmentEmulator(Emulator):
    prefix = "wair_replenishment"
    exempt_patterns = (r"^/Token$",)

    def reset(self):
        self.credentials = {DEFAULT_USERNAME: DEFAULT_PASSWORD}
        self.tenant = DEFAULT_TENANT
        self.tokens: dict[str, float] = {}
        self.batch_open = False
        self.batches = {"started": 0, "stopped": 0}
        self.calls: list[tuple[str, int]] = []  # (endpoint, records) per data call, in order
        self.data: dict[str, dict] = {ep: {} for ep in KEYS}
        self.transfers: list[dict] = []
        self.pending_full_load: dict | None = None

    def error_body(self, status, message, code=""):
        return {"statusCode": status, "message": message, "errors": [{"message": message}]}

    def _auth(self, req: Request):
        bearer = req.header("Authorization")
        with self.lock:
            expiry = self.tokens.get(bearer[7:].strip()) if bearer.startswith("Bearer ") else None
            if expiry is None or expiry < time.time() or req.header("X-Tenant") != self.tenant:
                raise _err(401, "Unauthorized: expired, missing or invalid token (or wrong X-Tenant)")

    @route("POST", r"/Token")
    def token(self, req):
        body = req.json() or {}
        with self.lock:
            if req.header("X-Tenant") != self.tenant or self.credentials.get(body.get("username")) != body.get(
                "password"
            ):
                raise _err(401, "Unauthorized: invalid tenant, username or password")
            token = uuid.uuid4().hex
            self.tokens[token] = time.time() + 3600
        return Response(200, {"accessToken": token, "expiresIn": 3600, "tokenType": "Bearer", "scope": "api"})

    @route("POST", API + r"/Batch/start")
    def batch_start(self, req):
        self._auth(req)
        with self.lock:
            self.batch_open = True
            self.batches["started"] += 1
        return Response(200, None)

    @route("POST", API + r"/Batch/stop")
    def batch_stop(self, req):
        self._auth(req)
        with self.lock:
            if not self.batch_open:
                raise _err(400, "No batch started")
            self.batch_open = False
            self.batches["stopped"] += 1
        return Response(200, None)

    @route("POST", API + r"/(?P<endpoint>Items|Locations|Stock|Sales|StockNotForReplenishment)")
    def upload(self, req):
        self._auth(req)
        endpoint = req.params["endpoint"]
        key, id_field = KEYS[endpoint]
        body = req.json()
        rows = body.get(key) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise _err(400, f"Body must be {{\"{key}\": [...]}}")
        if len(rows) > MAX[endpoint]:
            raise _err(400, f"{len(rows)} records in one call; at most {MAX[endpoint]} recommended for {endpoint}")
        bad = [
            i
            for i, r in enumerate(rows)
            if not isinstance(r, dict)
            or (id_field and not r.get(id_field))
            or (
                endpoint in ("Stock", "Sales", "StockNotForReplenishment")
                and (not r.get("skuId") or not r.get("locationId"))
            )
        ]
        if bad:
            raise _err(400, f"Validation failed for {endpoint} records {bad[:10]}")
        with self.lock:
            if not self.batch_open:
                raise _err(400, "Start a batch first (POST /Batch/start)")
            self.calls.append((endpoint, len(rows)))
            store = self.data[endpoint]
            if endpoint == "StockNotForReplenishment" and req.q("fullLoad", "false").lower() == "true":
                if self.pending_full_load is None:
                    self.pending_full_load = {}
                self.pending_full_load.update({r["id"]: dict(r) for r in rows})
                if req.q("moreRecordsAvailable", "false").lower() != "true":
                    self.data[endpoint], self.pending_full_load = self.pending_full_load, None
                return Response(200, None)
            for r in rows:
                rid = r[id_field] if id_field else f"{r['locationId']}|{r['skuId']}"
                store[rid] = dict(r)
        return Response(200, None)

    def _page(self, req, key, rows):
        offset, limit = int(req.q("offset", "0") or 0), max(1, int(req.q("limit", "100") or 100))
        chunk = rows[offset : offset + limit]
        return Response(
            200, {key: chunk, "offset": offset, "limit": limit, "moreRecordsAvailable": offset + limit < len(rows)}
        )

    def _targets(self) -> list[dict]:
        sold: dict[str, float] = {}
        for s in self.data["Sales"].values():
            sold[s["skuId"]] = sold.get(s["skuId"], 0) + float(s.get("quantity") or 0)
        held: dict[tuple[str, str], float] = {}
        for a in self.data["StockNotForReplenishment"].values():
            held[(a["locationId"], a["skuId"])] = held.get((a["locationId"], a["skuId"]), 0) + float(
                a.get("quantity") or 0
            )
        keys = sorted({(s["locationId"], s["skuId"]) for s in self.data["Stock"].values()} | set(held))
        when = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        return [
            {
                "locationId": loc,
                "skuId": sku,
                "targetQuantity": max(0, sold.get(sku, 0)) + held.get((loc, sku), 0),
                "forecastDate": when,
            }
            for loc, sku in keys
        ]

    @route("GET", API + r"/Recommendations/stockTargets")
    def stock_targets(self, req):
        self._auth(req)
        with self.lock:
            rows = self._targets()
        return self._page(req, "stockTargets", rows)

    @route("GET", API + r"/Recommendations/transfers")
    def get_transfers(self, req):
        self._auth(req)
        with self.lock:
            rows = [dict(t) for t in self.transfers]
        return self._page(req, "transfers", rows)

    # --- control --------------------------------------------------------------------------------------------
    def control_set_credentials(self, payload):
        with self.lock:
            self.credentials = {
                payload.get("username") or DEFAULT_USERNAME: payload.get("password") or DEFAULT_PASSWORD
            }
            self.tenant = payload.get("tenant") or DEFAULT_TENANT
        return {"ok": True}

    def control_seed_transfers(self, payload):
        with self.lock:
            self.transfers = [dict(t) for t in payload.get("transfers") or []]
        return {"transfers": len(self.transfers)}

    def control_state(self, payload):
        with self.lock:
            return {
                "batches": dict(self.batches),
                "batch_open": self.batch_open,
                "calls": list(self.calls),
                **{ep.lower(): {k: dict(v) for k, v in rows.items()} for ep, rows in self.data.items()},
                "stock_targets": self._targets(),
            }
