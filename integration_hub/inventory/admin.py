from django import forms
from django.contrib import admin

from .models import ChannelStock, ChannelStockRule, PendingPush, Reservation, StockLevel, StockPool
from .rules import channel_rule_errors  # one rule for admin, console and API


@admin.register(StockPool)
class StockPoolAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    filter_horizontal = ["locations"]


class ChannelStockRuleAdminForm(forms.ModelForm):
    class Meta:
        model = ChannelStockRule
        fields = "__all__"

    def clean(self):
        data = super().clean()
        for name, message in channel_rule_errors(data.get("mode"), data.get("pool"), data.get("locations")).items():
            if name not in self.errors:
                self.add_error(name, message)
        return data


@admin.register(ChannelStockRule)
class ChannelStockRuleAdmin(admin.ModelAdmin):
    form = ChannelStockRuleAdminForm
    list_display = ["channel", "mode", "pool", "safety_buffer", "updated_at"]
    list_select_related = ["channel", "pool"]
    filter_horizontal = ["locations"]


@admin.register(StockLevel)
class StockLevelAdmin(admin.ModelAdmin):
    list_display = ["item", "location", "state", "quantity", "source_updated_at", "updated_at"]
    list_filter = ["state", "location"]
    list_select_related = ["item", "location"]
    search_fields = ["item__sku"]
    raw_id_fields = ["item"]


@admin.register(PendingPush)
class PendingPushAdmin(admin.ModelAdmin):
    list_display = ["item", "channel", "priority", "changes", "attempts", "not_before", "last_error", "created_at"]
    list_filter = ["priority", "channel"]
    list_select_related = ["item", "channel"]
    search_fields = ["item__sku"]
    raw_id_fields = ["item"]


@admin.register(ChannelStock)
class ChannelStockAdmin(admin.ModelAdmin):
    list_display = [
        "storefront_sku",
        "channel",
        "confirmed_quantity",
        "observed_quantity",
        "storefront_version",
        "confirmed_at",
    ]
    list_filter = ["channel"]
    list_select_related = ["channel"]
    search_fields = ["storefront_sku"]
    raw_id_fields = ["item"]


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = ["order_ref", "item", "channel", "quantity", "created_at", "released_at", "release_reason"]
    list_select_related = ["item", "channel"]
    search_fields = ["order_ref", "item__sku"]
    raw_id_fields = ["item"]
