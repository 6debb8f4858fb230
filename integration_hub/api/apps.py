from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "integration_hub.api"
    label = "api"
