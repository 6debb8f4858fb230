from django.contrib import admin, messages

from . import actions
from .models import Order, OrderLine, OrderTransition, ShippingMethodMap, StorefrontFulfilment
from .state import IllegalTransition


class LineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    raw_id_fields = ["item", "parent"]
    readonly_fields = ["line_id", "parent", "shipped_quantity"]


class TransitionInline(admin.TabularInline):
    model = OrderTransition
    extra = 0
    readonly_fields = ["from_state", "to_state", "cause", "actor", "at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _run(modeladmin, request, queryset, fn, verb):
    ok, failed = 0, []
    for order in queryset:
        try:
            fn(order)
            ok += 1
        except (actions.OrderActionError, IllegalTransition) as exc:
            failed.append(f"{order}: {exc}")
    if ok:
        modeladmin.message_user(request, f"{verb} {ok} order(s).", messages.SUCCESS)
    for msg in failed[:20]:
        modeladmin.message_user(request, msg, messages.WARNING)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "order_number",
        "external_id",
        "channel",
        "state",
        "placed_at",
        "warehouse_ref",
        "send_attempts",
        "updated_at",
    ]
    list_filter = ["state", "channel"]
    list_select_related = ["channel"]
    search_fields = ["order_number", "external_id", "idempotency_key", "warehouse_ref", "customer_email"]
    # state changes only through the state machine (actions below call :mod:`.actions`)
    readonly_fields = [
        "state",
        "idempotency_key",
        "warehouse_ref",
        "send_attempts",
        "notify_attempts",
        "sent_at",
        "acknowledged_at",
        "dispatched_at",
        "notified_at",
        "claim_token",
        "last_error",
        "hold_reason",
        "tracking",
    ]
    inlines = [LineInline, TransitionInline]
    actions = ["retry_orders", "cancel_orders", "notify_storefront"]

    @admin.action(description="Retry: revalidate and send to the warehouse", permissions=["retry"])
    def retry_orders(self, request, queryset):
        _run(self, request, queryset, lambda o: actions.retry_send(o, actor=request.user), "Retried")

    @admin.action(description="Cancel (asks the warehouse first when it has the order)", permissions=["cancel"])
    def cancel_orders(self, request, queryset):
        _run(
            self,
            request,
            queryset,
            lambda o: actions.cancel(o, f"cancelled in admin by {request.user}", actor=request.user),
            "Cancelled",
        )

    @admin.action(description="Mark shipped in the storefront (dispatched orders only)", permissions=["retry"])
    def notify_storefront(self, request, queryset):
        _run(self, request, queryset, lambda o: actions.notify_storefront(o, actor=request.user), "Notified")

    def has_retry_permission(self, request):
        return request.user.has_perm("orders.retry_order")

    def has_cancel_permission(self, request):
        return request.user.has_perm("orders.cancel_order")


@admin.register(ShippingMethodMap)
class ShippingMethodMapAdmin(admin.ModelAdmin):
    list_display = ["storefront_method", "warehouse_method", "carrier", "channel", "active"]
    list_filter = ["channel", "active"]


@admin.register(StorefrontFulfilment)
class StorefrontFulfilmentAdmin(admin.ModelAdmin):
    list_display = ["order", "fulfilment_ref", "warehouse", "ack_id", "attempts", "acknowledged_at", "last_error"]
    list_filter = ["warehouse"]
    raw_id_fields = ["order"]
    readonly_fields = ["ack_id", "acknowledged_at", "attempts", "last_error"]
