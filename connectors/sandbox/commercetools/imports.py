"""Import API for inventory (api-specs/import: ``api.raml``, ``types/inventory-import.raml``, ``import-request.raml``,
``import-operation.raml``, ``import-summary.raml``): containers by key; an InventoryImportRequest of 1-20 InventoryImport;
one operation per resource, ``processing`` until ``import_delay`` seconds have passed, then imported / unresolved (a
supply channel or Type key the project lacks — re-tried on later passes, as ct does until the reference exists) /
validationFailed (custom fields the Type does not define) / rejected (``import_reject_skus``); operations are kept 48 h
(``expiresAt``); listing takes limit ≤ 500, offset ≤ 10,000, state, resourceKey, sort.

Cost per request: pending operations wait in a heap by due time (a request processes the due ones only); each
container indexes its operations by state and by resourceKey, so the listing, its totals and the summary never scan
the project's operations.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

from ..server import Response, route
from .base import MAX_LIMIT, MAX_OFFSET, P, clone, ct_error, now_iso

# Import API (api-specs/import): ImportResourceType, ProcessingState, the fields of an InventoryImport
IMPORT_RESOURCE_TYPES = {
    "business-unit",
    "category",
    "customer",
    "discount-code",
    "inventory",
    "order",
    "order-patch",
    "price",
    "product",
    "product-draft",
    "product-type",
    "product-variant",
    "product-variant-patch",
    "product-selection",
    "standalone-price",
    "type",
}
IMPORT_STATES = (
    "processing",
    "validationFailed",
    "unresolved",
    "waitForMasterVariant",
    "imported",
    "rejected",
    "canceled",
    "partiallyImported",
)
INVENTORY_IMPORT_FIELDS = {
    "key",
    "sku",
    "quantityOnStock",
    "restockableInDays",
    "expectedDelivery",
    "reservationExpirationInMinutes",
    "supplyChannel",
    "custom",
}


class ImportRoutes:
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers)."""

    def reset_imports(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        # Import API (import-openapi.yaml): containers by key, operations by id (oldest first)
        self.import_containers: dict[str, dict] = {}
        self.import_operations: dict[str, dict] = {}
        # pending operations, a heap of (due, seq, operation id, InventoryImport): seq keeps submission order
        self.import_queue: list[tuple[float, int, str, dict]] = []
        self.import_seq = itertools.count()
        self.import_op_seq: dict[str, int] = {}  # operation id → its creation order
        # per container: {operation id: operation}, state → {operation id: operation} (creation order unless the
        # (container, state) is in import_unordered), resourceKey → {operation id: operation}: the listing and the
        # summary read these, never every operation of the project
        self.import_by_container: dict[str, dict[str, dict]] = {}
        self.import_by_state: dict[str, dict[str, dict[str, dict]]] = {}
        self.import_unordered: set[tuple[str, str]] = set()  # (container, state) whose dict needs re-ordering
        self.import_by_resource_key: dict[str, dict[str, dict[str, dict]]] = {}
        self.import_delay = 0.0  # seconds an operation stays "processing"
        self.import_reject_skus: set[str] = set()

    def _import_container(self, key: str) -> dict:
        c = self.import_containers.get(key)
        if c is None:
            raise ct_error(404, "ResourceNotFound", "The requested import container wasn't found.")
        return c

    @route("POST", P + r"/import-containers")
    def import_container_create(self, req):
        self._auth(req)
        data = self._body(req)
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{2,256}", key):
            raise ct_error(400, "InvalidField", "ImportContainerDraft needs a key of 2-256 [A-Za-z0-9_-].", field="key")
        rtype = data.get("resourceType")
        if rtype is not None and rtype not in IMPORT_RESOURCE_TYPES:
            raise ct_error(
                400, "InvalidField", f"Invalid value '{rtype}' for field 'resourceType'.", field="resourceType"
            )
        with self.lock:
            if key in self.import_containers:
                raise ct_error(
                    400, "DuplicateField", f"A duplicate value '\"{key}\"' exists for field 'key'.", field="key"
                )
            ts = self._tick()
            c = {
                "key": key,
                "version": 1,
                "createdAt": ts,
                "lastModifiedAt": ts,
                **({"resourceType": rtype} if rtype else {}),
            }
            self.import_containers[key] = c
            self.import_by_container[key] = {}
            self.import_by_state[key] = {state: {} for state in IMPORT_STATES}
            self.import_by_resource_key[key] = {}
            return Response(201, copy.deepcopy(c))

    @route("GET", P + r"/import-containers/(?P<key>[^/]+)")
    def import_container_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, copy.deepcopy(self._import_container(req.params["key"])))

    @staticmethod
    def _import_problems(res) -> list[dict]:
        """What the Import API refuses in an InventoryImport at once (the ImportOperationStatus is validationFailed)."""
        if not isinstance(res, dict):
            return [{"code": "InvalidInput", "message": "An InventoryImport must be an object."}]
        out = []
        for f in ("key", "sku", "quantityOnStock"):
            if res.get(f) in (None, ""):
                out.append({"code": "RequiredField", "message": f"The required field '{f}' is missing.", "field": f})
        key = res.get("key")
        if key not in (None, "") and (not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{2,256}", key)):
            out.append(
                {
                    "code": "InvalidField",
                    "message": "The value of 'key' must match ^[A-Za-z0-9_-]+$ (2-256).",
                    "field": "key",
                }
            )
        if res.get("sku") not in (None, "") and not isinstance(res.get("sku"), str):
            out.append({"code": "InvalidField", "message": "The value of 'sku' must be a string.", "field": "sku"})
        qty = res.get("quantityOnStock")
        if qty is not None and (isinstance(qty, bool) or not isinstance(qty, int)):
            out.append(
                {
                    "code": "InvalidField",
                    "message": "The value of 'quantityOnStock' must be an integer.",
                    "field": "quantityOnStock",
                }
            )
        ch = res.get("supplyChannel")
        if ch is not None and not (
            isinstance(ch, dict) and ch.get("typeId") == "channel" and isinstance(ch.get("key"), str) and ch["key"]
        ):
            out.append(
                {
                    "code": "InvalidField",
                    "message": "supplyChannel must be a ChannelKeyReference {typeId: channel, key}.",
                    "field": "supplyChannel",
                }
            )
        unknown = sorted(set(res) - INVENTORY_IMPORT_FIELDS)
        if unknown:
            out.append(
                {"code": "InvalidField", "message": f"Unknown field(s) {', '.join(unknown)}.", "field": unknown[0]}
            )
        return out

    @route("POST", P + r"/inventories/import-containers/(?P<key>[^/]+)")
    def inventory_import(self, req):
        """InventoryImportRequest: at most 20 InventoryImport resources → one ImportOperationStatus each."""
        self._auth(req)
        data = self._body(req)
        resources = data.get("resources") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("type") != "inventory":
            raise ct_error(400, "InvalidField", "An InventoryImportRequest has type 'inventory'.", field="type")
        if not isinstance(resources, list) or not 1 <= len(resources) <= 20:
            raise ct_error(400, "InvalidInput", "An import request takes 1 to 20 resources.", field="resources")
        with self.lock:
            container = self._import_container(req.params["key"])
            if container.get("resourceType") not in (None, "inventory"):
                raise ct_error(
                    400,
                    "InvalidInput",
                    f"Import container '{container['key']}' takes {container['resourceType']} resources.",
                )
            out = []
            due = time.monotonic() + self.import_delay
            for res in resources:
                ts = self._tick()
                op = {
                    "id": str(uuid.uuid4()),
                    "version": 1,
                    "importContainerKey": container["key"],
                    "resourceKey": str(res.get("key") or "") if isinstance(res, dict) else "",
                    "state": "processing",
                    "createdAt": ts,
                    "lastModifiedAt": ts,
                    "expiresAt": now_iso(datetime.now(timezone.utc) + timedelta(hours=48)),
                }
                problems = self._import_problems(res)
                if problems:
                    op["state"] = "validationFailed"
                    op["errors"] = problems
                else:
                    heapq.heappush(self.import_queue, (due, next(self.import_seq), op["id"], clone(res)))
                self.import_operations[op["id"]] = op
                self.import_op_seq[op["id"]] = next(self.import_seq)
                self.import_by_container[container["key"]][op["id"]] = op
                self.import_by_state[container["key"]][op["state"]][op["id"]] = op
                self.import_by_resource_key[container["key"]].setdefault(op["resourceKey"], {})[op["id"]] = op
                out.append(
                    {
                        "operationId": op["id"],
                        "state": op["state"],
                        **({"errors": op["errors"]} if op.get("errors") else {}),
                    }
                )
            return Response(201, {"operationStatus": out})

    def _run_imports(self) -> None:
        """Process due import operations (lock held): resolve the supply channel and Type by key, check the custom
        fields against the Type, then create or update the entry by key (quantityOnStock absolute). Costs the due
        operations only (a heap by due time), however many the project holds."""
        queue_, now = self.import_queue, time.monotonic()
        if not queue_ or queue_[0][0] > now:
            return
        retry = []
        while queue_ and queue_[0][0] <= now:
            _due, _seq, op_id, res = heapq.heappop(queue_)
            if self._import_one(self.import_operations[op_id], res):
                retry.append((now + max(self.import_delay, 1.0), op_id, res))  # ct retries until the reference exists
        for due, op_id, res in retry:
            heapq.heappush(queue_, (due, next(self.import_seq), op_id, res))

    def _set_import_state(self, op: dict, state: str) -> None:
        """Move ``op`` to ``state`` in its container's by-state index (lock held)."""
        old = op["state"]
        if old == state:
            return
        by_state = self.import_by_state[op["importContainerKey"]]
        del by_state[old][op["id"]]
        target = by_state[state]
        if target and self.import_op_seq[next(reversed(target))] > self.import_op_seq[op["id"]]:
            self.import_unordered.add((op["importContainerKey"], state))  # landed out of creation order
        target[op["id"]] = op
        op["state"] = state

    def _import_one(self, op: dict, res: dict) -> bool:
        """Apply one due InventoryImport to its operation; True if it stays unresolved (to be retried)."""
        op["lastModifiedAt"] = self._tick()
        op["version"] += 1
        ch_key = (res.get("supplyChannel") or {}).get("key")
        cid = self.channel_by_key.get(ch_key) if ch_key else None
        custom = res.get("custom")
        type_id = self.type_by_key.get(((custom or {}).get("type") or {}).get("key")) if custom else None
        missing = ([{"typeId": "channel", "key": ch_key}] if ch_key and not cid else []) + (
            [{"typeId": "type", "key": ((custom or {}).get("type") or {}).get("key")}] if custom and not type_id else []
        )
        if missing:
            self._set_import_state(op, "unresolved")
            op["unresolvedReferences"] = missing
            return True
        op.pop("unresolvedReferences", None)
        fields = {
            k: (v.get("value") if isinstance(v, dict) else v) for k, v in ((custom or {}).get("fields") or {}).items()
        }
        if custom:
            defined = {f["name"] for f in self.types[type_id].get("fieldDefinitions") or []}
            bad = sorted(set(fields) - defined)
            if bad:
                self._set_import_state(op, "validationFailed")
                op["errors"] = [
                    {"code": "InvalidField", "message": f"The field '{f}' is not defined in the Type.", "field": f}
                    for f in bad
                ]
                return False
        if res["sku"] in self.import_reject_skus:
            self._set_import_state(op, "rejected")
            op["errors"] = [
                {"code": "GenericError", "message": "The resource could not be imported (retry limit reached)."}
            ]
            return False
        eid = self.inventory_by_key.get(res["key"]) or self.inventory_index.get((res["sku"], cid))
        if eid is None:
            entry = self._new_entry(res["sku"], cid, int(res["quantityOnStock"]), res["key"])
            self.inventory_by_key[res["key"]] = entry["id"]
        else:
            entry = self.inventory[eid]
            if entry.get("key") != res["key"]:
                entry["key"] = res["key"]
                self.inventory_by_key[res["key"]] = eid
            self._set_entry_quantity(entry, int(res["quantityOnStock"]))
        if custom:
            entry["custom"] = {"type": {"typeId": "type", "id": type_id}, "fields": fields}
        self._set_import_state(op, "imported")
        op["resourceVersion"] = entry["version"]
        return False

    def _import_ops(self, container: str, state: str, resource_key: str) -> dict[str, dict] | list[dict]:
        """The container's operations in ``state`` / of ``resource_key`` (each optional), in creation order."""
        if resource_key:
            ops = self.import_by_resource_key[container].get(resource_key, {}).values()
            return [o for o in ops if o["state"] == state] if state else list(ops)
        if not state:
            return self.import_by_container[container]
        if (container, state) in self.import_unordered:
            by_state, seq = self.import_by_state[container], self.import_op_seq
            by_state[state] = dict(sorted(by_state[state].items(), key=lambda kv: seq[kv[0]]))
            self.import_unordered.discard((container, state))
        return self.import_by_state[container][state]

    @route("GET", P + r"/import-containers/(?P<key>[^/]+)/import-operations")
    def import_operations_list(self, req):
        self._auth(req)
        try:
            limit = int(req.q("limit", "20"))
            offset = int(req.q("offset", "0"))
        except ValueError:
            raise ct_error(400, "InvalidInput", "limit and offset must be integers.") from None
        if not 0 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
            raise ct_error(400, "InvalidInput", f"limit must be 0-{MAX_LIMIT} and offset 0-{MAX_OFFSET}.")
        state = req.q("state", "")
        if state and state not in IMPORT_STATES:
            raise ct_error(400, "InvalidInput", f"Invalid value '{state}' for query parameter 'state'.")
        sorts = req.query.get("sort") or []
        for spec in sorts:
            if not re.fullmatch(r"(createdAt|lastModifiedAt|resourceKey|state) (asc|desc)", spec):
                raise ct_error(400, "InvalidInput", f"Invalid sort expression '{spec}'.")
        with self.lock:
            self._import_container(req.params["key"])
            self._run_imports()
            ops = self._import_ops(req.params["key"], state, req.q("resourceKey", ""))
            if sorts in ([], ["createdAt asc"]):  # creation order is createdAt order (strictly increasing ticks)
                window = itertools.islice(ops.values() if isinstance(ops, dict) else ops, offset, offset + limit)
            elif sorts == ["createdAt desc"]:
                window = itertools.islice(
                    reversed(ops.values() if isinstance(ops, dict) else ops), offset, offset + limit
                )
            else:
                ordered = list(ops.values() if isinstance(ops, dict) else ops)
                for spec in reversed(sorts):
                    fld, direction = spec.split()
                    ordered.sort(key=lambda o, f=fld: o.get(f) or "", reverse=direction == "desc")
                window = ordered[offset : offset + limit]
            debug = req.q("debug", "") == "true"
            page = [{k: v for k, v in o.items() if debug or k != "unresolvedReferences"} for o in window]
            return Response(
                200, {"limit": limit, "offset": offset, "count": len(page), "total": len(ops), "results": clone(page)}
            )

    @route("GET", P + r"/import-containers/(?P<key>[^/]+)/import-summaries")
    def import_summary(self, req):
        self._auth(req)
        with self.lock:
            self._import_container(req.params["key"])
            self._run_imports()
            states = {state: len(ops) for state, ops in self.import_by_state[req.params["key"]].items()}
            return Response(200, {"states": states, "total": sum(states.values())})

    @route("GET", P + r"/import-operations/(?P<id>[^/]+)")
    def import_operation_get(self, req):
        self._auth(req)
        with self.lock:
            self._run_imports()
            op = self.import_operations.get(req.params["id"])
            if op is None:
                raise ct_error(404, "ResourceNotFound", "The requested import operation wasn't found.")
            return Response(200, copy.deepcopy(op))

    def control_import_settings(self, payload: dict) -> dict:
        """Test switches: ``delay`` (seconds an operation stays processing), ``reject_skus`` (operations of these
        SKUs end ``rejected``)."""
        with self.lock:
            if "delay" in payload:
                self.import_delay = float(payload["delay"])
            if "reject_skus" in payload:
                self.import_reject_skus = set(payload["reject_skus"] or [])
            return {"delay": self.import_delay, "queued": len(self.import_queue)}
