"""Sandbox emulators of every external system, served over real HTTP by :mod:`.server`.

Run standalone: ``python -m connectors.sandbox --port 8765``. Tests start one in a thread.

Control contract (``POST /_sandbox/<prefix>/<action>`` with a JSON body → ``control_<action>``), so the
demo seeder and the pair tests can drive any emulator the same way:

storefront emulators (commercetools, sfcc)
  seed_catalog   {"channels": ["<channel external id>", ...], "skus": ["<storefront sku>", ...],
                  "products": [{"key": "...", "skus": [...]}] (optional), "quantity": 0}
                 creates channels / inventory lists, products with variants, and stock entries
  create_orders  {"orders": [{"channel": "<channel external id>", "lines": [{"sku": "...", "quantity": 1}],
                  "shipping_method": "...", "gift_message": "...", "delivery_notes": "...",
                  "custom_fields": {...}, "email": "...", "address": {...}}]}  → {"ids": [...]}
                 new orders; each also produces an order-created notification to the configured hub URL
  configure_webhooks {"order_url": "http://hub/hooks/...", "secret": "..."}
  state          {"skus": [...]} → {"inventory": {channel: {sku: qty}}, "orders": {id: {shipment_state, tracking, ...}}}
  commercetools extras: set_inventory {"rows": [{"channel", "sku", "quantity"}]} (storefront-side change, bumps
                 the version: drift / 409 tests), set_credentials {"client_id", "client_secret"}, revoke_tokens {},
                 wait_webhooks {"timeout": s} → delivery stats once the subscription queue is drained,
                 store_fulfil {"order", "lines", "tracking"} (ship-from-store delivery); configure_webhooks also
                 takes "concurrency" and "retry_delays"; add_return {"order", "items": [{"sku", "quantity", "state"}],
                 "tracking", "return_date"} → {"return_item_ids"}, return_state {"order", "return_item_id", "state"}
                 (returns booked / moved on storefront-side, as addReturnInfo / setReturnShipmentState)
  sfcc extras:   store_ship {"order_no", "tracking", "carrier", "store", "lines": [[sku, qty]] (default: all left)}
                 (store staff / an OMS ship the order themselves: order-level shipped, or a new shipped shipment)
                 create_orders also takes "status" / "export_status"; set_order {"order_no", "status",
                 "export_status", "shipping_status"} (the site changes an order); record {"list", "sku"} (a full
                 inventory record); configure_site {"inventory": "lists" | "oci", "tenant_group_id"?}; oci {"location"} (OCI records)
master / warehouse emulators (wair, clarus, archean) — clarus: locations are Clarus warehouses; "dispatch" picks and,
unless "close_manifest": false, completes the goods out (the "sales order completed" event); "close_manifest"
{"manifest_id": <goods out id>} completes a picked one; webhooks carry Clarus's identification headers, no signature
  seed_locations {"locations": [{"id": "...", "name": "..."}]}
  seed_stock     {"rows": [{"sku", "location", "state", "quantity"}]}   bulk, no notifications
  set_stock      {"rows": [...]}  changes that are recorded on the change feed and pushed to the hub webhook
  dispatch       {"order_ref": "...", "parcels": [{"carrier", "tracking_number", "lines": [[sku, qty]]}]}
  configure_webhooks {"stock_url": "...", "dispatch_url": "...", "secret": "..."}
  state          {} → {"orders": {order_ref: {...}}, "order_receipts": {order_ref: n_times_received}, "fulfilments": [...]}
planner emulators (inventory_planner, wair_replenishment)
  state          {} → inventory_planner: {"lines": {...}, "files": [...], "recommendations": [...]};
                 wair_replenishment: {"batches", "calls", "items", "locations", "stock", "sales", "stocknotforreplenishment"}
  inventory_planner extras: pull {"products_url", "sales_orders_url", "warehouse", "username", "password"} (the Starter
                 CSV connector's daily pull), ingest {"kind", "text"} (one Advanced CSV file), seed_variants,
                 seed_purchase_orders
  wair_replenishment extras: seed_transfers {"transfers": [...]}, set_credentials
"""

from __future__ import annotations

import importlib
import importlib.util

# prefix → "module:Class"; each system's emulator module registers itself here.
EMULATORS = {
    "commercetools": "connectors.sandbox.commercetools.emulator:CommercetoolsEmulator",
    "wair": "connectors.sandbox.wair:WairEmulator",
    "sfcc": "connectors.sandbox.sfcc:SFCCEmulator",
    "clarus": "connectors.sandbox.clarus:ClarusEmulator",
    "archean": "connectors.sandbox.archean:ArcheanEmulator",
    "inventory_planner": "connectors.sandbox.inventory_planner:InventoryPlannerEmulator",
    "wair_replenishment": "connectors.sandbox.wair_replenishment:WairReplenishmentEmulator",
}


def build_emulators(only: list[str] | None = None):
    out = []
    for prefix, target in EMULATORS.items():
        if only and prefix not in only:
            continue
        module_name, cls_name = target.split(":")
        if importlib.util.find_spec(module_name) is None:
            continue  # not built yet
        out.append(getattr(importlib.import_module(module_name), cls_name)())
    return out


def make_server(host: str = "127.0.0.1", port: int = 8765, only: list[str] | None = None):
    from .server import SandboxServer

    return SandboxServer(build_emulators(only), host, port)
