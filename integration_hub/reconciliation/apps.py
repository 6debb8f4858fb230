from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "integration_hub.reconciliation"
    label = "reconciliation"

    def ready(self):
        from integration_hub.core import audit

        from .models import ReportSubscription

        audit.track(ReportSubscription)  # who subscribed which addresses, and every change
