from django.contrib import admin

from .models import ExceptionRecord


@admin.register(ExceptionRecord)
class ExceptionRecordAdmin(admin.ModelAdmin):
    list_display = ["kind", "severity", "status", "title", "sku", "order_ref", "count", "first_seen", "last_seen"]
    list_filter = ["kind", "severity", "status", "channel", "connection"]
    list_select_related = ["channel", "connection"]
    search_fields = ["dedupe_key", "title", "sku", "order_ref"]
    readonly_fields = ["dedupe_key", "count", "first_seen", "last_seen", "times_reopened"]
