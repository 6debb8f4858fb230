"""Inventory Planner as Planner.

Confirmed from the public API article (help.inventory-planner.com "Inventory Planner Public API" and
"Reports API"): API root ``https://app.inventory-planner.com/api/v1/``; headers ``Authorization: <API key>``
and ``Account: <account id>``; ``variants`` collection with ``sku``, ``replenishment`` (current
replenishment number), ``oos``, ``lead_time``, ``review_period`` and per-variant ``vendors``.

Modelled (see :mod:`connectors.sandbox.inventory_planner`): the demand feed ``POST api/v1/sales-orders``
with ``{"sales-orders": [...]}``, at most 500 lines per request, each line upserted by ``id``. The id
is the hub's line key ``<order ref>|<sku>|<bundle sku>|sale|return``: re-sending a line replaces it
(a cancelled order is re-sent with quantity 0), so the feed is state, not events. Return lines carry
``type = "return"`` and a negative quantity.

Connection: ``base_url`` = ``https://app.inventory-planner.com`` (sandbox ``http://127.0.0.1:8765/inventory_planner``);
secret = API key; ``client_id`` (or ``options["account"]``) = account id. options: ``batch_size`` (≤ 500),
``page_size`` (default 500).
"""
from __future__ import annotations


from . import errors
from .base import Connector, DemandLine, Planner, Recommendation
from .http import HeaderAuth, HttpClient
from .parsing import to_iso as _iso

API = "/api/v1"
MAX_BATCH = 500


def line_id(line: DemandLine) -> str:
    return f"{line.order_ref}|{line.sku}|{line.bundle_sku}|{'return' if line.is_return else 'sale'}"


class _TwoHeaderAuth(HeaderAuth):
    """``Authorization: <key>`` plus ``Account: <account id>``."""

    def __init__(self, key: str, account: str):
        super().__init__("Authorization", key)
        self.account = account

    def apply(self, client, headers):
        headers["Authorization"] = self.value
        headers["Account"] = self.account


class InventoryPlannerConnector(Connector, Planner):
    system_type = "inventory_planner"

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.batch_size = max(1, min(MAX_BATCH, int(opts.get("batch_size") or MAX_BATCH)))
        self.page_size = max(1, min(1000, int(opts.get("page_size") or 500)))
        super().__init__(connection, client)

    def build_client(self):
        c = self.connection
        account = (c.options or {}).get("account") or c.client_id
        return HttpClient.for_connection(c, auth=_TwoHeaderAuth(c.get_secret(), account))

    @staticmethod
    def line_body(line: DemandLine) -> dict:
        qty = -abs(int(line.quantity)) if line.is_return else int(line.quantity)
        return {"id": line_id(line), "order_id": line.order_ref, "sku": line.sku, "quantity": qty,
                "type": "return" if line.is_return else "sale", "channel": line.channel, "warehouse": line.location,
                "date": _iso(line.ordered_at), "promotion_codes": list(line.promotion_codes or []),
                "bundle_sku": line.bundle_sku or None,
                "price": None if line.unit_price_cents is None else round(line.unit_price_cents / 100, 2)}

    def push_demand(self, lines: list[DemandLine]) -> int:
        """Send every line (batched); returns how many the planner accepted. Raises on any failed batch —
        batches before it stay sent, and re-sending them is harmless (upsert by id)."""
        sent = 0
        for start in range(0, len(lines), self.batch_size):
            chunk = lines[start:start + self.batch_size]
            body = self.client.post(f"{API}/sales-orders", json={"sales-orders": [self.line_body(l) for l in chunk]},
                                    headers={"Content-Type": "application/json"}).json()
            result = (body or {}).get("result") or {}
            if result.get("status") != "success":
                raise errors.BadDataError(f"Inventory Planner did not accept the demand batch: {result}", body=body,
                                          system=self.system_type)
            meta = body.get("meta") or {}
            sent += int(meta.get("created", 0)) + int(meta.get("updated", 0)) if meta else len(chunk)
        return sent

    def recommendations(self) -> list[Recommendation]:
        out, page = [], 0
        while True:
            body = self.client.get(f"{API}/variants", params={"page": page, "limit": self.page_size, "replenishment_gt": 0}).json()
            rows = body.get("variants")
            if not isinstance(rows, list):
                raise errors.BadDataError("Inventory Planner variants answer has no 'variants' list", body=body, system=self.system_type)
            for v in rows:
                qty = v.get("replenishment")
                if not v.get("sku") or isinstance(qty, bool) or not isinstance(qty, (int, float)) or qty <= 0:
                    continue
                vendor = next(iter(v.get("vendors") or []), {}) or {}
                reason = f"forecast sells out in {v.get('oos')} days; lead time {v.get('lead_time')} days" if v.get("oos") is not None else ""
                out.append(Recommendation(sku=str(v["sku"]), location=str(v.get("warehouse") or ""), recommended_quantity=int(qty),
                                          kind="purchase", supplier=str(vendor.get("vendor_name") or ""), reason=reason, raw=v))
            meta = body.get("meta") or {}
            page += 1
            if not rows or page * int(meta.get("limit") or self.page_size) >= int(meta.get("total") or 0):
                return out
