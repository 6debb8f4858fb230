from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "integration_hub.console"
    label = "console"
