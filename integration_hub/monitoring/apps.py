from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "integration_hub.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring and alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from integration_hub.core import audit

        from . import metrics, signals
        from .models import AlertRule, NotificationChannel

        # admin-editable rules: every save/delete from any path is kept as who/when/before/after
        audit.track(AlertRule, NotificationChannel)
        signals.connect()  # the rule's channel set, audited too
        metrics.connect_celery_signals()
