from django.contrib import admin

from .forms import AlertRuleForm, NotificationChannelForm
from .models import AlertRule, Delivery, Firing, NotificationChannel


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ["name", "kind", "min_severity", "enabled"]
    list_filter = ["kind", "enabled"]


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = [
        "name",
        "figure",
        "key",
        "op",
        "threshold",
        "window_minutes",
        "cooldown_minutes",
        "severity",
        "enabled",
    ]
    list_filter = ["enabled", "severity", "figure"]
    filter_horizontal = ["channels"]
    search_fields = ["name", "figure", "key"]


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Firing)
class FiringAdmin(_ReadOnly):
    list_display = ["message", "severity", "flow", "started_at", "recovered_at"]
    list_filter = ["severity", "flow"]


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnly):
    list_display = ["id", "firing", "channel", "event", "status", "attempts", "next_attempt_at", "last_error"]
    list_filter = ["status", "event", "channel"]
