from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "integration_hub.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self):
        from integration_hub.core import audit

        from .models import ShippingMethodMap

        audit.track(ShippingMethodMap)
