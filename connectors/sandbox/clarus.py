"""Clarus WMS emulator: warehouse (pick instructions, dispatch with manifest close) + inventory master
(stock by location and state, movement feed).

No public Clarus API reference was found, so the wire shape is **modelled** on common WMS REST APIs
(snake_case JSON, ``X-Api-Key`` + ``X-Clarus-Client`` headers, sequence-number change feeds, errors as
``{"error": {"code", "message", "details"}}``). Routes (below ``/clarus``):

  POST /api/v1/pick-instructions                 order intake; ``client_reference`` is unique: a repeat answers
                                                 409 DUPLICATE_REFERENCE carrying the existing
                                                 ``pick_instruction_id`` and ``received_at`` (nothing is created twice).
                                                 Intake **allocates**: each picked line's quantity leaves AVAILABLE
                                                 (locations with the most free stock first), on the movement feed and
                                                 the stock webhook, as a WMS reports free stock. A line that other
                                                 lines name as ``parent_line_no`` (a kit header), or sent with
                                                 ``pickable: false``, is paperwork: never allocated nor picked.
  GET  /api/v1/pick-instructions/{client_reference}
  POST /api/v1/pick-instructions/{client_reference}/cancel
                                                 200 status CANCELLED (allocation returned to AVAILABLE; repeat-safe);
                                                 409 ALREADY_PICKED once packed or dispatched; 404
  GET  /api/v1/dispatches?after=<seq>&limit=&client_reference=
                                                 dispatches on **closed** manifests only, in manifest-close order
                                                 (optionally of one pick instruction);
                                                 a dispatch packed onto an open manifest is not confirmed yet
  POST /api/v1/external-fulfilments              goods of a pick instruction shipped elsewhere (store); unique
                                                 ``reference`` (409 DUPLICATE_REFERENCE on a repeat)
  GET  /api/v1/stock?page=&page_size=&sku=       stock by location and state
  GET  /api/v1/stock/movements?after=<seq>&limit= absolute quantity after each movement
  States: AVAILABLE, QC_HOLD (inspection / quarantine), DAMAGED, IN_TRANSIT.

Webhooks (``configure_webhooks``; signed ``X-Hub-Signature``): ``{"event": "stock.moved", "movements": [...]}``
and ``{"event": "manifest.closed", "manifest_id", "dispatches": [...]}``.

Control (see :mod:`connectors.sandbox` for the contract): seed_locations, seed_stock, set_stock, dispatch
(creates the dispatch on a manifest and closes the manifest unless ``"close_manifest": false``),
close_manifest, configure_webhooks, state.
"""
from __future__ import annotations

import itertools
import threading
from datetime import datetime, timezone

from .server import HttpError, MasterEmulator, Request, Response, route

API = r"/api/v1"
DEFAULT_KEY = "clarus-demo-key"  # what seed_demo configures
HUB_TO_WIRE = {"available": "AVAILABLE", "inspection": "QC_HOLD", "damaged": "DAMAGED", "in_transit": "IN_TRANSIT"}
WIRE_STATES = set(HUB_TO_WIRE.values())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def picked_lines(lines, line_key: str, parent_key: str, sku_key: str) -> dict[str, int]:
    """SKU → quantity over the lines a warehouse picks: not a kit header (a line other lines name as their
    parent) and not sent with ``pickable: false``. Shared by the Clarus and Archean emulators."""
    parents = {l.get(parent_key) for l in lines if isinstance(l, dict) and l.get(parent_key)}
    out: dict[str, int] = {}
    for line in lines:
        if line.get(line_key) in parents or line.get("pickable") is False:
            continue
        out[line[sku_key]] = out.get(line[sku_key], 0) + line["quantity"]
    return out


def _err(http_status: int, code: str, message: str, **details) -> HttpError:
    return HttpError(http_status, {"error": {"code": code, "message": message, "details": details}})


