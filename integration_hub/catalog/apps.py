from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "integration_hub.catalog"
    label = "catalog"
    verbose_name = "Catalogue & SKU mappings"

    def ready(self):
        from integration_hub.core import audit

        from .models import BundleComponent, IdentifierTransform, Item, SkuMapping

        audit.track(SkuMapping, IdentifierTransform, BundleComponent, Item)
