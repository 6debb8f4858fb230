from django.apps import AppConfig


class PlanningConfig(AppConfig):
    name = "integration_hub.planning"
    label = "planning"