class ClarusEmulator(MasterEmulator):
    prefix = "clarus"

    def reset(self):
        self.reset_master(DEFAULT_KEY)
        self.stock: dict[tuple[str, str, str], dict] = {}  # (sku, location, STATE) -> {quantity, updated_at}
        self.movements: list[dict] = []
        self.picks: dict[str, dict] = {}  # client_reference -> pick instruction
        self.receipts: dict[str, int] = {}
        self.pick_seq = itertools.count(1)
        self.manifests: dict[str, dict] = {}
        self.manifest_seq = itertools.count(1)
        self.dispatches: list[dict] = []  # confirmed (manifest closed), in close order; sequence = index + 1
        self.open_dispatches: list[dict] = []
        self.external: dict[str, dict] = {}  # reference -> fulfilment done outside the warehouse

    def error_body(self, status, message, code=""):
        codes = {429: "RATE_LIMITED", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return {"error": {"code": codes.get(status, code or "ERROR"), "message": message, "details": {}}}

    def _auth(self, req: Request):
        if req.header("X-Api-Key") != self.api_key:
            raise _err(401, "UNAUTHORISED", "Missing or invalid X-Api-Key")

    # --- warehouse -----------------------------------------------------------------------------------
    @route("POST", API + r"/pick-instructions")
    def create_pick(self, req):
        self._auth(req)
        body = req.json()
        if not isinstance(body, dict):
            raise _err(400, "INVALID_BODY", "Body must be a JSON object")
        ref = body.get("client_reference")
        problems = {}
        if not isinstance(ref, str) or not ref:
            problems["client_reference"] = "required"
        lines = body.get("lines")
        if not isinstance(lines, list) or not lines:
            problems["lines"] = "at least one line is required"
        else:
            for i, line in enumerate(lines):
                q = line.get("quantity") if isinstance(line, dict) else None
                if not isinstance(line, dict) or not line.get("sku"):
                    problems[f"lines[{i}].sku"] = "required"
                if isinstance(q, bool) or not isinstance(q, int) or q <= 0:
                    problems[f"lines[{i}].quantity"] = "must be a positive integer"
        ship_to = body.get("ship_to") or {}
        for f in ("name", "address_line_1", "postcode", "country_code"):
            if not ship_to.get(f):
                problems[f"ship_to.{f}"] = "required"
        if not body.get("service_code"):
            problems["service_code"] = "required"
        if problems:
            raise _err(422, "VALIDATION_FAILED", "The pick instruction is invalid", fields=problems)
        with self.lock:
            self.receipts[ref] = self.receipts.get(ref, 0) + 1
            existing = self.picks.get(ref)
            if existing is not None:
                raise _err(409, "DUPLICATE_REFERENCE", f"client_reference {ref} already exists",
                           pick_instruction_id=existing["pick_instruction_id"], status=existing["status"],
                           received_at=existing["received_at"])
            pick = {"pick_instruction_id": f"PI-{next(self.pick_seq):07d}", "client_reference": ref, "status": "RECEIVED",
                    "received_at": _now(), "request": body, "dispatched": {}, "allocated": {}}
            self.picks[ref] = pick
            moved = self._allocate(pick)
            view = self._pick_view(pick)
        self._post_async(moved)
        return Response(201, view)

    def _ordered(self, pick) -> dict[str, int]:
        return picked_lines(pick["request"]["lines"], "line_no", "parent_line_no", "sku")

    def _move(self, sku, loc, state, qty) -> dict:
        """Set an absolute quantity and record the movement (caller holds the lock)."""
        ts = _now()
        self.stock[(sku, loc, state)] = {"quantity": qty, "updated_at": ts}
        m = {"sequence": len(self.movements) + 1, "movement_id": f"MV-{len(self.movements) + 1:08d}", "sku": sku,
             "location": loc, "state": state, "quantity": qty, "occurred_at": ts}
        self.movements.append(m)
        return m

    def _allocate(self, pick) -> list[dict]:
        """Take the picked lines out of AVAILABLE, locations with the most free stock first (what is short stays
        back-ordered). Caller holds the lock; returns the movements."""
        moved = []
        for sku, qty in sorted(self._ordered(pick).items()):
            free = sorted(((v["quantity"], k[1]) for k, v in self.stock.items() if k[0] == sku and k[2] == "AVAILABLE"
                           and v["quantity"] > 0), key=lambda x: (-x[0], x[1]))
            for have, loc in free:
                if qty <= 0:
                    break
                take = min(have, qty)
                moved.append(self._move(sku, loc, "AVAILABLE", have - take))
                pick["allocated"][f"{sku}@{loc}"] = pick["allocated"].get(f"{sku}@{loc}", 0) + take
                qty -= take
        return moved

    def _post_async(self, movements: list[dict]) -> None:
        """The stock webhook for intake / cancel movements, off the request thread (the caller is waiting)."""
        if movements and self.webhooks.get("stock_url"):
            threading.Thread(target=self._post, args=("stock", {"event": "stock.moved", "movements": movements}),
                             daemon=True).start()

    @route("POST", API + r"/pick-instructions/(?P<ref>[^/]+)/cancel")
    def cancel_pick(self, req):
        self._auth(req)
        with self.lock:
            p = self.picks.get(req.params["ref"])
            if p is None:
                raise _err(404, "NOT_FOUND", f"No pick instruction with client_reference {req.params['ref']}")
            if p["status"] in ("PACKED", "PART_DISPATCHED", "DISPATCHED"):
                raise _err(409, "ALREADY_PICKED", f"Pick instruction {req.params['ref']} is {p['status']} and cannot be cancelled",
                           status=p["status"])
            moved = []
            if p["status"] != "CANCELLED":
                p["status"] = "CANCELLED"
                for key, n in sorted(p["allocated"].items()):
                    sku, loc = key.rsplit("@", 1)
                    have = self.stock.get((sku, loc, "AVAILABLE"), {"quantity": 0})["quantity"]
                    moved.append(self._move(sku, loc, "AVAILABLE", have + n))
                p["allocated"] = {}
            view = self._pick_view(p)
        self._post_async(moved)
        return Response(200, view)

    def _pick_view(self, p):
        return {"pick_instruction_id": p["pick_instruction_id"], "client_reference": p["client_reference"],
                "status": p["status"], "received_at": p["received_at"]}

    @route("GET", API + r"/pick-instructions/(?P<ref>[^/]+)")
    def get_pick(self, req):
        self._auth(req)
        with self.lock:
            p = self.picks.get(req.params["ref"])
            if p is None:
                raise _err(404, "NOT_FOUND", f"No pick instruction with client_reference {req.params['ref']}")
            return Response(200, self._pick_view(p))

    @route("GET", API + r"/dispatches")
    def list_dispatches(self, req):
        self._auth(req)
        after, limit = int(req.q("after", "0") or 0), min(500, int(req.q("limit", "100")))
        ref = req.q("client_reference")
        with self.lock:
            rows = self.dispatches if not ref else [d for d in self.dispatches if d["client_reference"] == ref]
            page = rows[after:after + limit]
            return Response(200, {"dispatches": page, "next_after": after + len(page),
                                  "has_more": after + len(page) < len(rows)})

    @route("POST", API + r"/external-fulfilments")
    def external_fulfilment(self, req):
        """Goods for a pick instruction left from somewhere else (store): Clarus reduces what it still picks."""
        self._auth(req)
        body = req.json()
        if not isinstance(body, dict) or not body.get("reference") or not body.get("client_reference"):
            raise _err(422, "VALIDATION_FAILED", "reference and client_reference are required",
                       fields={"reference": "required", "client_reference": "required"})
        with self.lock:
            existing = self.external.get(body["reference"])
            if existing is not None:
                raise _err(409, "DUPLICATE_REFERENCE", f"reference {body['reference']} already exists",
                           external_fulfilment_id=existing["external_fulfilment_id"])
            pick = self.picks.get(body["client_reference"])
            if pick is None:
                raise _err(404, "NOT_FOUND", f"No pick instruction with client_reference {body['client_reference']}")
            rec = {"external_fulfilment_id": f"EF-{len(self.external) + 1:06d}", **body}
            for line in body.get("lines") or []:
                pick["dispatched"][line["sku"]] = pick["dispatched"].get(line["sku"], 0) + int(line["quantity"])
            self.external[body["reference"]] = rec
            return Response(201, rec)

    # --- stock -------------------------------------------------------------------------------------------
    def _stock_row(self, key, v):
        return {"sku": key[0], "location": key[1], "state": key[2], "quantity": v["quantity"], "updated_at": v["updated_at"]}

    @route("GET", API + r"/stock")
    def list_stock(self, req):
        self._auth(req)
        page, size = max(1, int(req.q("page", "1"))), min(1000, int(req.q("page_size", "250")))
        skus = set(filter(None, (req.q("sku") or "").split(",")))
        with self.lock:
            rows = [self._stock_row(k, v) for k, v in sorted(self.stock.items()) if not skus or k[0] in skus]
        chunk = rows[(page - 1) * size: page * size]
        return Response(200, {"items": chunk, "page": page, "page_size": size, "total": len(rows)})

    @route("GET", API + r"/stock/movements")
    def list_movements(self, req):
        self._auth(req)
        after, limit = int(req.q("after", "0") or 0), min(1000, int(req.q("limit", "500")))
        with self.lock:
            page = self.movements[after:after + limit]
            return Response(200, {"movements": page, "next_after": after + len(page),
                                  "has_more": after + len(page) < len(self.movements)})

    # --- control --------------------------------------------------------------------------------------------
    def _rows(self, payload):
        out = []
        for r in payload.get("rows") or []:
            state = r.get("state") or "available"
            out.append((str(r["sku"]), str(r["location"]), HUB_TO_WIRE.get(state, state), int(r["quantity"])))
        return out

    def control_seed_stock(self, payload):
        ts = _now()
        with self.lock:
            for sku, loc, state, qty in self._rows(payload):
                self.stock[(sku, loc, state)] = {"quantity": qty, "updated_at": ts}
        return {"stock_rows": len(self.stock)}

    def control_set_stock(self, payload):
        with self.lock:
            new = [self._move(sku, loc, state, qty) for sku, loc, state, qty in self._rows(payload)]
        if new:
            self._post("stock", {"event": "stock.moved", "movements": new})
        return {"movements": [m["sequence"] for m in new], "cursor": str(len(self.movements))}

    def control_dispatch(self, payload):
        ref = payload.get("order_ref")
        with self.lock:
            pick = self.picks.get(ref)
            if pick is None:
                raise _err(404, "NOT_FOUND", f"No pick instruction with client_reference {ref}")
            if pick["status"] == "CANCELLED":
                raise _err(409, "CANCELLED", f"Pick instruction {ref} was cancelled")
            ordered = self._ordered(pick)
            parcels = []
            for i, p in enumerate(payload.get("parcels") or [{}]):
                carrier = p.get("carrier") or "DPD"
                tn = p.get("tracking_number") or f"{carrier[:3].upper()}{pick['pick_instruction_id'][3:]}{i}"
                if p.get("lines"):
                    lines = [{"sku": str(s), "quantity": int(q)} for s, q in p["lines"]]
                else:
                    lines = [{"sku": s, "quantity": q - pick["dispatched"].get(s, 0)} for s, q in ordered.items()
                             if q - pick["dispatched"].get(s, 0) > 0]
                for line in lines:
                    pick["dispatched"][line["sku"]] = pick["dispatched"].get(line["sku"], 0) + line["quantity"]
                parcels.append({"carrier": carrier, "tracking_number": tn,
                                "tracking_url": p.get("tracking_url") or f"https://track.example.com/{carrier.lower()}/{tn}",
                                "lines": lines})
            complete = all(pick["dispatched"].get(s, 0) >= q for s, q in ordered.items())
            manifest_id = payload.get("manifest_id") or f"MF-{next(self.manifest_seq):06d}"
            manifest = self.manifests.setdefault(manifest_id, {"manifest_id": manifest_id, "carrier": parcels[0]["carrier"],
                                                                "closed_at": None, "dispatches": []})
            if manifest["closed_at"]:
                raise _err(409, "MANIFEST_CLOSED", f"Manifest {manifest_id} is already closed")
            d = {"dispatch_id": f"DS-{len(self.dispatches) + len(self.open_dispatches) + 1:07d}", "client_reference": ref,
                 "pick_instruction_id": pick["pick_instruction_id"], "manifest_id": manifest_id,
                 "packed_at": payload.get("dispatched_at") or _now(), "complete": complete, "parcels": parcels}
            manifest["dispatches"].append(d)
            pick["status"] = "PACKED"
            self.open_dispatches.append(d)
        if payload.get("close_manifest", True):
            return self.control_close_manifest({"manifest_id": manifest_id})
        return {"dispatch_id": d["dispatch_id"], "manifest_id": manifest_id, "manifest_closed": False}

    def control_close_manifest(self, payload):
        mid = payload["manifest_id"]
        with self.lock:
            manifest = self.manifests.get(mid)
            if manifest is None:
                raise _err(404, "NOT_FOUND", f"No manifest {mid}")
            if manifest["closed_at"]:
                return {"manifest_id": mid, "manifest_closed": True, "dispatches": []}
            manifest["closed_at"] = _now()
            confirmed = []
            for d in manifest["dispatches"]:
                d = dict(d, manifest_closed_at=manifest["closed_at"], sequence=len(self.dispatches) + 1)
                self.dispatches.append(d)
                confirmed.append(d)
                self.open_dispatches = [o for o in self.open_dispatches if o["dispatch_id"] != d["dispatch_id"]]
                pick = self.picks[d["client_reference"]]
                pick["status"] = "DISPATCHED" if d["complete"] else "PART_DISPATCHED"
        self._post("dispatch", {"event": "manifest.closed", "manifest_id": mid, "dispatches": confirmed})
        return {"manifest_id": mid, "manifest_closed": True, "dispatches": [d["dispatch_id"] for d in confirmed],
                "dispatch_id": confirmed[0]["dispatch_id"] if confirmed else ""}

    def control_state(self, payload):
        with self.lock:
            return {"orders": {ref: {"pick_instruction_id": p["pick_instruction_id"], "status": p["status"],
                                     "request": p["request"], "dispatched": dict(p["dispatched"])} for ref, p in self.picks.items()},
                    "allocated": {ref: dict(p["allocated"]) for ref, p in self.picks.items() if p["allocated"]},
                    "order_receipts": dict(self.receipts), "fulfilments": list(self.external.values()),
                    "dispatches": len(self.dispatches), "open_dispatches": len(self.open_dispatches),
                    "stock": {f"{k[0]}@{k[1]}:{k[2]}": v["quantity"] for k, v in self.stock.items()},
                    "movements": len(self.movements), "webhooks": list(self.webhook_log)}
