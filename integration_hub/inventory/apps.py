from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "integration_hub.inventory"
    label = "inventory"
    verbose_name = "Stock & channel rules"

    def ready(self):
        from integration_hub.core import audit

        from .models import ChannelStockRule, StockPool

        audit.track(ChannelStockRule, StockPool)

        from . import signals

        signals.connect()
