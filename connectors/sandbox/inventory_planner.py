"""Inventory Planner emulator, on the published shapes (see :mod:`connectors.inventory_planner` for the
documents and what in them is unconfirmed).

API (below ``/inventory_planner``; every call needs ``Authorization: <API key>`` and ``Account: <id>``):

  GET  /api/v1/variants?page=&limit=&replenishment_gt=&fields=   Reports API: ``{"meta": {...}, "variants": [...]}``;
       a variant has ``id, sku, replenishment`` (all warehouses), ``oos, lead_time, review_period``, ``warehouse`` — a
       list of per-warehouse blocks ``{"warehouse", "replenishment", "oos", "lead_time", "in_stock"}`` — and
       ``vendors`` ``[{"vendor_id": <vendor name, lower case>, "vendor_name": <vendor's title for the variant>,
       "cost_price"}]``.
  GET  /api/v1/purchase-orders?page=&limit=                      Stock Orders API: ``{"meta", "purchase-orders": [...]}``
  POST /api/v1/sales-orders                                      **404**: not an endpoint of the public API — sales
       reach Inventory Planner as files only.

Files (how demand gets in):

- Starter CSV connector: control ``pull {"products_url", "sales_orders_url", "warehouse", "username", "password"}``
  does what the planner does daily — ``HEAD`` then ``GET`` each URL (HTTP basic auth when given) — and replaces
  everything that connector (= ``warehouse``) held: the files are complete.
- Advanced CSV connector: control ``ingest {"kind": "warehouses"|"variants"|"variant_warehouses"|"sales_orders",
  "text": "<csv>"}`` takes one uploaded file (incremental: rows upsert by id, ``REMOVED = true`` removes). A file
  with a missing required column or an unsupported column is not processed; sales-order rows naming a variant or
  warehouse not loaded before are not processed either (the published load order).

Recommendation maths (emulated): per (sku, warehouse) ``replenishment = max(0, net demand − stock)``, where net
demand = the quantities of the sales-order rows (returns are negative), and stock comes from ``seed_variants``
(else the products file's ``stock_quantity`` / the variant-warehouse file's ``IN_STOCK``).

Control: seed_variants {"variants": [{"sku", "warehouse", "stock", "vendor", "lead_time"}]}, seed_purchase_orders
{"orders": [...]} (rows as the API answers them), pull, ingest, set_credentials, state.
"""

from __future__ import annotations

import base64
import csv
import io
import urllib.error
import urllib.request
from datetime import datetime, timezone

from .server import Emulator, HttpError, Request, Response, route

API = r"/api/v1"
DEFAULT_KEY = "ip-demo-key"  # what seed_demo configures
DEFAULT_ACCOUNT = "demo-account"

FILES = {  # kind → (required columns, optional columns, id columns)
    "sales_orders": (
        (
            "ORDER_ID",
            "ID",
            "VARIANT_ID",
            "WAREHOUSE",
            "CURRENCY",
            "QUANTITY",
            "PRICE",
            "CREATED_AT",
            "REMOVED",
            "UPDATED_AT",
        ),
        (
            "REFERENCE",
            "REFERENCE2",
            "ORIGINAL_COST_PRICE",
            "CUSTOMER",
            "DISCOUNT",
            "TAX",
            "TAX_INCLUDED",
            "SHIPPING",
            "SHIPPING_TAX",
            "CANCELLED",
        ),
        ("ORDER_ID",),
    ),
    "variants": (
        ("VARIANT_ID", "SKU", "TITLE", "BARCODE", "PRODUCT_ID", "PRICE", "CREATED_AT", "UPDATED_AT", "REMOVED"),
        ("TYPE", "IMAGE", "HANDLE"),
        ("VARIANT_ID",),
    ),
    "warehouses": (
        ("WAREHOUSE_ID", "DISPLAY_NAME", "UPDATED_AT", "REMOVED"),
        ("CURRENCY", "BILLING_ADDRESS", "SHIPPING_ADDRESS"),
        ("WAREHOUSE_ID",),
    ),
    "variant_warehouses": (
        ("VARIANT_ID", "WAREHOUSE_ID", "IN_STOCK", "REMOVED", "UPDATED_AT"),
        ("GROSS_WEIGHT", "MIN_STOCK", "MAX_STOCK", "MAX_ORDER", "TRANSFER_UOM"),
        ("VARIANT_ID", "WAREHOUSE_ID"),
    ),
    "products": (
        ("product_id", "title", "price", "SKU", "created_at", "stock_quantity"),
        (
            "regular_price",
            "cost_price",
            "barcode",
            "updated_at",
            "managing_stock",
            "vendor",
            "permalink",
            "categories",
            "tags",
            "brand",
            "variant_id",
            "option1",
            "option2",
            "option3",
        ),
        ("SKU",),
    ),
}


def _err(status: int, message: str) -> HttpError:
    return HttpError(status, {"result": {"status": "error", "message": message}})


