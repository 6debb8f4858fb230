from django.contrib import admin

from .models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Read-only: reports are snapshots written by the reconciliation services."""

    list_display = ["kind", "run_date", "status", "trigger", "row_count", "total_value", "started_at", "requested_by"]
    list_filter = ["kind", "status", "trigger"]
    list_select_related = ["requested_by"]
    date_hierarchy = "run_date"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
