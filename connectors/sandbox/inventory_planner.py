"""Inventory Planner emulator.

Confirmed from Inventory Planner's public API article: base ``https://app.inventory-planner.com/``,
collection resources under ``api/v1/<plural>`` (``variants``, ``purchase-orders``), authentication by two
headers ``Authorization: <API key>`` and ``Account: <account id>``, JSON bodies, and variant fields
``id, sku, lead_time, review_period, replenishment, oos`` with ``vendors`` (``vendor_id``, ``vendor_name``,
``cost_price``, ``vendor_packaging`` …). The response envelope (``{"meta": {...}, "variants": [...]}``,
``{"result": {"status": "error", "message"}}``) follows the article's "result document".

**Modelled** (not published — Inventory Planner ingests sales from connected platforms / CSV): the
demand feed ``POST api/v1/sales-orders`` with ``{"sales-orders": [line, ...]}`` (≤ 500 per request),
each line upserted by its ``id`` (the hub's order-line key), so replays never double-count.

Recommendation maths (emulated): per (sku, warehouse) ``replenishment = max(0, net demand − stock)``,
where net demand = sale lines − return lines, and stock comes from ``seed_variants``.

Control: seed_variants {"variants": [{"sku", "warehouse", "stock", "vendor", "lead_time"}]}, state.
"""
from __future__ import annotations

from datetime import datetime, timezone

from .server import Emulator, HttpError, Request, Response, route

API = r"/api/v1"
DEFAULT_KEY = "ip-demo-key"  # what seed_demo configures
DEFAULT_ACCOUNT = "demo-account"
MAX_LINES = 500


def _err(status: int, message: str) -> HttpError:
    return HttpError(status, {"result": {"status": "error", "message": message}})


class InventoryPlannerEmulator(Emulator):
    prefix = "inventory_planner"

    def reset(self):
        self.api_key, self.account = DEFAULT_KEY, DEFAULT_ACCOUNT
        self.lines: dict[str, dict] = {}
        self.variants: dict[tuple[str, str], dict] = {}
        self.posts = 0

    def error_body(self, status, message, code=""):
        return {"result": {"status": "error", "message": message}}

    def _auth(self, req: Request):
        if req.header("Authorization") != self.api_key or req.header("Account") != self.account:
            raise _err(401, "Invalid API key or account")

    @route("POST", API + r"/sales-orders")
    def post_sales_orders(self, req):
        self._auth(req)
        body = req.json()
        lines = body.get("sales-orders") if isinstance(body, dict) else None
        if not isinstance(lines, list):
            raise _err(400, "Body must be {\"sales-orders\": [...]}")
        if len(lines) > MAX_LINES:
            raise _err(400, f"At most {MAX_LINES} sales-orders per request")
        bad = [i for i, l in enumerate(lines) if not isinstance(l, dict) or not l.get("id") or not l.get("sku")
               or isinstance(l.get("quantity"), bool) or not isinstance(l.get("quantity"), int) or l.get("type") not in ("sale", "return")]
        if bad:
            raise _err(422, f"Invalid sales-orders at index {bad[:10]}: id, sku, integer quantity and type sale|return are required")
        created = updated = 0
        with self.lock:
            self.posts += 1
            for line in lines:
                if line["id"] in self.lines:
                    updated += 1
                else:
                    created += 1
                self.lines[line["id"]] = dict(line)
        return Response(200, {"result": {"status": "success"}, "meta": {"created": created, "updated": updated}})

    def _recommendations(self) -> list[dict]:
        demand: dict[tuple[str, str], int] = {}
        for line in self.lines.values():
            key = (line["sku"], line.get("warehouse") or "")
            sign = -1 if line["type"] == "return" else 1
            demand[key] = demand.get(key, 0) + sign * abs(int(line["quantity"]))
        out = []
        keys = sorted(set(demand) | set(self.variants))
        for i, key in enumerate(keys, start=1):
            v = self.variants.get(key, {})
            net, stock = demand.get(key, 0), int(v.get("stock", 0))
            vendor = v.get("vendor", "")
            out.append({"id": f"{i}_{key[1] or 'default'}", "sku": key[0], "warehouse": key[1],
                        "replenishment": max(0, net - stock), "oos": 0 if stock <= 0 else max(1, stock * 30 // max(1, net)),
                        "lead_time": int(v.get("lead_time", 14)), "review_period": 30, "stock_on_hand": stock,
                        "vendors": [{"vendor_id": vendor.lower(), "vendor_name": vendor, "cost_price": v.get("cost_price")}] if vendor else []})
        return out

    @route("GET", API + r"/variants")
    def list_variants(self, req):
        self._auth(req)
        page, limit = max(0, int(req.q("page", "0"))), min(1000, int(req.q("limit", "100")))
        with self.lock:
            rows = self._recommendations()
        gt = req.q("replenishment_gt")
        if gt is not None:
            rows = [r for r in rows if r["replenishment"] > int(gt)]
        chunk = rows[page * limit:(page + 1) * limit]
        return Response(200, {"meta": {"name": "variants", "total": len(rows), "count": len(chunk), "limit": limit, "page": page},
                              "variants": chunk})

    # --- control --------------------------------------------------------------------------------------
    def control_set_credentials(self, payload):
        with self.lock:
            self.api_key = payload.get("key") or DEFAULT_KEY
            self.account = payload.get("account") or DEFAULT_ACCOUNT
        return {"ok": True}

    def control_seed_variants(self, payload):
        with self.lock:
            for v in payload.get("variants") or []:
                self.variants[(str(v["sku"]), str(v.get("warehouse") or ""))] = dict(v)
        return {"variants": len(self.variants)}

    def control_state(self, payload):
        with self.lock:
            return {"demand_lines": len(self.lines), "lines": {k: dict(v) for k, v in self.lines.items()},
                    "posts": self.posts, "recommendations": [r for r in self._recommendations() if r["replenishment"] > 0],
                    "at": datetime.now(timezone.utc).isoformat()}
