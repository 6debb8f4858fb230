"""Archean R247 Stock emulator: inventory master (stock changes feed + signed stock pushes) and
fulfilment (sales-order transmission, **item fulfilment** records).

No public R247 reference was found: the shapes are **modelled** (JSON:API-flavoured error objects
``{"errors": [{"status", "code", "title", "detail"}]}``, ``Authorization: Bearer <api key>``, opaque
cursors, ``Idempotency-Key`` on writes). Routes (below ``/archean``):

  GET  /api/v2/stock/changes?cursor=&limit=        {"data": [change], "next_cursor", "has_more"}
  GET  /api/v2/stock?page=&per_page=&item_code=    {"data": [level], "meta": {"page", "per_page", "total"}}
  POST /api/v2/sales-orders                        Idempotency-Key = order reference; a replay answers 200 with
                                                   the stored order and ``Idempotent-Replayed: true``. Intake
                                                   **allocates**: each fulfilled line's quantity leaves the SALEABLE
                                                   bucket (stores with the most stock first), on the change feed and
                                                   the stock push. Kit headers (lines other lines name as
                                                   ``parent_line_ref``, or ``pickable: false``) are never allocated.
  GET  /api/v2/sales-orders/{reference}
  POST /api/v2/sales-orders/{reference}/cancel     200 status CANCELLED (allocation back to SALEABLE; repeat-safe);
                                                   409 already_fulfilled once an item fulfilment exists; 404
  GET  /api/v2/item-fulfilments?cursor=&limit=&sales_order_reference=
                                                   the record of goods leaving: the only evidence of shipment
  POST /api/v2/item-fulfilments                    a fulfilment done elsewhere (ship-from-store), Idempotency-Key
  GET  /api/v2/items?page=&per_page=&updated_since=&item_code=
                                                   the item master (SKU master): {"data": [item], "meta": {…}}; an
                                                   ``updated_since`` that is not ISO 8601 is a 400 invalid_parameter

Buckets: SALEABLE, QUARANTINE, DAMAGED, TRANSIT. A sales order's ``status`` may say "SHIPPED" (control
``set_order_status``) without any item fulfilment — the hub must not treat that as dispatched.

Control: seed_items (upsert item rows, stamped ``updated_at`` now), seed_locations, seed_stock, set_stock (feed +
signed push ``{"type": "stock.changed", "data": [...]}``
to the stock webhook), dispatch (creates an item fulfilment record; pushes
``{"type": "item_fulfilment.created", "data": [...]}``), set_order_status, configure_webhooks, state.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timezone

from .common import MasterEmulator
from .server import HttpError, Request, Response, route

API = r"/api/v2"
DEFAULT_KEY = "archean-demo-key"  # what seed_demo configures
HUB_TO_WIRE = {"available": "SALEABLE", "inspection": "QUARANTINE", "damaged": "DAMAGED", "in_transit": "TRANSIT"}


def picked_lines(lines, line_key: str, parent_key: str, sku_key: str) -> dict[str, int]:
    """SKU → quantity over the lines a warehouse picks: not a kit header (a line other lines name as their
    parent) and not sent with ``pickable: false``."""
    parents = {ln.get(parent_key) for ln in lines if isinstance(ln, dict) and ln.get(parent_key)}
    out: dict[str, int] = {}
    for line in lines:
        if line.get(line_key) in parents or line.get("pickable") is False:
            continue
        out[line[sku_key]] = out.get(line[sku_key], 0) + line["quantity"]
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _err(status: int, code: str, title: str, detail: str = "") -> HttpError:
    return HttpError(
        status, {"errors": [{"status": str(status), "code": code, "title": title, "detail": detail or title}]}
    )


class ArcheanEmulator(MasterEmulator):
    prefix = "archean"

    def reset(self):
        self.reset_master(DEFAULT_KEY)
        self.stock: dict[tuple[str, str, str], dict] = {}
        self.changes: list[dict] = []
        self.orders: dict[str, dict] = {}
        self.receipts: dict[str, int] = {}
        self.order_seq = itertools.count(1)
        self.fulfilments: list[dict] = []
        self.external_fulfilments: dict[str, dict] = {}
        self.items: dict[str, dict] = {}

    def error_body(self, status, message, code=""):
        codes = {429: "rate_limited", 503: "unavailable", 504: "timeout", 404: "not_found", 405: "method_not_allowed"}
        return {
            "errors": [
                {"status": str(status), "code": codes.get(status, code or "error"), "title": message, "detail": message}
            ]
        }

    def _auth(self, req: Request):
        if req.header("Authorization") != f"Bearer {self.api_key}":
            raise _err(401, "unauthorised", "Invalid or missing bearer token")

    @staticmethod
    def _cursor(value) -> int:
        try:
            return int(value or 0)
        except ValueError:
            raise _err(400, "invalid_cursor", "Cursor is not valid") from None

    # --- stock -------------------------------------------------------------------------------------
    @route("GET", API + r"/stock/changes")
    def stock_changes(self, req):
        self._auth(req)
        after, limit = self._cursor(req.q("cursor")), min(1000, int(req.q("limit", "500")))
        with self.lock:
            page = self.changes[after : after + limit]
            return Response(
                200,
                {
                    "data": page,
                    "next_cursor": str(after + len(page)),
                    "has_more": after + len(page) < len(self.changes),
                },
            )

    @route("GET", API + r"/stock")
    def stock_levels(self, req):
        self._auth(req)
        page, per = max(1, int(req.q("page", "1"))), min(1000, int(req.q("per_page", "250")))
        codes = set(filter(None, (req.q("item_code") or "").split(",")))
        with self.lock:
            rows = [
                {
                    "item_code": k[0],
                    "store_code": k[1],
                    "bucket": k[2],
                    "on_hand": v["on_hand"],
                    "changed_at": v["changed_at"],
                }
                for k, v in sorted(self.stock.items())
                if not codes or k[0] in codes
            ]
        return Response(
            200,
            {"data": rows[(page - 1) * per : page * per], "meta": {"page": page, "per_page": per, "total": len(rows)}},
        )

    # --- items ------------------------------------------------------------------------------------------
    @route("GET", API + r"/items")
    def list_items(self, req):
        self._auth(req)
        try:
            page, per = max(1, int(req.q("page", "1"))), min(1000, max(1, int(req.q("per_page", "250"))))
        except ValueError:
            raise _err(400, "invalid_parameter", "page and per_page must be whole numbers") from None
        since = req.q("updated_since")
        if since:
            try:
                since_dt = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise _err(400, "invalid_parameter", f"updated_since {since!r} is not an ISO 8601 time") from None
            if since_dt.tzinfo is None:
                raise _err(400, "invalid_parameter", "updated_since needs a time zone")
        codes = set(filter(None, (req.q("item_code") or "").split(",")))
        with self.lock:
            rows = [
                dict(v)
                for k, v in sorted(self.items.items())
                if (not codes or k in codes)
                and (not since or datetime.fromisoformat(v["updated_at"].replace("Z", "+00:00")) >= since_dt)
            ]
        return Response(
            200,
            {"data": rows[(page - 1) * per : page * per], "meta": {"page": page, "per_page": per, "total": len(rows)}},
        )

    def control_seed_items(self, payload):
        ts = _now()
        with self.lock:
            for r in payload.get("items") or []:
                code = str(r["item_code"])
                self.items[code] = {
                    **self.items.get(code, {}),
                    **r,
                    "item_code": code,
                    "updated_at": r.get("updated_at") or ts,
                }
        return {"items": len(self.items)}

    # --- sales orders ---------------------------------------------------------------------------------
    @route("POST", API + r"/sales-orders")
    def create_order(self, req):
        self._auth(req)
        key = req.header("Idempotency-Key")
        body = req.json()
        if not key:
            raise _err(400, "idempotency_key_required", "Idempotency-Key header is required")
        if not isinstance(body, dict) or body.get("reference") != key:
            raise _err(422, "reference_mismatch", "reference must equal the Idempotency-Key")
        lines = body.get("lines")
        if (
            not isinstance(lines, list)
            or not lines
            or any(
                not isinstance(l, dict)
                or not l.get("item_code")
                or not isinstance(l.get("quantity"), int)
                or l["quantity"] <= 0
                for l in lines
            )
        ):
            raise _err(422, "invalid_lines", "Every line needs item_code and a positive integer quantity")
        if not (body.get("delivery") or {}).get("postcode"):
            raise _err(422, "invalid_delivery", "delivery.postcode is required")
        with self.lock:
            self.receipts[key] = self.receipts.get(key, 0) + 1
            existing = self.orders.get(key)
            if existing is not None:
                return Response(200, self._order_view(existing), {"Idempotent-Replayed": "true"})
            order = {
                "id": f"SO{next(self.order_seq):06d}",
                "reference": key,
                "status": "OPEN",
                "created_at": _now(),
                "request": body,
                "fulfilled": {},
                "allocated": {},
            }
            self.orders[key] = order
            changed = self._allocate(order)
            view = self._order_view(order)
        self._push_async(changed)
        return Response(201, view)

    def _ordered(self, o) -> dict[str, int]:
        return picked_lines(o["request"]["lines"], "line_ref", "parent_line_ref", "item_code")

    def _change(self, sku, loc, bucket, qty) -> dict:
        """Set an absolute on-hand and record the change (caller holds the lock)."""
        ts = _now()
        self.stock[(sku, loc, bucket)] = {"on_hand": qty, "changed_at": ts}
        c = {
            "change_id": f"CH{len(self.changes) + 1:08d}",
            "item_code": sku,
            "store_code": loc,
            "bucket": bucket,
            "on_hand": qty,
            "changed_at": ts,
        }
        self.changes.append(c)
        return c

    def _allocate(self, o) -> list[dict]:
        changed = []
        for sku, qty in sorted(self._ordered(o).items()):
            free = sorted(
                (
                    (v["on_hand"], k[1])
                    for k, v in self.stock.items()
                    if k[0] == sku and k[2] == "SALEABLE" and v["on_hand"] > 0
                ),
                key=lambda x: (-x[0], x[1]),
            )
            for have, loc in free:
                if qty <= 0:
                    break
                take = min(have, qty)
                changed.append(self._change(sku, loc, "SALEABLE", have - take))
                o["allocated"][f"{sku}@{loc}"] = o["allocated"].get(f"{sku}@{loc}", 0) + take
                qty -= take
        return changed

    def _push_async(self, changes: list[dict]) -> None:
        if changes and self.webhooks.get("stock_url"):
            threading.Thread(
                target=self._post, args=("stock", {"type": "stock.changed", "data": changes}), daemon=True
            ).start()

    @route("POST", API + r"/sales-orders/(?P<ref>[^/]+)/cancel")
    def cancel_order(self, req):
        self._auth(req)
        with self.lock:
            o = self.orders.get(req.params["ref"])
            if o is None:
                raise _err(404, "not_found", f"Sales order {req.params['ref']} not found")
            if o["fulfilled"]:
                raise _err(
                    409,
                    "already_fulfilled",
                    f"Sales order {req.params['ref']} has item fulfilments and cannot be cancelled",
                )
            changed = []
            if o["status"] != "CANCELLED":
                o["status"] = "CANCELLED"
                for key, n in sorted(o["allocated"].items()):
                    sku, loc = key.rsplit("@", 1)
                    changed.append(
                        self._change(
                            sku, loc, "SALEABLE", self.stock.get((sku, loc, "SALEABLE"), {"on_hand": 0})["on_hand"] + n
                        )
                    )
                o["allocated"] = {}
            view = self._order_view(o)
        self._push_async(changed)
        return Response(200, view)

    def _order_view(self, o):
        return {
            "data": {
                "id": o["id"],
                "reference": o["reference"],
                "status": o["status"],
                "created_at": o["created_at"],
                "fulfilled": dict(o["fulfilled"]),
            }
        }

    @route("GET", API + r"/sales-orders/(?P<ref>[^/]+)")
    def get_order(self, req):
        self._auth(req)
        with self.lock:
            o = self.orders.get(req.params["ref"])
            if o is None:
                raise _err(404, "not_found", f"Sales order {req.params['ref']} not found")
            return Response(200, self._order_view(o))

    @route("GET", API + r"/item-fulfilments")
    def list_fulfilments(self, req):
        self._auth(req)
        after, limit = self._cursor(req.q("cursor")), min(500, int(req.q("limit", "100")))
        ref = req.q("sales_order_reference")
        with self.lock:
            rows = self.fulfilments if not ref else [f for f in self.fulfilments if f["sales_order_reference"] == ref]
            page = rows[after : after + limit]
            return Response(
                200, {"data": page, "next_cursor": str(after + len(page)), "has_more": after + len(page) < len(rows)}
            )

    @route("POST", API + r"/item-fulfilments")
    def post_fulfilment(self, req):
        self._auth(req)
        key = req.header("Idempotency-Key")
        body = req.json() or {}
        if not key:
            raise _err(400, "idempotency_key_required", "Idempotency-Key header is required")
        with self.lock:
            if key in self.external_fulfilments:
                return Response(200, {"data": self.external_fulfilments[key]}, {"Idempotent-Replayed": "true"})
            rec = {
                "id": f"XF{len(self.external_fulfilments) + 1:06d}",
                "sales_order_reference": body.get("sales_order_reference"),
                "lines": body.get("lines") or [],
                "store_code": body.get("store_code"),
                "fulfilled_at": body.get("fulfilled_at"),
            }
            self.external_fulfilments[key] = rec
            return Response(201, {"data": rec})

    # --- control -----------------------------------------------------------------------------------------
    def _rows(self, payload):
        out = []
        for r in payload.get("rows") or []:
            state = r.get("state") or "available"
            out.append((str(r["sku"]), str(r["location"]), HUB_TO_WIRE.get(state, state), int(r["quantity"])))
        return out

    def control_seed_stock(self, payload):
        ts = _now()
        with self.lock:
            for sku, loc, bucket, qty in self._rows(payload):
                self.stock[(sku, loc, bucket)] = {"on_hand": qty, "changed_at": ts}
        return {"stock_rows": len(self.stock)}

    def control_set_stock(self, payload):
        with self.lock:
            new = [self._change(sku, loc, bucket, qty) for sku, loc, bucket, qty in self._rows(payload)]
        if new:
            self._post("stock", {"type": "stock.changed", "data": new})
        return {"changes": [c["change_id"] for c in new], "cursor": str(len(self.changes))}

    def control_set_order_status(self, payload):
        with self.lock:
            self.orders[payload["order_ref"]]["status"] = payload["status"]
        return {"ok": True}

    def control_dispatch(self, payload):
        ref = payload.get("order_ref")
        with self.lock:
            o = self.orders.get(ref)
            if o is None:
                raise _err(404, "not_found", f"Sales order {ref} not found")
            if o["status"] == "CANCELLED":
                raise _err(409, "cancelled", f"Sales order {ref} was cancelled")
            ordered = self._ordered(o)
            created = []
            for i, p in enumerate(payload.get("parcels") or [{}]):
                if p.get("lines"):
                    lines = [{"item_code": str(s), "quantity": int(q)} for s, q in p["lines"]]
                else:
                    lines = [
                        {"item_code": s, "quantity": q - o["fulfilled"].get(s, 0)}
                        for s, q in ordered.items()
                        if q - o["fulfilled"].get(s, 0) > 0
                    ]
                for line in lines:
                    o["fulfilled"][line["item_code"]] = o["fulfilled"].get(line["item_code"], 0) + line["quantity"]
                carrier = p.get("carrier") or "Royal Mail"
                rec = {
                    "id": f"IF{len(self.fulfilments) + 1:07d}",
                    "sales_order_id": o["id"],
                    "sales_order_reference": ref,
                    "lines": lines,
                    "carrier": carrier,
                    "tracking_number": p.get("tracking_number") or f"RM{len(self.fulfilments) + 1:09d}GB",
                    "tracking_url": p.get("tracking_url") or "",
                    "fulfilled_at": payload.get("dispatched_at") or _now(),
                }
                rec["order_fully_fulfilled"] = all(o["fulfilled"].get(s, 0) >= q for s, q in ordered.items())
                self.fulfilments.append(rec)
                created.append(rec)
            o["status"] = "FULFILLED" if created[-1]["order_fully_fulfilled"] else "PART_FULFILLED"
        self._post("dispatch", {"type": "item_fulfilment.created", "data": created})
        return {"fulfilments": [r["id"] for r in created], "dispatch_id": created[0]["id"]}

    def control_state(self, payload):
        with self.lock:
            return {
                "orders": {
                    ref: {
                        "id": o["id"],
                        "status": o["status"],
                        "request": o["request"],
                        "fulfilled": dict(o["fulfilled"]),
                        "allocated": dict(o["allocated"]),
                    }
                    for ref, o in self.orders.items()
                },
                "order_receipts": dict(self.receipts),
                "fulfilments": [dict(f) for f in self.fulfilments],
                "external_fulfilments": list(self.external_fulfilments.values()),
                "stock": {f"{k[0]}@{k[1]}:{k[2]}": v["on_hand"] for k, v in self.stock.items()},
                "changes": len(self.changes),
                "webhooks": list(self.webhook_log),
            }
