from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "integration_hub.console"
    label = "console"

    def ready(self):
        from . import schedules

        schedules.connect_signals()  # "Run now" records: the worker fills in their state
