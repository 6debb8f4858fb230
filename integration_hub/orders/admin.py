from django.contrib import admin

from .models import Order, OrderLine, OrderTransition, ShippingMethodMap


class LineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    raw_id_fields = ["item", "parent"]


class TransitionInline(admin.TabularInline):
    model = OrderTransition
    extra = 0
    readonly_fields = ["from_state", "to_state", "cause", "actor", "at"]
    can_delete = False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["order_number", "external_id", "channel", "state", "placed_at", "warehouse_ref", "updated_at"]
    list_filter = ["state", "channel"]
    list_select_related = ["channel"]
    search_fields = ["order_number", "external_id", "warehouse_ref", "customer_email"]
    readonly_fields = ["state"]  # state changes only through the state machine
    inlines = [LineInline, TransitionInline]


@admin.register(ShippingMethodMap)
class ShippingMethodMapAdmin(admin.ModelAdmin):
    list_display = ["storefront_method", "warehouse_method", "carrier", "channel", "active"]
    list_filter = ["channel", "active"]
