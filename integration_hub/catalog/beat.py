"""Periodic jobs of the catalogue (installed by ``manage.py setup_beat``; editable in the admin)."""
from integration_hub.core.beat import Job

SCHEDULE = [
    Job("catalogue: audit storefront SKUs", "catalog.audit_catalogue", crontab="40 2 * * *",
        description="Storefront SKUs vs SKU mappings: unknown_sku, and sku_mismatch with the transform that would match."),
    Job("catalogue: products to warehouses", "catalog.sync_warehouse_products", every_seconds=3600,
        description="Create the item master's products in warehouses that need them before orders (Clarus) and store their ids."),
]
