"""The commercetools emulator: one project's state (each resource module's ``reset_*``), the request helpers every
route uses (``_tick``, ``_body``, ``_query``, ``_check_version``, ``_actions``) and the controls that span resources
(``seed_catalog``, ``state``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from ..server import Emulator, HttpError, Request, Response
from .auth import AuthRoutes
from .base import MAX_LIMIT, MAX_OFFSET, clone, ct_error, now_iso
from .custom_types import TypeRoutes
from .imports import ImportRoutes
from .inventory import InventoryRoutes
from .orders import OrderRoutes
from .predicates import apply_sort, compile_where_plan
from .products import ProductRoutes
from .subscriptions import SubscriptionRoutes


class CommercetoolsEmulator(
    AuthRoutes, InventoryRoutes, TypeRoutes, ImportRoutes, ProductRoutes, OrderRoutes, SubscriptionRoutes, Emulator
):
    prefix = "commercetools"
    exempt_patterns = (r"^/oauth/token$", r"^/oauth2/v1/certs$")

    def reset(self) -> None:
        with self.lock:
            self.reset_auth()
            self.reset_inventory()
            self.reset_types()
            self.reset_imports()
            self.reset_products()
            self.reset_orders()
            self.last_ts: datetime | None = None
            self.reset_subscriptions()

    def _tick(self) -> str:
        """A strictly increasing timestamp (ms), so createdAt/lastModifiedAt order = write order."""
        now = datetime.now(timezone.utc)
        now = now.replace(microsecond=(now.microsecond // 1000) * 1000)
        if self.last_ts is not None and now <= self.last_ts:
            now = self.last_ts + timedelta(milliseconds=1)
        self.last_ts = now
        return now_iso(now)

    @staticmethod
    def _body(req: Request) -> dict:
        data = req.json()
        if not isinstance(data, dict):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON.")
        return data

    def _query(
        self,
        req: Request,
        items,
        *,
        default_sort: list[str] | None = None,
        transform=None,
        index: dict[str, Callable] | None = None,
        ordered: dict[str, Callable] | None = None,
    ) -> Response:
        """A PagedQueryResponse over ``items()``, narrowed where the predicate allows: ``index`` (field path →
        lookup(values) → candidates, for ``=`` / ``in`` terms, also under ``or`` / nested predicates when every
        alternative's path has a lookup); ``ordered`` (field → walk(lower bound or None) → objects in ascending order
        of that field from the bound): a query sorted by that field alone reads only up to its page (withTotal=false)."""
        try:
            limit = int(req.q("limit", "20"))
            offset = int(req.q("offset", "0"))
        except ValueError:
            raise ct_error(400, "InvalidInput", "Malformed parameter: limit/offset must be integers") from None
        if not 0 <= limit <= MAX_LIMIT:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: limit: must be between 0 and {MAX_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: offset: must be between 0 and {MAX_OFFSET}")
        plan = compile_where_plan(req.query.get("where", []))
        pred, hints = plan.pred, plan.hints
        with_total = req.q("withTotal", "true").lower() != "false"
        sorts = req.query.get("sort") or default_sort or []
        with self.lock:
            candidates = None
            for field, lookup in (index or {}).items():
                if field in hints:
                    found = {id(o): o for o in lookup(hints[field])}
                    if candidates is None or len(found) < len(candidates):
                        candidates = found
            if candidates is None and plan.alts is not None and index and all(p in index for p, _v in plan.alts):
                candidates = {}
                for p, vals in plan.alts:
                    candidates.update((id(o), o) for o in index[p](vals))
                # in creation order, as items() lists them (ties of a later sort keep it)
                candidates = dict(sorted(candidates.items(), key=lambda kv: kv[1].get("createdAt") or ""))
            walk = None
            if candidates is None and ordered and len(sorts) == 1:
                spec = sorts[0].strip().split()
                if len(spec) == 2 and spec[1].lower() == "asc" and spec[0] in ordered:
                    walk = ordered[spec[0]](plan.lower.get(spec[0]))
            if walk is not None:  # already in the asked order: no sort, and no further than the page unless counted
                matched = []
                for o in walk:
                    if pred(o):
                        matched.append(o)
                        if not with_total and len(matched) >= offset + limit:
                            break
            else:
                pool = candidates.values() if candidates is not None else items()
                matched = [o for o in pool if pred(o)]
                if sorts:
                    apply_sort(matched, sorts)
            page = clone(matched[offset : offset + limit])
            if transform:
                page = [transform(o, req) for o in page]
        body = {"limit": limit, "offset": offset, "count": len(page), "results": page}
        if with_total:
            body["total"] = len(matched)
        return Response(200, body)

    @staticmethod
    def _version_param(req: Request) -> int:
        """The ``version`` query parameter every DELETE needs (ct's 400 when it is missing or not a number)."""
        try:
            return int(req.q("version", ""))
        except ValueError:
            raise ct_error(400, "InvalidInput", "Missing or malformed parameter: version") from None

    def _check_version(self, resource: dict, data: dict, type_name: str) -> None:
        version = data.get("version")
        if not isinstance(version, int):
            raise ct_error(
                400, "InvalidJsonInput", "Request body does not contain valid JSON: missing required field 'version'."
            )
        current = resource["version"]
        if version != current or self.maybe_conflict():
            msg = f"Object {resource['id']} has a different version than expected. Expected: {version} - Actual: {current}."
            raise HttpError(
                409,
                {
                    "statusCode": 409,
                    "message": msg,
                    "errors": [
                        {
                            "code": "ConcurrentModification",
                            "message": msg,
                            "currentVersion": current,
                            "expectedVersion": version,
                            "resourceId": resource["id"],
                        }
                    ],
                },
            )

    @staticmethod
    def _actions(data: dict) -> list[dict]:
        actions = data.get("actions")
        if not isinstance(actions, list) or not all(isinstance(a, dict) and a.get("action") for a in actions):
            raise ct_error(
                400,
                "InvalidJsonInput",
                "Request body does not contain valid JSON: 'actions' must be a list of update actions.",
            )
        return actions

    def control_seed_catalog(self, payload: dict) -> dict:
        channels = payload.get("channels") or []
        skus = list(payload.get("skus") or [])
        products = payload.get("products")
        quantity = payload.get("quantity", 0)
        currency = payload.get("currency", "GBP")
        with self.lock:
            for key in channels:
                if key not in self.channel_by_key:
                    self._new_channel(key)
            if products:
                for p in products:
                    if p["key"] in self.product_by_key:
                        continue
                    self._new_product(
                        p["key"], list(p.get("skus") or []), p.get("name"), currency, p.get("published", True)
                    )
                    skus += [s for s in p.get("skus") or [] if s not in skus]
            else:
                for sku in skus:
                    if sku not in self.sku_product:
                        self._new_product(f"P-{sku}", [sku], None, currency)
            created = 0
            if quantity is not None:
                for key in channels:
                    cid = self.channel_by_key[key]
                    for sku in dict.fromkeys(skus):
                        if (sku, cid) not in self.inventory_index:
                            self._new_entry(sku, cid, int(quantity))
                            created += 1
            return {
                "channels": len(self.channels),
                "products": len(self.products),
                "skus": len(self.sku_product),
                "inventory_entries_created": created,
            }

    def control_state(self, payload: dict) -> dict:
        skus = set(payload.get("skus") or [])
        with self.lock:
            self._land_due()
            self._run_imports()
            inventory: dict[str, dict] = {}
            versions: dict[str, dict] = {}
            for e in self.inventory.values():
                if skus and e["sku"] not in skus:
                    continue
                ch = (e.get("supplyChannel") or {}).get("id")
                key = self.channels[ch]["key"] if ch in self.channels else ""
                inventory.setdefault(key, {})[e["sku"]] = e["availableQuantity"]
                versions.setdefault(key, {})[e["sku"]] = e["version"]
            orders = {}
            for o in self.orders.values():
                deliveries = self._all_deliveries(o)
                orders[o["id"]] = {
                    "order_number": o["orderNumber"],
                    "version": o["version"],
                    "order_state": o["orderState"],
                    "shipment_state": o.get("shipmentState"),
                    "deliveries": len(deliveries),
                    "tracking": [
                        p["trackingData"].get("trackingId")
                        for d in deliveries
                        for p in d["parcels"]
                        if p.get("trackingData")
                    ],
                    "carriers": [
                        p["trackingData"].get("carrier")
                        for d in deliveries
                        for p in d["parcels"]
                        if p.get("trackingData")
                    ],
                    "returns": {
                        it["id"]: {
                            "line_item_id": it.get("lineItemId"),
                            "quantity": it.get("quantity"),
                            "shipment_state": it.get("shipmentState"),
                        }
                        for info in o.get("returnInfo") or []
                        if isinstance(info, dict)
                        for it in info.get("items") or []
                        if isinstance(it, dict) and it.get("id")
                    },
                }
            return {
                "inventory": inventory,
                "versions": versions,
                "orders": orders,
                "tokens_issued": self.tokens_issued,
                "webhooks": dict(self.webhook_stats, pending=self._queue.unfinished_tasks),
            }
