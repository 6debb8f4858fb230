from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "integration_hub.reconciliation"
    label = "reconciliation"
