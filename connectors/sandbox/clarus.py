"""Clarus WMS emulator on the published API (documentation.claruswms.com; see :mod:`connectors.clarus` for
the documents and for what in them is unconfirmed). Served under ``/clarus``:

  POST /oauth/token                      OAuth 2 client credentials (form or JSON) → {access_token, token_type, expires_in}
  every other call                       ``Authorization: Bearer <token>`` **and** ``X-Clarus-Subdomain`` (401 / 400 without)
  POST /api/products                     JSON:API ``{"data": {"type": "products", "attributes": {"code", "description", …}}}``
                                         → 201 with the product id; a code already taken → 422
  POST /api/goods_outs                   JSON:API goods out: ``goods_out_type`` (sales_order | work_order | crossdock),
                                         ``account_id``, ``warehouse_id``, ``reference`` (≤ 50 characters),
                                         ``expected_date_of_dispatch`` (date-time), ``lines_changes`` [{type: ADD,
                                         attributes: {product_id, order_quantity}}] and a related ``address`` — the
                                         Goods Out core resource's required fields; a missing one, or unknown product /
                                         account / warehouse ids → 422. A repeated
                                         ``reference`` is **not** refused: a second goods out is created (the documents
                                         say nothing about uniqueness — the connector looks the reference up first).
                                         Intake **allocates** what is free (status ALLOCATED, else PENDING).
  POST /api/goods_outs/{id}/cancel       as documented: DRAFT / PENDING → deleted; ALLOCATED / PICK → CANCELLED and
                                         deallocated; COMPLETED → 422 (already dispatched)
  POST /graphql                          read API: ``stock_balances``, ``stocks``, ``goods_outs``, ``goods_out_lines``,
                                         ``products`` — ``{root: {all: {edges: [{node}]}}}``, filters ``eq`` / ``in``
Webhooks (``configure_webhooks`` {"stock_url", "dispatch_url"}): the full record, with Clarus's identification headers
``X-ClarusWMS-Domain``, ``-API-Domain``, ``-Subdomain``, ``-Automation-ID`` (one automation per trigger: 41 stock
adjustment, 42 stock hold, 43 sales order completed) and ``-Integration-ID``; no signature (Clarus sends none).

Hub states ↔ Clarus stock status: available ↔ ``available``, inspection ↔ ``quarantine``, damaged ↔ ``damaged``,
in_transit ↔ ``in_transit``. Control: seed_locations (warehouses), seed_stock, set_stock (pushes adjustment / hold
events), dispatch {"order_ref", "parcels", "close_manifest": true} (picks; completes — dispatches — unless
``close_manifest`` is false), close_manifest {"manifest_id": <goods out id>} (completes), configure_webhooks, state.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone

import requests

from .common import MasterEmulator
from .server import HttpError, Request, Response, route

DEFAULT_CLIENT, DEFAULT_SECRET, DEFAULT_SUBDOMAIN = "hub-demo", "clarus-demo-key", "demo"
DEFAULT_KEY = DEFAULT_SECRET  # what seed_demo configures as the connection secret
ACCOUNT_ID = "1"
HUB_TO_WIRE = {"available": "available", "inspection": "quarantine", "damaged": "damaged", "in_transit": "in_transit"}
HEADERS = {
    "X-ClarusWMS-Domain": "https://demo.claruswms.co.uk",
    "X-ClarusWMS-API-Domain": "https://clarus-api.com",
    "X-ClarusWMS-Subdomain": DEFAULT_SUBDOMAIN,
    "X-ClarusWMS-Integration-ID": "7",
}
AUTOMATIONS = {"stock_adjustment": "41", "stock_hold": "42", "sales_order_completed": "43"}
GOODS_OUT_TYPES = ("sales_order", "work_order", "crossdock")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _err(status: int, detail: str, code: str = "") -> HttpError:
    return HttpError(
        status, {"errors": [{"status": str(status), "code": code or str(status), "title": detail, "detail": detail}]}
    )


class ClarusEmulator(MasterEmulator):
    prefix = "clarus"
    exempt_patterns = (r"^/oauth/token$",)

    def reset(self):
        self.reset_master(DEFAULT_SECRET)
        self.clients = {DEFAULT_CLIENT: DEFAULT_SECRET}
        self.subdomain = DEFAULT_SUBDOMAIN
        self.tokens: dict[str, float] = {}
        self.products: dict[str, dict] = {}  # id → {id, code, description, barcode, external_system_reference1}
        self.product_seq = itertools.count(1001)
        self.stock: dict[tuple[str, str, str], int] = {}  # (product code, warehouse id, status) → units on hand
        self.allocated: dict[tuple[str, str], int] = {}  # (product code, warehouse id) → units allocated to goods outs
        self.goods_outs: dict[str, dict] = {}
        self.goods_out_seq = itertools.count(3001)
        self.receipts: dict[str, int] = {}  # reference → goods out POSTs received
        self.webhooks = {"stock_url": "", "dispatch_url": "", "secret": ""}

    def error_body(self, status, message, code=""):
        return {"errors": [{"status": str(status), "code": code or str(status), "title": message, "detail": message}]}

    # --- auth ------------------------------------------------------------------------------------------
    @route("POST", r"/oauth/token")
    def token(self, req):
        ctype = req.header("Content-Type")
        body = req.json() if "json" in ctype else req.form()
        body = body or {}
        if body.get("grant_type") != "client_credentials":
            raise HttpError(400, {"error": "unsupported_grant_type"})
        with self.lock:
            if self.clients.get(body.get("client_id")) != body.get("client_secret"):
                raise HttpError(401, {"error": "invalid_client"})
            token = uuid.uuid4().hex
            self.tokens[token] = time.time() + 7200
        return Response(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": 7200, "created_at": int(time.time())}
        )

    def _auth(self, req: Request):
        bearer = req.header("Authorization")
        with self.lock:
            expiry = self.tokens.get(bearer[7:].strip()) if bearer.startswith("Bearer ") else None
            if expiry is None or expiry < time.time():
                raise _err(401, "Invalid or expired access token", "unauthorized")
            if req.header("X-Clarus-Subdomain") != self.subdomain:
                raise _err(401, "Missing or unknown X-Clarus-Subdomain", "unknown_subdomain")

    def _data(self, req, kind: str) -> dict:
        body = req.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != kind or not isinstance(data.get("attributes"), dict):
            raise _err(400, f'Body must be {{"data": {{"type": "{kind}", "attributes": {{...}}}}}}', "invalid_document")
        return data

    # --- products --------------------------------------------------------------------------------------------
    @route("POST", r"/api/products")
    def create_product(self, req):
        self._auth(req)
        a = self._data(req, "products")["attributes"]
        if not a.get("code") or not a.get("description"):
            raise _err(422, "code and description are required", "validation_failed")
        with self.lock:
            if any(p["code"] == a["code"] for p in self.products.values()):
                raise _err(422, f"code {a['code']} has already been taken", "taken")
            pid = str(next(self.product_seq))
            self.products[pid] = {
                "id": pid,
                "code": str(a["code"]),
                "description": str(a["description"]),
                "barcode": a.get("barcode") or "",
                "external_system_reference1": a.get("external_system_reference1") or "",
            }
        return Response(201, {"data": {"id": int(pid), "type": "products", "attributes": dict(self.products[pid])}})

    # --- goods outs -------------------------------------------------------------------------------------------
    def _free(self, code, wh) -> int:
        return self.stock.get((code, wh, "available"), 0) - self.allocated.get((code, wh), 0)

    @route("POST", r"/api/goods_outs")
    def create_goods_out(self, req):
        self._auth(req)
        data = self._data(req, "goods_outs")
        a = data["attributes"]
        address = (((data.get("relationships") or {}).get("address") or {}).get("data") or {}).get("attributes") or {}
        problems = []
        with self.lock:
            if str(a.get("account_id")) != ACCOUNT_ID:
                problems.append(f"account_id {a.get('account_id')!r} is unknown")
            wh = str(a.get("warehouse_id"))
            if wh not in self.locations:
                problems.append(f"warehouse_id {a.get('warehouse_id')!r} is unknown")
            if not a.get("reference"):
                problems.append("reference is required")
            elif not isinstance(a["reference"], str) or len(a["reference"]) > 50:
                problems.append("reference is a string of at most 50 characters")
            if a.get("goods_out_type") not in GOODS_OUT_TYPES:
                problems.append(f"goods_out_type must be one of {', '.join(GOODS_OUT_TYPES)}")
            try:
                due = datetime.fromisoformat(str(a.get("expected_date_of_dispatch") or "").replace("Z", "+00:00"))
                if due.tzinfo is None:
                    raise ValueError
            except ValueError:
                problems.append("expected_date_of_dispatch is required (an ISO 8601 date-time)")
            changes = a.get("lines_changes")
            if not isinstance(changes, list) or not changes:
                problems.append("lines_changes needs at least one ADD")
                changes = []
            lines = []
            for i, ch in enumerate(changes):
                la = ch.get("attributes") if isinstance(ch, dict) else None
                if not isinstance(ch, dict) or ch.get("type") != "ADD" or not isinstance(la, dict):
                    problems.append(f"lines_changes[{i}] must be {{type: ADD, attributes}}")
                    continue
                product = self.products.get(str(la.get("product_id")))
                qty = la.get("order_quantity")
                if product is None:
                    problems.append(f"lines_changes[{i}].product_id {la.get('product_id')!r} does not exist")
                if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                    problems.append(f"lines_changes[{i}].order_quantity must be a positive integer")
                if product is not None and not problems:
                    lines.append(
                        {
                            "id": f"{next(self.goods_out_seq)}",
                            "product_id": product["id"],
                            "code": product["code"],
                            "order_quantity": qty,
                            "allocated_quantity": 0,
                            "pick_quantity": 0,
                            "dispatch_quantity": 0,
                            "attributes": dict(la),
                        }
                    )
            for f in ("name", "address_1", "postcode", "country_code"):
                if not address.get(f):
                    problems.append(f"address.{f} is required")
            ref = str(a.get("reference") or "")
            self.receipts[ref] = self.receipts.get(ref, 0) + 1
            if problems:
                raise _err(422, "; ".join(problems), "validation_failed")
            gid = str(next(self.goods_out_seq))
            full = True
            for line in lines:
                take = max(0, min(line["order_quantity"], self._free(line["code"], wh)))
                line["allocated_quantity"] = take
                self.allocated[(line["code"], wh)] = self.allocated.get((line["code"], wh), 0) + take
                full = full and take == line["order_quantity"]
            g = {
                "id": gid,
                "reference": ref,
                "goods_out_status_code": "ALLOCATED" if full else "PENDING",
                "account_id": ACCOUNT_ID,
                "warehouse_id": wh,
                "attributes": {k: v for k, v in a.items() if k != "lines_changes"},
                "address": dict(address),
                "lines": lines,
                "actual_date_of_dispatch": None,
                "created_at": _now(),
                "parcels": [],
            }
            self.goods_outs[gid] = g
        return Response(201, {"data": self._document(g)})

    def _document(self, g) -> dict:
        attrs = dict(
            g["attributes"],
            reference=g["reference"],
            goods_out_status_code=g["goods_out_status_code"],
            account_id=int(ACCOUNT_ID),
            warehouse_id=g["warehouse_id"],
            actual_date_of_dispatch=g["actual_date_of_dispatch"],
            lines_changes=[
                {
                    "id": int(ln["id"]),
                    "attributes": {
                        "product_id": int(ln["product_id"]),
                        "order_quantity": ln["order_quantity"],
                        **ln["attributes"],
                    },
                }
                for ln in g["lines"]
            ],
        )
        return {"id": int(g["id"]), "type": "goods_outs", "attributes": attrs}

    def _release(self, g) -> None:
        for line in g["lines"]:
            key = (line["code"], g["warehouse_id"])
            self.allocated[key] = max(0, self.allocated.get(key, 0) - line["allocated_quantity"])
            line["allocated_quantity"] = 0

    @route("POST", r"/api/goods_outs/(?P<gid>\d+)/cancel")
    def cancel_goods_out(self, req):
        self._auth(req)
        with self.lock:
            g = self.goods_outs.get(req.params["gid"])
            if g is None:
                raise _err(404, f"Goods out {req.params['gid']} not found", "not_found")
            status = g["goods_out_status_code"]
            if status == "COMPLETED":
                raise _err(422, "Cannot cancel - already dispatched", "already_dispatched")
            self._release(g)
            if status in ("DRAFT", "PENDING"):
                del self.goods_outs[g["id"]]
                return Response(
                    200, {"data": {"id": int(g["id"]), "type": "goods_outs", "attributes": {"deleted": True}}}
                )
            g["goods_out_status_code"] = "CANCELLED"
        return Response(200, {"data": self._document(g)})

    # --- GraphQL ---------------------------------------------------------------------------------------------
    ROOTS = ("stock_balances", "stocks", "goods_out_lines", "goods_outs", "products")

    @staticmethod
    def _match(node: dict, flt: dict) -> bool:
        for field, cond in (flt or {}).items():
            value = node.get(field)
            if not isinstance(cond, dict):
                return False
            if "eq" in cond and str(value) != str(cond["eq"]):
                return False
            if "in" in cond and str(value) not in {str(x) for x in cond["in"]}:
                return False
            if "from" in cond and (value is None or str(value) < str(cond["from"])):
                return False
        return True

    def _nodes(self, root: str) -> list[dict]:
        if root == "products":
            return [
                {
                    "id": p["id"],
                    "code": p["code"],
                    "description": p["description"],
                    "barcode": p.get("barcode") or None,
                    "product_id": p["id"],
                }
                for p in self.products.values()
            ]
        by_code = {p["code"]: p["id"] for p in self.products.values()}
        if root == "stock_balances":
            keys = sorted({(c, w) for c, w, s in self.stock if s == "available"} | set(self.allocated))
            return [
                {
                    "available": self._free(c, w),
                    "allocated": self.allocated.get((c, w), 0),
                    "ordered": 0,
                    "received": 0,
                    "picked": 0,
                    "product": {"id": by_code.get(c, ""), "code": c},
                    "account": {"id": ACCOUNT_ID, "code": "HUB"},
                    "warehouse": {"id": w},
                    "product_code": c,
                    "product_id": by_code.get(c, ""),
                    "warehouse_id": w,
                    "account_id": ACCOUNT_ID,
                }
                for c, w in keys
            ]
        if root == "stocks":
            return [
                {
                    "id": f"{c}|{w}|{s}",
                    "quantity": q,
                    "status": s,
                    "fifo_date": None,
                    "product": {"id": by_code.get(c, ""), "code": c},
                    "location": {"id": w, "code": f"{w}-BULK"},
                    "warehouse": {"id": w},
                    "account": {"id": ACCOUNT_ID, "code": "HUB"},
                    "product_code": c,
                    "product_id": by_code.get(c, ""),
                    "warehouse_id": w,
                    "status_code": s,
                    "account_id": ACCOUNT_ID,
                }
                for (c, w, s), q in sorted(self.stock.items())
            ]
        if root == "goods_outs":
            return [
                {
                    "id": g["id"],
                    "reference": g["reference"],
                    "goods_out_status": {"code": g["goods_out_status_code"]},
                    "external_system_reference1": g["attributes"].get("external_system_reference1"),
                    "goods_out_status_code": g["goods_out_status_code"],
                    "actual_date_of_dispatch": g["actual_date_of_dispatch"],
                    "account_id": ACCOUNT_ID,
                    "warehouse_id": g["warehouse_id"],
                    "warehouse": {"id": g["warehouse_id"]},
                    "parcels": [dict(p) for p in g["parcels"]],
                }
                for g in self.goods_outs.values()
            ]
        if root == "goods_out_lines":
            return [
                {
                    "id": ln["id"],
                    "order_quantity": ln["order_quantity"],
                    "allocated_quantity": ln["allocated_quantity"],
                    "pick_quantity": ln["pick_quantity"],
                    "dispatch_quantity": ln["dispatch_quantity"],
                    "short_status": "",
                    "product": {"id": ln["product_id"], "code": ln["code"]},
                    "goods_out": {"id": g["id"], "reference": g["reference"]},
                    "goods_out_id": g["id"],
                }
                for g in self.goods_outs.values()
                for ln in g["lines"]
            ]
        return []

    @route("POST", r"/graphql")
    def graphql(self, req):
        self._auth(req)
        body = req.json()
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, str):
            raise HttpError(400, {"errors": [{"message": "query is required"}]})
        root = next((r for r in self.ROOTS if re.search(rf"\b{r}\b\s*{{", query)), None)
        if root is None:
            return Response(200, {"errors": [{"message": "unknown field"}]})
        flt = ((body.get("variables") or {}).get("filter")) or {}
        with self.lock:
            nodes = [n for n in self._nodes(root) if self._match(n, flt)]
        return Response(200, {"data": {root: {"all": {"edges": [{"node": n} for n in nodes]}}}})

    # --- webhooks --------------------------------------------------------------------------------------------
    def _push(self, kind: str, trigger: str, record: dict) -> None:
        url = self.webhooks.get(f"{kind}_url")
        if not url:
            return
        headers = {
            "Content-Type": "application/json",
            **HEADERS,
            "X-ClarusWMS-Subdomain": self.subdomain,
            "X-ClarusWMS-Automation-ID": AUTOMATIONS[trigger],
        }
        try:
            status = requests.post(url, data=json.dumps(record, default=str), headers=headers, timeout=5).status_code
        except requests.RequestException:
            status = 0
        with self.lock:
            self.webhook_log.append((kind, status))

    def _stock_record(self, code, wh, status) -> dict:
        by_code = {p["code"]: p["id"] for p in self.products.values()}
        return {
            "data": {
                "type": "stocks",
                "id": f"{code}|{wh}|{status}",
                "attributes": {
                    "quantity": self.stock.get((code, wh, status), 0),
                    "status": status,
                    "product": {"id": by_code.get(code, ""), "code": code},
                    "warehouse": {"id": wh},
                    "location": {"code": f"{wh}-BULK"},
                    "updated_at": _now(),
                },
            }
        }

    def _goods_out_record(self, g) -> dict:
        doc = self._document(g)
        doc["attributes"]["lines"] = [
            {
                "product": {"id": ln["product_id"], "code": ln["code"]},
                "order_quantity": ln["order_quantity"],
                "pick_quantity": ln["pick_quantity"],
                "dispatch_quantity": ln["dispatch_quantity"],
            }
            for ln in g["lines"]
        ]
        doc["attributes"]["parcels"] = [dict(p) for p in g["parcels"]]
        return {"data": doc}

    # --- control ---------------------------------------------------------------------------------------------
    def _rows(self, payload):
        return [
            (
                str(r["sku"]),
                str(r["location"]),
                HUB_TO_WIRE.get(r.get("state") or "available", r.get("state")),
                int(r["quantity"]),
            )
            for r in payload.get("rows") or []
        ]

    def control_set_product(self, payload):
        """Change a product's description / barcode as someone in the WMS would (master data drift tests)."""
        with self.lock:
            p = next((p for p in self.products.values() if p["code"] == str(payload["code"])), None)
            if p is None:
                raise HttpError(404, {"errors": [{"status": "404", "title": f"no product {payload['code']}"}]})
            p.update({k: payload[k] for k in ("description", "barcode") if k in payload})
            return dict(p)

    def control_seed_stock(self, payload):
        with self.lock:
            for code, wh, status, qty in self._rows(payload):
                self.stock[(code, wh, status)] = qty
        return {"stock_rows": len(self.stock)}

    def control_set_stock(self, payload):
        events = []
        with self.lock:
            for code, wh, status, qty in self._rows(payload):
                self.stock[(code, wh, status)] = qty
                events.append(
                    (
                        "stock_adjustment" if status == "available" else "stock_hold",
                        self._stock_record(code, wh, status),
                    )
                )
        for trigger, record in events:
            self._push("stock", trigger, record)
        return {"events": len(events)}

    def control_dispatch(self, payload):
        ref = payload.get("order_ref")
        with self.lock:
            g = next(
                (
                    g
                    for g in self.goods_outs.values()
                    if g["reference"] == ref and g["goods_out_status_code"] != "CANCELLED"
                ),
                None,
            )
            if g is None:
                raise _err(404, f"No goods out with reference {ref}", "not_found")
            for i, p in enumerate(payload.get("parcels") or [{}]):
                carrier = p.get("carrier") or "DPD"
                g["parcels"].append(
                    {
                        "carrier": carrier,
                        "tracking_number": p.get("tracking_number") or f"{carrier[:3].upper()}{g['id']}{i}",
                        "tracking_url": p.get("tracking_url") or "",
                    }
                )
            for line in g["lines"]:
                line["pick_quantity"] = line["order_quantity"]
            g["goods_out_status_code"] = "PICK"
        if payload.get("close_manifest", True):
            return self.control_close_manifest({"manifest_id": g["id"]})
        return {"manifest_id": g["id"], "manifest_closed": False}

    def control_close_manifest(self, payload):
        """Complete (dispatch) a picked goods out: stock leaves, the 'sales order completed' event fires."""
        with self.lock:
            g = self.goods_outs.get(str(payload["manifest_id"]))
            if g is None:
                raise _err(404, f"No goods out {payload['manifest_id']}", "not_found")
            if g["goods_out_status_code"] != "COMPLETED":
                for line in g["lines"]:
                    key = (line["code"], g["warehouse_id"])
                    line["dispatch_quantity"] = line["pick_quantity"] or line["order_quantity"]
                    self.stock[(line["code"], g["warehouse_id"], "available")] = (
                        self.stock.get((line["code"], g["warehouse_id"], "available"), 0) - line["dispatch_quantity"]
                    )
                    self.allocated[key] = max(0, self.allocated.get(key, 0) - line["allocated_quantity"])
                    line["allocated_quantity"] = 0
                g["goods_out_status_code"] = "COMPLETED"
                g["actual_date_of_dispatch"] = _now()
            record = self._goods_out_record(g)
        threading.Thread(
            target=self._push, args=("dispatch", "sales_order_completed", record), daemon=True
        ).start() if payload.get("async") else self._push("dispatch", "sales_order_completed", record)
        return {"manifest_id": g["id"], "manifest_closed": True, "dispatch_id": g["id"]}

    def control_set_credentials(self, payload):
        with self.lock:
            self.clients = {payload.get("client_id") or DEFAULT_CLIENT: payload.get("client_secret") or DEFAULT_SECRET}
            self.subdomain = payload.get("subdomain") or DEFAULT_SUBDOMAIN
            self.tokens.clear()
        return {"ok": True}

    def control_state(self, payload):
        with self.lock:
            by_ref: dict[str, dict] = {}
            for g in self.goods_outs.values():
                by_ref[g["reference"]] = {
                    "id": g["id"],
                    "status": g["goods_out_status_code"],
                    "attributes": dict(g["attributes"]),
                    "address": dict(g["address"]),
                    "lines": [dict(ln) for ln in g["lines"]],
                    "dispatched": {ln["code"]: ln["dispatch_quantity"] for ln in g["lines"] if ln["dispatch_quantity"]},
                }
            return {
                "orders": by_ref,
                "goods_outs": len(self.goods_outs),
                "order_receipts": dict(self.receipts),
                "products": {p["code"]: p["id"] for p in self.products.values()},
                "stock": {f"{k[0]}@{k[1]}:{k[2]}": v for k, v in self.stock.items()},
                "allocated": {f"{k[0]}@{k[1]}": v for k, v in self.allocated.items() if v},
                "webhooks": list(self.webhook_log),
            }
