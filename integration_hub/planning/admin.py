from django.contrib import admin

from .models import DemandFeedEntry, Recommendation, ReturnLine, StockOrder


@admin.register(Recommendation)
class RecommendationAdmin(admin.ModelAdmin):
    list_display = ("sku", "location", "kind", "recommended_quantity", "supplier", "connection", "fetched_at")
    list_filter = ("kind", "connection")
    search_fields = ("sku", "supplier")
    raw_id_fields = ("item",)


@admin.register(DemandFeedEntry)
class DemandFeedEntryAdmin(admin.ModelAdmin):
    list_display = ("key", "quantity", "is_return", "channel", "location", "connection", "sent_at")
    list_filter = ("is_return", "connection")
    search_fields = ("key", "sku")
    raw_id_fields = ("order",)


@admin.register(ReturnLine)
class ReturnLineAdmin(admin.ModelAdmin):
    list_display = ("external_ref", "order_line", "quantity", "condition", "returned_at", "updated_at")
    list_filter = ("condition",)
    search_fields = ("external_ref",)
    raw_id_fields = ("order_line",)


@admin.register(StockOrder)
class StockOrderAdmin(admin.ModelAdmin):
    list_display = (
        "reference",
        "kind",
        "status",
        "vendor",
        "warehouse",
        "expected_at",
        "units_open",
        "connection",
        "fetched_at",
    )
    list_filter = ("kind", "status", "connection")
    search_fields = ("reference", "external_id", "vendor")
