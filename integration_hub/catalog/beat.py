"""Periodic jobs of the catalogue (installed by ``manage.py setup_beat``; editable in the admin)."""

from integration_hub.core.beat import Job

SCHEDULE = [
    Job(
        "catalogue: audit storefront SKUs",
        "catalog.audit_catalogue",
        crontab="40 2 * * *",
        description="Storefront SKUs vs SKU mappings: unknown_sku, and sku_mismatch with the transform that would match.",
    ),
    Job(
        "catalogue: products to warehouses",
        "catalog.sync_warehouse_products",
        every_seconds=3600,
        description="Create the item master's products in warehouses that need them before orders (Clarus) and store their ids.",
    ),
    Job(
        "catalogue: item master pull",
        "catalog.pull_master_items",
        every_seconds=900,
        description="Items changed at the SKU master (options.item_master: Archean) into the item master; completes pending items.",
    ),
    Job(
        "catalogue: item outbox",
        "catalog.drain_item_outbox",
        every_seconds=120,
        description="Sweep: product records of new / changed items to Clarus, WAIR, Inventory Planner; storefront presence check.",
    ),
    Job(
        "catalogue: master data drift",
        "catalog.audit_master_data",
        crontab="10 3 * * *",
        description="Barcode, weight and name per SKU: item master vs storefront vs warehouse → master_data_drift.",
    ),
]
