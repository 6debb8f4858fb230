from django.contrib import admin

from .models import BundleComponent, IdentifierTransform, Item, SkuMapping


class ComponentInline(admin.TabularInline):
    model = BundleComponent
    fk_name = "bundle"
    extra = 0
    raw_id_fields = ["component"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "parent_sku", "is_bundle", "unit_cost", "active"]
    list_filter = ["is_bundle", "active"]
    search_fields = ["sku", "name", "parent_sku"]
    inlines = [ComponentInline]


@admin.register(SkuMapping)
class SkuMappingAdmin(admin.ModelAdmin):
    list_display = ["storefront_sku", "item", "channel", "transform", "safety_buffer", "active", "updated_at"]
    list_filter = ["channel", "active", "transform"]
    list_select_related = ["item", "channel", "transform"]
    search_fields = ["storefront_sku", "item__sku"]
    raw_id_fields = ["item"]


@admin.register(IdentifierTransform)
class IdentifierTransformAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "connection",
        "channel",
        "strip_leading_zeros",
        "pad_to_length",
        "fixed_length",
        "prefix",
        "suffix",
        "case",
        "active",
    ]


@admin.register(BundleComponent)
class BundleComponentAdmin(admin.ModelAdmin):
    list_display = ["bundle", "component", "quantity"]
    list_select_related = ["bundle", "component"]
    raw_id_fields = ["bundle", "component"]