def _rows(kind: str, text: str) -> list[dict]:
    required, optional, _ = FILES[kind]
    reader = csv.DictReader(io.StringIO(text))
    cols = reader.fieldnames or []
    missing, unsupported = [c for c in required if c not in cols], [c for c in cols if c not in required + optional]
    if missing or unsupported:
        raise ValueError(f"{kind} file not processed: missing {missing}, unsupported {unsupported}")
    return list(reader)


def _float(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not a number") from None


class InventoryPlannerEmulator(Emulator):
    prefix = "inventory_planner"

    def reset(self):
        self.api_key, self.account = DEFAULT_KEY, DEFAULT_ACCOUNT
        self.lines: dict[str, dict] = {}
        self.variants: dict[tuple[str, str], dict] = {}  # seeded planning settings per (sku, warehouse)
        self.catalogue: dict[str, dict] = {}  # variant id → row (variants / products files)
        self.warehouses: dict[str, dict] = {}
        self.file_stock: dict[tuple[str, str], float] = {}
        self.purchase_orders: list[dict] = []
        self.pulls = 0
        self.files: list[dict] = []  # every file seen: kind, processed, rows, reason
        self.refused_posts = 0

    def error_body(self, status, message, code=""):
        return {"result": {"status": "error", "message": message}}

    def _auth(self, req: Request):
        if req.header("Authorization") != self.api_key or req.header("Account") != self.account:
            raise _err(401, "Invalid API key or account")

    # --- API ----------------------------------------------------------------------------------------------
    @route("POST", API + r"/sales-orders")
    def post_sales_orders(self, req):
        with self.lock:
            self.refused_posts += 1
        raise _err(
            404, "Not found: sales orders reach Inventory Planner through a connection (CSV connector), not the API"
        )

    def _recommendations(self) -> list[dict]:
        demand: dict[tuple[str, str], float] = {}
        for line in self.lines.values():
            key = (line["sku"], line["warehouse"])
            demand[key] = demand.get(key, 0) + line["quantity"]
        per_sku: dict[str, list] = {}
        for key in sorted(set(demand) | set(self.variants)):
            v = self.variants.get(key, {})
            stock = v["stock"] if "stock" in v else self.file_stock.get(key, 0)
            net = demand.get(key, 0)
            per_sku.setdefault(key[0], []).append(
                {
                    "warehouse": key[1],
                    "replenishment": int(max(0, net - stock)),
                    "in_stock": stock,
                    "oos": 0 if stock <= 0 else int(max(1, stock * 30 // max(1, net))),
                    "lead_time": int(v.get("lead_time", 14)),
                    "vendor": v.get("vendor", ""),
                    "cost_price": v.get("cost_price"),
                }
            )
        out = []
        for i, (sku, blocks) in enumerate(sorted(per_sku.items()), start=1):
            vendor = next((b["vendor"] for b in blocks if b["vendor"]), "")
            out.append(
                {
                    "id": f"v{i}",
                    "sku": sku,
                    "replenishment": sum(b["replenishment"] for b in blocks),
                    "oos": min(b["oos"] for b in blocks),
                    "lead_time": max(b["lead_time"] for b in blocks),
                    "review_period": 30,
                    "warehouse": [
                        {k: b[k] for k in ("warehouse", "replenishment", "oos", "lead_time", "in_stock")}
                        for b in blocks
                    ],
                    "vendors": [
                        {
                            "vendor_id": vendor.lower(),
                            "vendor_name": f"{vendor} item {sku}",
                            "cost_price": next((b["cost_price"] for b in blocks if b["cost_price"] is not None), None),
                        }
                    ]
                    if vendor
                    else [],
                }
            )
        return out

    def _page(self, req, name: str, rows: list):
        page, limit = max(0, int(req.q("page", "0"))), max(1, min(1000, int(req.q("limit", "100"))))
        chunk = rows[page * limit : (page + 1) * limit]
        return Response(
            200,
            {
                "meta": {"name": name, "total": len(rows), "count": len(chunk), "limit": limit, "page": page},
                name: chunk,
            },
        )

    @route("GET", API + r"/variants")
    def list_variants(self, req):
        self._auth(req)
        with self.lock:
            rows = self._recommendations()
        gt = req.q("replenishment_gt")
        if gt is not None:
            rows = [r for r in rows if r["replenishment"] > int(gt)]
        fields = req.q("fields")
        if fields:
            keep = set(fields.split(","))
            rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        return self._page(req, "variants", rows)

    @route("GET", API + r"/purchase-orders")
    def list_purchase_orders(self, req):
        self._auth(req)
        with self.lock:
            rows = [dict(r) for r in self.purchase_orders]
        return self._page(req, "purchase-orders", rows)

    # --- files ---------------------------------------------------------------------------------------------
    def _sales_line(self, row: dict) -> dict:
        qty = _float(row["QUANTITY"], "QUANTITY")
        return {
            "order_id": row["ID"],
            "sku": row["VARIANT_ID"],
            "warehouse": row["WAREHOUSE"],
            "currency": row["CURRENCY"],
            "quantity": int(qty) if qty.is_integer() else qty,
            "price": row["PRICE"],
            "created_at": row["CREATED_AT"],
            "updated_at": row["UPDATED_AT"],
            "reference": row.get("REFERENCE", ""),
            "channel": row.get("REFERENCE2", ""),
            "type": "return" if qty < 0 else "sale",
            "connector": row.get("_connector", ""),
        }

    def _ingest(self, kind: str, text: str, connector: str = "") -> dict:
        """Caller holds the lock."""
        try:
            rows = _rows(kind, text)
            if kind == "sales_orders":
                unknown = sorted(
                    {r["VARIANT_ID"] for r in rows if r["VARIANT_ID"] not in self.catalogue}
                    | {r["WAREHOUSE"] for r in rows if connector == "" and r["WAREHOUSE"] not in self.warehouses}
                )
                if unknown:
                    raise ValueError(
                        f"sales_orders file not processed: variants / warehouses not loaded first: {unknown[:10]}"
                    )
                lines = {
                    r["ORDER_ID"]: self._sales_line({**r, "_connector": connector})
                    for r in rows
                    if r["REMOVED"].strip().lower() != "true"
                }
                removed = [r["ORDER_ID"] for r in rows if r["REMOVED"].strip().lower() == "true"]
                for k in removed:
                    self.lines.pop(k, None)
                self.lines.update(lines)
            elif kind in ("variants", "products"):
                for r in rows:
                    vid = r.get("VARIANT_ID") or r["SKU"]
                    if r.get("REMOVED", "false").lower() == "true":
                        self.catalogue.pop(vid, None)
                    else:
                        self.catalogue[vid] = dict(r)
                    if kind == "products":
                        self.file_stock[(r["SKU"], connector)] = _float(r["stock_quantity"], "stock_quantity")
            elif kind == "warehouses":
                for r in rows:
                    self.warehouses[r["WAREHOUSE_ID"]] = dict(r)
            elif kind == "variant_warehouses":
                for r in rows:
                    self.file_stock[(r["VARIANT_ID"], r["WAREHOUSE_ID"])] = _float(r["IN_STOCK"], "IN_STOCK")
        except (ValueError, KeyError) as exc:
            self.files.append({"kind": kind, "processed": False, "reason": str(exc)})
            return {"processed": False, "reason": str(exc)}
        self.files.append({"kind": kind, "processed": True, "rows": len(rows)})
        return {"processed": True, "rows": len(rows)}

    def _fetch(self, url: str, username: str, password: str) -> str:
        headers = {}
        if username or password:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        for method in ("HEAD", "GET"):
            request = urllib.request.Request(url, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 — the URL the test / demo configured
                if method == "GET":
                    return resp.read().decode("utf-8")
        return ""

    def control_pull(self, payload):
        """The Starter CSV connector's daily pull: complete files, one warehouse per connector."""
        connector = str(payload.get("warehouse") or "")
        user, password = str(payload.get("username") or ""), str(payload.get("password") or "")
        out = {}
        try:
            products = self._fetch(payload["products_url"], user, password)
            sales = self._fetch(payload["sales_orders_url"], user, password)
        except urllib.error.HTTPError as exc:
            return {"ok": False, "status": exc.code}
        with self.lock:
            self.pulls += 1
            out["products"] = self._ingest("products", products, connector)
            if out["products"]["processed"]:
                for k in [k for k, v in self.lines.items() if v["connector"] == connector]:
                    del self.lines[k]  # complete file: what is not in it is gone
                out["sales_orders"] = self._ingest("sales_orders", sales, connector)
        return {"ok": all(v["processed"] for v in out.values()), **out}

    def control_ingest(self, payload):
        kind = payload.get("kind")
        if kind not in FILES or kind == "products":
            return {"processed": False, "reason": f"unknown file kind {kind!r}"}
        with self.lock:
            return self._ingest(kind, str(payload.get("text") or ""))

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

    def control_seed_purchase_orders(self, payload):
        with self.lock:
            self.purchase_orders = [dict(o) for o in payload.get("orders") or []]
        return {"purchase_orders": len(self.purchase_orders)}

    def control_state(self, payload):
        with self.lock:
            return {
                "demand_lines": len(self.lines),
                "lines": {k: dict(v) for k, v in self.lines.items()},
                "pulls": self.pulls,
                "files": list(self.files),
                "refused_posts": self.refused_posts,
                "warehouses": sorted(self.warehouses),
                "variants": sorted(self.catalogue),
                "recommendations": [r for r in self._recommendations() if r["replenishment"] > 0],
                "at": datetime.now(timezone.utc).isoformat(),
            }
