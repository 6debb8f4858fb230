"""WAIR for Retail emulator (inventory master + warehouse), served under ``/wair``.

What is confirmed and what is modelled
--------------------------------------
WAIR's public integration API (docs.wair.ai) is an *inbound* data API for its replenishment engine:
JSON bodies in camelCase, records identified by ``id`` plus a business ``code``, SKUs and locations
referenced as ``skuId`` / ``locationId``, reads paged with ``offset`` / ``limit`` and a
``moreRecordsAvailable`` flag, 401 for a missing/invalid credential, 400 with the validation errors in
the body, 500 for system errors. Those conventions are followed here.

The hub needs WAIR in the ERP/WMS role (stock per SKU per location per state, a change feed, order
intake with an acknowledgement id, dispatch confirmations); no public documentation of such endpoints
was found, so **the routes and shapes below are modelled, not copied**: a conventional versioned REST
API in WAIR's naming style.

Authentication. As published: ``POST /Token`` (API root) with header ``X-Tenant`` and body
``{username, password}`` → ``{accessToken, expiresIn, tokenType, scope}``; calls then send
``Authorization: Bearer <accessToken>`` and ``X-Tenant``. Also accepted (modelled, for integrations
configured with a static key): ``X-Api-Key``. Anything else is 401. Sandbox defaults: user "hub",
password "wair-demo-password", tenant "DEMO", API key "wair-demo-key".

Wire API (all under ``/wair/api/v1``; every route needs a token or key as above, else 401)
  GET  /locations                                   → {locations: [{id, code, name}]}
  GET  /stock?skuId=a,b&locationId=&offset=&limit=  → {stock: [{skuId, locationId, state, quantity,
                                                       updatedAt}], offset, limit, total, moreRecordsAvailable}
  GET  /stock/changes?since=<cursor>&limit=          → {changes: [{id, skuId, locationId, state, quantity
                                                       (absolute), changedAt}], nextCursor, moreRecordsAvailable}
                                                       cursor = last change id seen ('' / absent = start);
                                                       a cursor past the end (WAIR restarted) replays from
                                                       the start. changedAt strictly increases.
  POST /orders      (Idempotency-Key required)      201 {orderId, orderRef, status: "accepted", receivedAt, acknowledgedAt,
                                                        allocations: [{skuId, locationId, quantity}]} (where the
                                                        order's picked lines were allocated; none back-ordered)
                                                    200 same orderId on a replay (Idempotent-Replayed: true)
                                                    202 {orderRef, status: "pending"} while auto-ack is off
                                                    422 {errors: [{field, code, message}]} on invalid input,
                                                        or when a key is reused with a different body
                                                    409 IdempotencyKeyInFlight (injected at faults.conflict_rate)
  GET  /orders/{orderRef}                           → {orderRef, orderId, status, lines, allocations, dispatches}; 404
                                                       status: pending | accepted | partially_dispatched |
                                                       dispatched | cancelled
  POST /orders/{orderRef}/cancel                    → 200 the order (idempotent); 409 once dispatched; 404
  GET  /dispatches?since=<cursor>&limit=            → {dispatches: [{id, orderRef, orderId, dispatchedAt,
                                                       complete, parcels: [{carrier, trackingNumber,
                                                       trackingUrl, lines: [{skuId, quantity}]}]}],
                                                       nextCursor, moreRecordsAvailable}
  POST /fulfilments (Idempotency-Key required)      201 {fulfilmentId, orderRef, status}; 200 on replay;
                                                    202 {status: "pending"} while fulfilment auto-ack is off;
                                                    the lines leave ``locationId``'s on-hand (change feed)

Stock states on the wire: ``available``, ``inspection``, ``damaged``, ``inTransit``, ``reserved``.
Error bodies: ``{"statusCode", "code", "message", "errors": [{"field", "code", "message"}]}``.

Outbound webhooks (signed with :func:`connectors.sandbox.common.send_webhook`, ``X-Hub-Signature``) are
delivered by one background thread per emulator with bounded retries:
  stock_url    {"type": "stock.changed", "batchId", "changes": [<change rows as in the feed>]}
  dispatch_url {"type": "dispatch.confirmed", "dispatches": [<dispatch rows as in the feed>]}

Control actions (``POST /_sandbox/wair/<action>``; contract in :mod:`connectors.sandbox`):
seed_locations, seed_stock, set_stock, dispatch, configure_webhooks, state, plus
  set_auto_ack {"enabled": bool, "fulfilments": bool}   off → intake answers 202 pending (no id)
  acknowledge {"order_refs": [...] | absent = all}     accept pending orders (and their fulfilments)
  set_api_key {"key"}                                    rotate the valid key (default "wair-demo-key")
  set_credentials {"username", "password", "tenant", "token_ttl", "replace"}; revoke_tokens {}
  set_service_codes {"codes": [...] | null}              restrict serviceCode (null = any)
  set_allocation {"enabled", "location"?}               accepted orders reserve their picked lines ("reserved"
                                                         state) — at ``location``, or (default, no location) per
                                                         SKU where the most is free; dispatch takes them out of
                                                         available + reserved, a cancel frees them (all on the
                                                         feed). On by default, as a running WMS; enabled false
                                                         turns it off
  set_auto_dispatch {"after_seconds": s | null, "carrier"}  ship accepted orders s seconds after acceptance
  lose_responses {"count", "rate", "hang_seconds"}       store the order, then lose the answer (504)
  send_raw_webhook {"kind": "stock"|"dispatch", "payload"}  push an arbitrary (malformed) body, signed
  wait_webhooks {"timeout"}                              block until queued webhooks are delivered
Fault switches of the base class apply to every API route (latency, 5xx, hangs, 429 past the rate,
fail_next); ``conflict_rate`` injects 409 on order intake.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from .common import TokenControls, WebhookQueue, send_webhook
from .server import Emulator, HttpError, Request, Response, route

log = logging.getLogger("sandbox.wair")

DEFAULT_API_KEY = "wair-demo-key"
DEFAULT_USERNAME = "hub"
DEFAULT_PASSWORD = "wair-demo-password"
DEFAULT_TENANT = "DEMO"
TOKEN_TTL = 3600
API = r"/api/v1"
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
WIRE_STATES = ("available", "inspection", "damaged", "inTransit", "reserved")
# control payloads may use the hub's names
STATE_ALIASES = {"in_transit": "inTransit", "in-transit": "inTransit", "intransit": "inTransit"}
WEBHOOK_CHUNK = 500
WEBHOOK_RETRY_DELAYS = (0.2, 0.5)  # 3 attempts
TRACKING_URLS = {
    "dhl": "https://www.dhl.com/track?tracking-id={}",
    "ups": "https://www.ups.com/track?tracknum={}",
    "dpd": "https://track.dpd.co.uk/parcels/{}",
    "royal_mail": "https://www.royalmail.com/track-your-item#/tracking-results/{}",
}


def now_iso() -> str:
    dt = datetime.now(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def wair_error(
    status: int, code: str, message: str, errors: list[dict] | None = None, headers: dict | None = None
) -> HttpError:
    return HttpError(
        status,
        {
            "statusCode": status,
            "code": code,
            "message": message,
            "errors": errors or [{"code": code, "message": message}],
        },
        headers,
    )


def _wire_state(value: Any) -> str:
    state = STATE_ALIASES.get(str(value), str(value)) if value not in (None, "") else "available"
    if state not in WIRE_STATES:
        raise wair_error(400, "InvalidState", f"state {value!r} is not one of {', '.join(WIRE_STATES)}")
    return state


def _int(value: Any, name: str, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise wair_error(
            400,
            "InvalidValue",
            f"{name} {value!r} must be an integer" + (f" >= {minimum}" if minimum is not None else ""),
        )
    return value


class WairEmulator(TokenControls, WebhookQueue, Emulator):
    prefix = "wair"
    exempt_patterns = (r"^/Token$",)  # the token endpoint stays reachable under injected faults

    def reset(self) -> None:
        with self.lock:
            self.api_key = DEFAULT_API_KEY
            # POST /Token (as published): username/password for a tenant → bearer token
            self.credentials = {DEFAULT_USERNAME: DEFAULT_PASSWORD}
            self.tenant = DEFAULT_TENANT
            self.token_ttl = TOKEN_TTL
            self.tokens: dict[str, float] = {}  # token → expiry (epoch seconds)
            self.tokens_issued = 0
            self.auto_ack = True
            self.fulfilment_auto_ack = True
            # order intake faults: the order is stored, then the response is lost (hang + 504), so the
            # client's retry must be answered as a replay — never a second order
            self.lose_responses = 0  # the next n order/fulfilment POSTs
            self.lost_response_rate = 0.0
            self.lost_response_seconds = 0.0  # how long the lost response hangs before the 504
            self.stats_lost_responses = 0
            self.service_codes: set[str] | None = None  # None = any service code accepted
            # allocation: when on (the default), accepting an order moves its picked lines into "reserved" (at
            # ``location``, or per SKU where the most is free when it is "") and a dispatch takes them out of
            # on-hand ("available") and "reserved" — all on the change feed
            self.allocation: dict = {"enabled": True, "location": ""}
            # auto-dispatch (demo / end-to-end benches): accepted orders ship after ``after_seconds``
            self.auto_dispatch: dict = {"after_seconds": None, "carrier": "dhl"}
            self._dispatch_queue: collections.deque = collections.deque()  # (monotonic accepted, orderRef)
            self.locations: dict[str, dict] = {}
            self.stock: dict[tuple[str, str, str], list] = {}  # (sku, location, state) → [qty, updatedAt]
            self._sorted_keys: list | None = None
            self.changes: list[dict] = []  # change id n is changes[n - 1]
            self._last_tick: datetime | None = None
            self.orders: dict[str, dict] = {}  # orderRef → order record
            self.order_keys: dict[str, tuple[str, str]] = {}  # Idempotency-Key → (orderRef, body fingerprint)
            self.order_receipts: dict[str, int] = {}
            self.order_seq = 0
            self.dispatches: list[dict] = []  # dispatch id n is dispatches[n - 1]
            self.fulfilments: list[dict] = []
            self.fulfilment_seq = 0
            self.fulfilment_keys: dict[str, dict] = {}
            # webhooks (a reset starts a new generation: queued deliveries from before it are void)
            self.webhooks: dict = {"stock_url": "", "dispatch_url": "", "secret": ""}
            self.webhook_stats = {"queued": 0, "delivered": 0, "attempts": 0, "retried": 0, "dropped": 0}
            if self.reset_queue():
                self._ticker: threading.Thread | None = None

    def error_body(self, status: int, message: str, code: str = "") -> Any:
        code = code or str(status)
        return {"statusCode": status, "code": code, "message": message, "errors": [{"code": code, "message": message}]}

    # --- helpers ---------------------------------------------------------------------------------
    def _auth(self, req: Request) -> None:
        """A bearer token from POST /Token (with the X-Tenant it was issued for), or the API key."""
        bearer = req.header("Authorization")
        if bearer.startswith("Bearer "):
            with self.lock:
                expiry = self.tokens.get(bearer[7:].strip())
                if expiry is None or expiry < time.time():
                    raise wair_error(401, "Unauthorized", "expired, missing or invalid token")
                if req.header("X-Tenant") != self.tenant:
                    raise wair_error(401, "Unauthorized", f"token not valid for tenant {req.header('X-Tenant')!r}")
            return
        given = req.header("X-Api-Key")
        if not given or given != self.api_key:
            raise wair_error(401, "Unauthorized", "missing or invalid API key (X-Api-Key) or bearer token")

    @route("POST", r"/Token")
    def token(self, req):
        """As published: X-Tenant header, body {username, password} → {accessToken, expiresIn, tokenType, scope}."""
        body = self._body(req)
        errs = [
            {"field": f, "code": "Required", "message": f"{f} is required"}
            for f in ("username", "password")
            if not isinstance(body.get(f), str) or not body.get(f)
        ]
        if errs:
            raise wair_error(400, "ValidationFailed", "username and password are required", errs)
        with self.lock:
            if req.header("X-Tenant") != self.tenant or self.credentials.get(body["username"]) != body["password"]:
                raise wair_error(401, "Unauthorized", "invalid tenant, username or password")
            token = uuid.uuid4().hex
            self.tokens[token] = time.time() + self.token_ttl
            self.tokens_issued += 1
            return Response(
                200, {"accessToken": token, "expiresIn": self.token_ttl, "tokenType": "Bearer", "scope": "api"}
            )

    @staticmethod
    def _paging(req: Request) -> tuple[int, int]:
        try:
            offset = int(req.q("offset", "0") or 0)
            limit = int(req.q("limit", str(DEFAULT_LIMIT)) or DEFAULT_LIMIT)
        except ValueError:
            raise wair_error(400, "InvalidQuery", "offset and limit must be integers") from None
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise wair_error(400, "InvalidQuery", f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
        return offset, limit

    @staticmethod
    def _cursor(req: Request) -> tuple[int, int]:
        since = req.q("since", "") or ""
        try:
            start = int(since) if since else 0
            limit = int(req.q("limit", str(DEFAULT_LIMIT)) or DEFAULT_LIMIT)
        except ValueError:
            raise wair_error(400, "InvalidCursor", f"cursor {since!r} is not valid") from None
        if start < 0 or not 1 <= limit <= MAX_LIMIT:
            raise wair_error(400, "InvalidCursor", f"cursor must be >= 0 and limit between 1 and {MAX_LIMIT}")
        return start, limit

    @staticmethod
    def _body(req: Request) -> dict:
        try:
            data = req.json()
        except HttpError:
            raise wair_error(400, "InvalidJsonInput", "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise wair_error(400, "InvalidJsonInput", "request body must be a JSON object")
        return data

    def _keys(self) -> list:
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.stock)
        return self._sorted_keys

    def _put_stock(self, sku: str, loc: str, state: str, qty: int, ts: str) -> None:
        key = (sku, loc, state)
        row = self.stock.get(key)
        if row is None:
            self.stock[key] = [qty, ts]
            self._sorted_keys = None
        else:
            row[0], row[1] = qty, ts

    # --- locations / stock -----------------------------------------------------------------------
    @route("GET", API + r"/locations")
    def locations_list(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, {"locations": [dict(l) for l in self.locations.values()]})

    @route("GET", API + r"/stock")
    def stock_list(self, req):
        self._auth(req)
        offset, limit = self._paging(req)
        skus = {s for v in req.query.get("skuId", []) for s in v.split(",") if s}
        loc = req.q("locationId", "") or ""
        with self.lock:
            if skus:
                keys = [k for s in sorted(skus) for k in self._keys_for_sku(s)]
            else:
                keys = self._keys()
            if loc:
                keys = [k for k in keys if k[1] == loc]
            page = keys[offset : offset + limit]
            rows = [
                {
                    "skuId": k[0],
                    "locationId": k[1],
                    "state": k[2],
                    "quantity": self.stock[k][0],
                    "updatedAt": self.stock[k][1],
                }
                for k in page
            ]
            return Response(
                200,
                {
                    "stock": rows,
                    "offset": offset,
                    "limit": limit,
                    "total": len(keys),
                    "moreRecordsAvailable": offset + len(page) < len(keys),
                },
            )

    def _keys_for_sku(self, sku: str) -> list:
        import bisect

        keys = self._keys()
        i = bisect.bisect_left(keys, (sku,))
        out = []
        while i < len(keys) and keys[i][0] == sku:
            out.append(keys[i])
            i += 1
        return out

    @route("GET", API + r"/stock/changes")
    def stock_changes(self, req):
        self._auth(req)
        start, limit = self._cursor(req)
        with self.lock:
            if start > len(self.changes):  # a cursor from before a restart: replay from the start
                start = 0
            page = self.changes[start : start + limit]
            next_cursor = str(page[-1]["id"]) if page else str(start)
            return Response(
                200,
                {
                    "changes": [dict(c) for c in page],
                    "nextCursor": next_cursor,
                    "moreRecordsAvailable": start + len(page) < len(self.changes),
                },
            )

    # --- orders ----------------------------------------------------------------------------------
    def _validate_order(self, body: dict, key: str) -> list[dict]:
        errs: list[dict] = []

        def err(fld: str, code: str, message: str):
            errs.append({"field": fld, "code": code, "message": message})

        ref = body.get("orderRef")
        if not isinstance(ref, str) or not ref.strip():
            err("orderRef", "Required", "orderRef is required")
        elif ref != key:
            err("orderRef", "Mismatch", "orderRef must equal the Idempotency-Key header")
        lines = body.get("lines")
        if not isinstance(lines, list) or not lines:
            err("lines", "Required", "at least one order line is required")
            lines = []
        line_ids = set()
        for i, line in enumerate(lines):
            if not isinstance(line, dict):
                err(f"lines[{i}]", "Invalid", "order line must be an object")
                continue
            lid = line.get("lineId")
            if not isinstance(lid, str) or not lid:
                err(f"lines[{i}].lineId", "Required", "lineId is required")
            elif lid in line_ids:
                err(f"lines[{i}].lineId", "Duplicate", f"lineId {lid!r} appears twice")
            else:
                line_ids.add(lid)
            if not isinstance(line.get("skuId"), str) or not line.get("skuId", "").strip():
                err(f"lines[{i}].skuId", "Required", "skuId is required")
            qty = line.get("quantity")
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                err(f"lines[{i}].quantity", "Invalid", f"quantity {qty!r} must be a positive integer")
        for i, line in enumerate(lines):
            if isinstance(line, dict) and line.get("parentLineId") and line["parentLineId"] not in line_ids:
                err(
                    f"lines[{i}].parentLineId",
                    "UnknownLine",
                    f"parentLineId {line['parentLineId']!r} is not a line of this order",
                )
        addr = body.get("shippingAddress")
        if not isinstance(addr, dict):
            err("shippingAddress", "Required", "shippingAddress is required")
        else:
            if not (addr.get("firstName") or addr.get("lastName") or addr.get("company")):
                err("shippingAddress.lastName", "Required", "a recipient name or company is required")
            for fld in ("street", "city", "postalCode", "country"):
                if not isinstance(addr.get(fld), str) or not addr.get(fld, "").strip():
                    err(f"shippingAddress.{fld}", "Required", f"{fld} is required")
            c = addr.get("country")
            if isinstance(c, str) and c and (len(c) != 2 or not c.isalpha()):
                err("shippingAddress.country", "Invalid", f"country {c!r} must be an ISO 3166-1 alpha-2 code")
        service = body.get("serviceCode")
        if not isinstance(service, str) or not service.strip():
            err("serviceCode", "Required", "serviceCode is required")
        elif self.service_codes is not None and service not in self.service_codes:
            err("serviceCode", "UnknownServiceCode", f"service code {service!r} is not configured in WAIR")
        return errs

    def _allocations(self, o: dict) -> list[dict]:
        """Where the accepted order was allocated: one row per allocated SKU (back-ordered SKUs have none)."""
        alloc = o.get("allocation") or {}
        lines = self._physical_lines(o)
        return [
            {"skuId": sku, "locationId": loc, "quantity": lines.get(sku, 0)}
            for sku, loc in sorted((alloc.get("at") or {}).items())
        ]

    def _public_order(self, o: dict) -> dict:
        return {
            "orderRef": o["orderRef"],
            "orderId": o["orderId"],
            "status": o["status"],
            "receivedAt": o["receivedAt"],
            "acknowledgedAt": o["acknowledgedAt"],
            "lines": o["request"].get("lines", []),
            "allocations": self._allocations(o),
            "dispatches": [d["id"] for d in o["dispatches"]],
        }

    def _accept(self, o: dict) -> None:
        if o["orderId"] is None:
            self.order_seq += 1
            o["orderId"] = f"WO-{self.order_seq:07d}"
            o["status"] = "accepted"
            o["acknowledgedAt"] = now_iso()
            self._dispatch_queue.append((time.monotonic(), o["orderRef"]))
            if self.allocation["enabled"]:
                at = {}
                for sku in self._physical_lines(o):
                    loc = self.allocation["location"] or self._best_location(sku)
                    if loc:
                        at[sku] = loc
                o["allocation"] = {
                    "at": at,
                    "open": {sku: q for sku, q in self._physical_lines(o).items() if sku in at},
                }
                self._record(
                    [
                        (sku, at[sku], "reserved", self._qty(sku, at[sku], "reserved") + q)
                        for sku, q in sorted(o["allocation"]["open"].items())
                    ]
                )

    def _best_location(self, sku: str) -> str:
        """Where ``sku`` has the most free stock (available − reserved; ties by location id); "" if WAIR holds
        none of it anywhere (the line stays unallocated, i.e. back-ordered)."""
        free: dict[str, int] = {}
        for s, loc, state in self._keys_for_sku(sku):
            if s == sku and state in ("available", "reserved"):
                free[loc] = free.get(loc, 0) + (self._qty(sku, loc, state) * (1 if state == "available" else -1))
        return min(free, key=lambda loc: (-free[loc], loc)) if free else ""

    @staticmethod
    def _physical_lines(o: dict) -> dict[str, int]:
        """SKU → quantity over the lines the warehouse picks: a bundle parent line (one that other lines name
        as ``parentLineId``) is not picked, its components are."""
        lines = o["request"].get("lines", [])
        parents = {l.get("parentLineId") for l in lines if l.get("parentLineId")}
        out: dict[str, int] = {}
        for line in lines:
            if line.get("lineId") not in parents:
                out[line["skuId"]] = out.get(line["skuId"], 0) + line["quantity"]
        return out

    def _tick(self) -> str:
        """Strictly increasing change timestamps (µs), so feed order = time order even within one burst and
        a receiver's "ignore older than stored" guard never drops a later change."""
        now = datetime.now(timezone.utc)
        if self._last_tick is not None and now <= self._last_tick:
            now = self._last_tick + timedelta(microseconds=1)
        self._last_tick = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _qty(self, sku: str, loc: str, state: str) -> int:
        row = self.stock.get((sku, loc, state))
        return row[0] if row else 0

    def _record(self, rows: list[tuple[str, str, str, int]]) -> list[dict]:
        """Set quantities, append them to the change feed and queue the stock webhook (caller holds the lock)."""
        new = []
        for sku, loc, state, qty in rows:
            ts = self._tick()
            self._put_stock(sku, loc, state, qty, ts)
            change = {
                "id": len(self.changes) + 1,
                "skuId": sku,
                "locationId": loc,
                "state": state,
                "quantity": qty,
                "changedAt": ts,
            }
            self.changes.append(change)
            new.append(change)
        for i in range(0, len(new), WEBHOOK_CHUNK):
            self._enqueue(
                "stock",
                {
                    "type": "stock.changed",
                    "batchId": str(uuid.uuid4()),
                    "changes": [dict(c) for c in new[i : i + WEBHOOK_CHUNK]],
                },
            )
        return new

    def _release(self, o: dict, picked: dict[str, int] | None) -> None:
        """Dispatch (``picked``) takes stock out of on-hand and reserved; cancel (None) frees what is left."""
        alloc = o.get("allocation")
        if not alloc:
            return
        rows = []
        if picked is None:
            for sku, q in alloc["open"].items():
                loc = alloc["at"][sku]
                if q > 0:
                    rows.append((sku, loc, "reserved", max(0, self._qty(sku, loc, "reserved") - q)))
            alloc["open"] = {}
        else:
            for sku, q in picked.items():
                loc = alloc["at"].get(sku)
                if loc is None:  # never allocated (back-ordered): nothing of ours to take out
                    continue
                freed = min(q, alloc["open"].get(sku, 0))
                alloc["open"][sku] = alloc["open"].get(sku, 0) - freed
                rows.append((sku, loc, "available", self._qty(sku, loc, "available") - q))
                if freed:
                    rows.append((sku, loc, "reserved", max(0, self._qty(sku, loc, "reserved") - freed)))
        self._record(rows)

    @route("POST", API + r"/orders")
    def order_create(self, req):
        self._auth(req)
        key = req.header("Idempotency-Key").strip()
        if not key:
            raise wair_error(
                400,
                "IdempotencyKeyRequired",
                "the Idempotency-Key header is required",
                [{"field": "Idempotency-Key", "code": "Required", "message": "header is required"}],
            )
        body = self._body(req)
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        if self.maybe_conflict():  # as a server does while a request with the same key is still in flight
            raise wair_error(
                409,
                "IdempotencyKeyInFlight",
                f"a request with Idempotency-Key {key!r} is being processed",
                headers={"Retry-After": "0"},
            )
        return self._maybe_lose(self._order_create(key, body, fingerprint))

    def _maybe_lose(self, resp: Response) -> Response:
        """Order/fulfilment intake fault: the write is committed, then the answer never arrives in time."""
        import random

        with self.lock:
            lose = False
            if self.lose_responses > 0:
                self.lose_responses -= 1
                lose = True
            elif self.lost_response_rate and random.random() < self.lost_response_rate:
                lose = True
            if lose:
                self.stats_lost_responses += 1
            hang = self.lost_response_seconds
        if not lose:
            return resp
        if hang:
            time.sleep(hang)
        return Response(504, self.error_body(504, "gateway timeout (the request was processed)", "GatewayTimeout"))

    def _order_create(self, key: str, body: dict, fingerprint: str) -> Response:
        with self.lock:
            known = self.order_keys.get(key)
            if known is not None:
                ref, fp = known
                if fp != fingerprint:
                    raise wair_error(
                        422,
                        "IdempotencyKeyReused",
                        f"Idempotency-Key {key!r} was used with a different request body",
                        [
                            {
                                "field": "Idempotency-Key",
                                "code": "IdempotencyKeyReused",
                                "message": "same key, different body",
                            }
                        ],
                    )
                o = self.orders[ref]
                self.order_receipts[ref] = self.order_receipts.get(ref, 0) + 1
                return self._order_answer(o, replay=True)
            errs = self._validate_order(body, key)
            if errs:
                raise wair_error(422, "ValidationFailed", f"order has {len(errs)} invalid field(s)", errs)
            ref = body["orderRef"]
            self.order_keys[key] = (ref, fingerprint)
            self.order_receipts[ref] = self.order_receipts.get(ref, 0) + 1
            o = {
                "orderRef": ref,
                "orderId": None,
                "status": "pending",
                "receivedAt": now_iso(),
                "acknowledgedAt": None,
                "request": body,
                "dispatches": [],
                "dispatched": {},
            }
            self.orders[ref] = o
            if self.auto_ack:
                self._accept(o)
            return self._order_answer(o, replay=False)

    def _order_answer(self, o: dict, replay: bool) -> Response:
        headers = {"Idempotent-Replayed": "true"} if replay else {}
        if o["status"] == "cancelled":  # a replay for an order cancelled meanwhile: say so, never re-create it
            return Response(
                200,
                {
                    "orderId": o["orderId"],
                    "orderRef": o["orderRef"],
                    "status": "cancelled",
                    "receivedAt": o["receivedAt"],
                },
                headers,
            )
        if o["orderId"] is None:
            return Response(
                202, {"orderRef": o["orderRef"], "status": "pending", "receivedAt": o["receivedAt"]}, headers
            )
        return Response(
            200 if replay else 201,
            {
                "orderId": o["orderId"],
                "orderRef": o["orderRef"],
                "status": o["status"],
                "receivedAt": o["receivedAt"],
                "acknowledgedAt": o["acknowledgedAt"],
                "allocations": self._allocations(o),
            },
            headers,
        )

    @route("GET", API + r"/orders/(?P<ref>[^/]+)")
    def order_get(self, req):
        self._auth(req)
        from urllib.parse import unquote

        ref = unquote(req.params["ref"])
        with self.lock:
            o = self.orders.get(ref)
            if o is None:
                raise wair_error(404, "OrderNotFound", f"order {ref!r} not found")
            return Response(200, self._public_order(o))

    @route("POST", API + r"/orders/(?P<ref>[^/]+)/cancel")
    def order_cancel(self, req):
        """Cancel an order not yet dispatched: 200 (also when already cancelled), 409 once dispatched, 404."""
        self._auth(req)
        from urllib.parse import unquote

        ref = unquote(req.params["ref"])
        with self.lock:
            o = self.orders.get(ref)
            if o is None:
                raise wair_error(404, "OrderNotFound", f"order {ref!r} not found")
            if o["status"] in ("dispatched", "partially_dispatched"):
                raise wair_error(409, "AlreadyDispatched", f"order {ref!r} has been dispatched and cannot be cancelled")
            if o["status"] != "cancelled":
                o["status"] = "cancelled"
                o["cancelledAt"] = now_iso()
                self._release(o, None)
            return Response(200, self._public_order(o))

    # --- dispatches / fulfilments ----------------------------------------------------------------
    @route("GET", API + r"/dispatches")
    def dispatch_list(self, req):
        self._auth(req)
        start, limit = self._cursor(req)
        with self.lock:
            if start > len(self.dispatches):  # a cursor from before a restart: replay from the start
                start = 0
            page = self.dispatches[start : start + limit]
            next_cursor = str(page[-1]["id"]) if page else str(start)
            return Response(
                200,
                {
                    "dispatches": [json.loads(json.dumps(d)) for d in page],
                    "nextCursor": next_cursor,
                    "moreRecordsAvailable": start + len(page) < len(self.dispatches),
                },
            )

    @route("POST", API + r"/fulfilments")
    def fulfilment_create(self, req):
        self._auth(req)
        key = req.header("Idempotency-Key").strip()
        if not key:
            raise wair_error(
                400,
                "IdempotencyKeyRequired",
                "the Idempotency-Key header is required",
                [{"field": "Idempotency-Key", "code": "Required", "message": "header is required"}],
            )
        body = self._body(req)
        return self._maybe_lose(self._fulfilment_create(key, body))

    @staticmethod
    def _fulfilment_answer(f: dict, replay: bool) -> Response:
        if f["fulfilmentId"] is None:
            return Response(202, {"orderRef": f["orderRef"], "status": "pending", "receivedAt": f["receivedAt"]})
        return Response(
            200 if replay else 201,
            {"fulfilmentId": f["fulfilmentId"], "orderRef": f["orderRef"], "status": "recorded"},
            {"Idempotent-Replayed": "true"} if replay else {},
        )

    def _accept_fulfilment(self, f: dict) -> None:
        if f["fulfilmentId"] is None:
            self.fulfilment_seq += 1
            f["fulfilmentId"] = f"FF-{self.fulfilment_seq:07d}"

    def _fulfilment_create(self, key: str, body: dict) -> Response:
        with self.lock:
            if key in self.fulfilment_keys:
                return self._fulfilment_answer(self.fulfilment_keys[key], replay=True)
            errs = []
            if not isinstance(body.get("orderRef"), str) or not body.get("orderRef"):
                errs.append({"field": "orderRef", "code": "Required", "message": "orderRef is required"})
            lines = body.get("lines")
            if not isinstance(lines, list) or not lines:
                errs.append({"field": "lines", "code": "Required", "message": "at least one line is required"})
                lines = []
            for i, line in enumerate(lines):
                if not isinstance(line, dict) or not isinstance(line.get("skuId"), str) or not line.get("skuId"):
                    errs.append({"field": f"lines[{i}].skuId", "code": "Required", "message": "skuId is required"})
                    continue
                q = line.get("quantity")
                if isinstance(q, bool) or not isinstance(q, int) or q <= 0:
                    errs.append(
                        {
                            "field": f"lines[{i}].quantity",
                            "code": "Invalid",
                            "message": f"quantity {q!r} must be a positive integer",
                        }
                    )
            loc = body.get("locationId")
            if loc and self.locations and loc not in self.locations:
                errs.append(
                    {"field": "locationId", "code": "UnknownLocation", "message": f"location {loc!r} is not known"}
                )
            if errs:
                raise wair_error(422, "ValidationFailed", f"fulfilment has {len(errs)} invalid field(s)", errs)
            f = {
                "fulfilmentId": None,
                "idempotencyKey": key,
                "orderRef": body["orderRef"],
                "fulfilmentRef": body.get("fulfilmentRef", ""),
                "locationId": loc or "",
                "lines": lines,
                "fulfilledAt": body.get("fulfilledAt"),
                "receivedAt": now_iso(),
            }
            if self.fulfilment_auto_ack:
                self._accept_fulfilment(f)
            if loc:  # the goods left that location: its on-hand drops (on the change feed, like any movement)
                self._record(
                    [
                        (line["skuId"], loc, "available", self._qty(line["skuId"], loc, "available") - line["quantity"])
                        for line in lines
                    ]
                )
            self.fulfilments.append(f)
            self.fulfilment_keys[key] = f
            return self._fulfilment_answer(f, replay=False)

    # --- webhooks --------------------------------------------------------------------------------
    def _enqueue(self, kind: str, payload: dict) -> None:
        """Caller holds the lock."""
        url = self.webhooks.get(f"{kind}_url")
        if not url:
            return
        self.ensure_workers(1, "wair-webhooks")
        self._queue.put((self.generation, url, self.webhooks.get("secret", ""), payload))
        self.webhook_stats["queued"] += 1

    def _deliver_loop(self) -> None:
        def handle(item):
            generation, url, secret, payload = item
            self.deliver(
                generation, lambda: 200 <= send_webhook(url, secret, payload, timeout=10) < 300, WEBHOOK_RETRY_DELAYS
            )

        self.serve_queue(handle, "wair webhook worker")

    # --- control actions -------------------------------------------------------------------------
    def control_set_api_key(self, payload: dict) -> dict:
        with self.lock:
            self.api_key = str(payload.get("key") or DEFAULT_API_KEY)
            return {"api_key_set": True}

    def control_set_credentials(self, payload: dict) -> dict:
        """{"username", "password", "tenant"?, "token_ttl"?, "replace"?: bool}"""
        with self.lock:
            if payload.get("replace"):
                self.credentials = {}
            if payload.get("username"):
                self.credentials[str(payload["username"])] = str(payload.get("password") or "")
            if payload.get("tenant"):
                self.tenant = str(payload["tenant"])
            if payload.get("token_ttl") is not None:
                self.token_ttl = int(payload["token_ttl"])
            return {"users": sorted(self.credentials), "tenant": self.tenant, "token_ttl": self.token_ttl}

    def control_set_auto_ack(self, payload: dict) -> dict:
        """{"enabled": bool (orders), "fulfilments": bool (optional, storefront-side fulfilments)}"""
        with self.lock:
            if "enabled" in payload:
                self.auto_ack = bool(payload["enabled"])
            if "fulfilments" in payload:
                self.fulfilment_auto_ack = bool(payload["fulfilments"])
            return {"auto_ack": self.auto_ack, "fulfilment_auto_ack": self.fulfilment_auto_ack}

    def control_lose_responses(self, payload: dict) -> dict:
        """{"count": n, "rate": 0..1, "hang_seconds": s}: order/fulfilment POSTs are processed, then answered
        504 after ``hang_seconds`` (set it above the client timeout to simulate a lost response)."""
        with self.lock:
            self.lose_responses = int(payload.get("count", 0))
            self.lost_response_rate = float(payload.get("rate", 0.0))
            self.lost_response_seconds = float(payload.get("hang_seconds", 0.0))
            return {
                "count": self.lose_responses,
                "rate": self.lost_response_rate,
                "hang_seconds": self.lost_response_seconds,
            }

    def control_send_raw_webhook(self, payload: dict) -> dict:
        """{"kind": "stock" | "dispatch", "payload": {...}}: deliver an arbitrary (e.g. malformed) body through
        the signed webhook path, as a misbehaving WAIR would."""
        kind = payload.get("kind")
        if kind not in ("stock", "dispatch"):
            raise wair_error(400, "InvalidKind", "kind must be 'stock' or 'dispatch'")
        with self.lock:
            if not self.webhooks.get(f"{kind}_url"):
                raise wair_error(400, "NoWebhook", f"no {kind}_url configured")
            self._enqueue(kind, payload.get("payload"))
            return {"queued": True}

    def control_set_service_codes(self, payload: dict) -> dict:
        with self.lock:
            codes = payload.get("codes")
            self.service_codes = None if codes is None else {str(c) for c in codes}
            return {"service_codes": None if self.service_codes is None else sorted(self.service_codes)}

    def control_acknowledge(self, payload: dict) -> dict:
        """Accept pending orders (all, or ``order_refs``) and pending fulfilments
        → {"acknowledged": {orderRef: orderId}, "fulfilments": {idempotencyKey: fulfilmentId}}."""
        with self.lock:
            refs = payload.get("order_refs")
            targets = (
                [self.orders[r] for r in refs if r in self.orders]
                if refs
                else [o for o in self.orders.values() if o["orderId"] is None]
            )
            out = {}
            for o in targets:
                self._accept(o)
                out[o["orderRef"]] = o["orderId"]
            ff = {}
            for f in self.fulfilments:
                if f["fulfilmentId"] is None and (not refs or f["orderRef"] in refs):
                    self._accept_fulfilment(f)
                    ff[f["idempotencyKey"]] = f["fulfilmentId"]
            return {"acknowledged": out, "fulfilments": ff}

    def control_seed_locations(self, payload: dict) -> dict:
        with self.lock:
            for loc in payload.get("locations") or []:
                lid = str(loc["id"])
                self.locations[lid] = {
                    "id": lid,
                    "code": str(loc.get("code") or lid),
                    "name": str(loc.get("name") or lid),
                }
            return {"locations": len(self.locations)}

    def _rows(self, payload: dict) -> list[tuple[str, str, str, int]]:
        out = []
        for i, r in enumerate(payload.get("rows") or []):
            try:
                sku, loc = str(r["sku"]), str(r["location"])
            except (KeyError, TypeError):
                raise wair_error(400, "InvalidRow", f"row {i} needs sku and location") from None
            # negative quantities are stored and reported as they are (an oversold master does that)
            out.append((sku, loc, _wire_state(r.get("state")), _int(r.get("quantity"), f"rows[{i}].quantity", None)))
        return out

    def control_seed_stock(self, payload: dict) -> dict:
        """Bulk load current quantities; no change records, no webhooks."""
        rows = self._rows(payload)
        ts = now_iso()
        with self.lock:
            for sku, loc, state, qty in rows:
                self._put_stock(sku, loc, state, qty, ts)
            return {"rows": len(rows), "stock_rows": len(self.stock)}

    def control_set_stock(self, payload: dict) -> dict:
        """Set quantities: each row becomes a change on the feed; the batch goes to the stock webhook."""
        rows = self._rows(payload)
        with self.lock:
            new = self._record(rows)
            return {"changes": [c["id"] for c in new], "cursor": str(len(self.changes))}

    def control_set_auto_dispatch(self, payload: dict) -> dict:
        """{"after_seconds": s | null, "carrier": "dhl"}: ship every accepted order s seconds after it was
        accepted (one parcel, all lines), as a running warehouse would; null switches it off."""
        with self.lock:
            after = payload.get("after_seconds")
            self.auto_dispatch = {
                "after_seconds": None if after is None else max(0.0, float(after)),
                "carrier": str(payload.get("carrier") or "dhl"),
            }
            if after is not None and (self._ticker is None or not self._ticker.is_alive()):
                self._ticker = threading.Thread(target=self._auto_dispatch_loop, name="wair-auto-dispatch", daemon=True)
                self._ticker.start()
            return dict(self.auto_dispatch)

    def _auto_dispatch_loop(self) -> None:
        while True:
            time.sleep(0.05)
            try:
                with self.lock:
                    after = self.auto_dispatch["after_seconds"]
                    if after is None:
                        continue
                    now = time.monotonic()
                    while self._dispatch_queue and now - self._dispatch_queue[0][0] >= after:
                        _, ref = self._dispatch_queue.popleft()
                        o = self.orders.get(ref)
                        if o is not None and o["status"] == "accepted":
                            self._dispatch(o, {"parcels": [{"carrier": self.auto_dispatch["carrier"]}]})
            except Exception:  # never let the ticker die
                log.exception("wair auto-dispatch failed")

    def control_set_allocation(self, payload: dict) -> dict:
        """{"enabled": bool, "location": "<location id>"?}: allocate accepted orders at ``location`` (absent: per
        SKU where the most is free)."""
        with self.lock:
            self.allocation = {
                "enabled": bool(payload.get("enabled", True)),
                "location": str(payload.get("location") or ""),
            }
            return dict(self.allocation)

    def control_dispatch(self, payload: dict) -> dict:
        """{"order_ref", "parcels": [{"carrier", "tracking_number", "tracking_url"?, "lines": [[sku, qty]]}],
        "complete"?: bool} → the dispatch record. Parcels without lines carry everything not yet dispatched."""
        ref = payload.get("order_ref")
        with self.lock:
            o = self.orders.get(ref)
            if o is None:
                raise wair_error(400, "OrderNotFound", f"order {ref!r} is unknown to WAIR")
            return self._dispatch(o, payload)

    def _dispatch(self, o: dict, payload: dict) -> dict:
        """Caller holds the lock. Validates every parcel before changing anything."""
        ref = o["orderRef"]
        if o["status"] == "cancelled":
            raise wair_error(400, "OrderCancelled", f"order {ref!r} was cancelled")
        ordered = self._physical_lines(o)
        shipped = dict(o["dispatched"])  # working copy: committed only when every parcel is valid
        parcels, picked = [], {}
        for i, p in enumerate(payload.get("parcels") or [{}]):
            if not isinstance(p, dict):
                raise wair_error(400, "InvalidParcel", f"parcels[{i}] must be an object")
            if p.get("lines"):
                try:
                    lines = [
                        {"skuId": str(sku), "quantity": _int(q, f"parcels[{i}] line quantity", 1)}
                        for sku, q in p["lines"]
                    ]
                except (TypeError, ValueError):
                    raise wair_error(
                        400, "InvalidParcel", f"parcels[{i}].lines must be [[sku, quantity], ...]"
                    ) from None
            else:
                lines = [
                    {"skuId": sku, "quantity": q - shipped.get(sku, 0)}
                    for sku, q in ordered.items()
                    if q - shipped.get(sku, 0) > 0
                ]
                if not lines:
                    raise wair_error(400, "NothingToDispatch", f"every line of order {ref!r} has been dispatched")
            for line in lines:
                shipped[line["skuId"]] = shipped.get(line["skuId"], 0) + line["quantity"]
                picked[line["skuId"]] = picked.get(line["skuId"], 0) + line["quantity"]
            parcels.append((p, lines))
        self._accept(o)  # a warehouse that ships an order has accepted it
        out = []
        for i, (p, lines) in enumerate(parcels):
            carrier = str(p.get("carrier") or "dhl")
            tn = str(
                p.get("tracking_number") or f"{carrier.upper()}{o['orderId'][-7:]}{len(self.dispatches) + 1:04d}{i}"
            )
            url = p.get("tracking_url") or TRACKING_URLS.get(carrier.lower(), "https://track.example.com/{}").format(tn)
            out.append({"carrier": carrier, "trackingNumber": tn, "trackingUrl": url, "lines": lines})
        o["dispatched"] = shipped
        complete = payload.get("complete")
        if complete is None:
            complete = all(shipped.get(sku, 0) >= q for sku, q in ordered.items())
        d = {
            "id": len(self.dispatches) + 1,
            "orderRef": ref,
            "orderId": o["orderId"],
            "dispatchedAt": payload.get("dispatched_at") or now_iso(),
            "complete": bool(complete),
            "parcels": out,
        }
        self.dispatches.append(d)
        o["dispatches"].append(d)
        o["status"] = "dispatched" if complete else "partially_dispatched"
        self._release(o, picked)
        self._enqueue("dispatch", {"type": "dispatch.confirmed", "dispatches": [json.loads(json.dumps(d))]})
        return json.loads(json.dumps(d))

    def control_configure_webhooks(self, payload: dict) -> dict:
        with self.lock:
            self.webhooks = {
                "stock_url": payload.get("stock_url") or "",
                "dispatch_url": payload.get("dispatch_url") or "",
                "secret": payload.get("secret") or "",
            }
            return {k: v for k, v in self.webhooks.items() if k != "secret"}

    def control_state(self, payload: dict) -> dict:
        """{"skus": [...]?, "order_refs": [...]?, "brief": bool?} → orders (with the request as received unless
        ``brief``), order_receipts (valid POSTs per order ref, replays included), fulfilments, counters."""
        with self.lock:
            refs = payload.get("order_refs")
            selected = [(r, self.orders[r]) for r in refs if r in self.orders] if refs else list(self.orders.items())
            brief = bool(payload.get("brief"))
            orders = {
                ref: {
                    "orderId": o["orderId"],
                    "status": o["status"],
                    "receivedAt": o["receivedAt"],
                    "acknowledgedAt": o["acknowledgedAt"],
                    **({} if brief else {"request": json.loads(json.dumps(o["request"]))}),
                    "dispatches": [d["id"] for d in o["dispatches"]],
                    "dispatched": dict(o["dispatched"]),
                }
                for ref, o in selected
            }
            stock = {}
            skus = payload.get("skus")
            if skus:
                for s in skus:
                    for k in self._keys_for_sku(s):
                        stock.setdefault(s, {}).setdefault(k[1], {})[k[2]] = self.stock[k][0]
            return {
                "orders": orders,
                "order_receipts": dict(self.order_receipts),
                "fulfilments": [json.loads(json.dumps(f)) for f in self.fulfilments],
                "dispatches": len(self.dispatches),
                "changes": len(self.changes),
                "stock_rows": len(self.stock),
                "stock": stock,
                "auto_ack": self.auto_ack,
                "fulfilment_auto_ack": self.fulfilment_auto_ack,
                "lost_responses": self.stats_lost_responses,
                "tokens_issued": self.tokens_issued,
                "webhooks": dict(self.webhook_stats),
            }
