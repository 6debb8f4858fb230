from django import forms
from django.contrib import admin, messages
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from . import beat
from .models import AuditEntry, Channel, Connection, Location, SyncCursor


class ConnectionForm(forms.ModelForm):
    """URLs and secret variable names are validated by ``Connection.clean`` (outbound guard, HUB_CONN_
    prefix). Changing the API or token URL drops the stored secrets unless new ones are entered here."""

    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current secret (a changed API or "
        "token URL clears it: enter it again); or name an env variable (HUB_CONN_…) instead.",
    )
    webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Secret inbound webhooks are signed with. Stored encrypted; cleared "
        "when the API or token URL changes unless entered again.",
    )

    class Meta:
        model = Connection
        exclude = ["secret_encrypted", "webhook_secret_encrypted"]
        help_texts = {
            "options": (
                "System specific settings (JSON): project key, site id, scopes, account id … Salesforce Commerce Cloud: "
                '"api_family" = "scapi_oci" (B2C Commerce API orders + Omnichannel Inventory; API root '
                "https://<shortCode>.api.commercecloud.salesforce.com, needs \"organization_id\" "
                "f_ecom_<realm>_<instance> and, for OCI, \"oci_tenant_group_id\") "
                'or "ocapi" (the default: OCAPI Shop/Data API + inventory lists; "api_version" defaults to v24_5); '
                '"site_id"; see the README for the Account Manager / Business Manager settings each needs.'
            )
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "system_type" in self.fields:
            self.fields["system_type"].help_text = system_type_help()

    def save(self, commit=True):
        obj = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            obj.set_secret(self.cleaned_data["secret"])
        if self.cleaned_data.get("webhook_secret"):
            obj.set_webhook_secret(self.cleaned_data["webhook_secret"])
        if commit:
            obj.save()
        return obj


def system_type_help() -> str:
    """Help text of the system type field: which connectors are modelled on no published API."""
    from connectors.registry import connector_class

    from .models import SystemType

    modelled = []
    for value, label in SystemType.choices:
        try:
            if connector_class(value).modelled:
                modelled.append(label)
        except LookupError:
            continue
    if not modelled:
        return ""
    return (
        f"Modelled on no published API (the wire shape is an assumption; check it against the tenant's API): "
        f"{', '.join(modelled)}."
    )


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = [
        "name",
        "system_type",
        "base_url",
        "enabled",
        "rate_limit_per_second",
        "last_success_at",
        "last_error_at",
    ]
    list_filter = ["system_type", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["last_success_at", "last_error_at", "last_error"]

    @staticmethod
    def shows_remote_detail(request) -> bool:
        """What a remote answered is shown only to those who may change connections (the admin role), never
        to view-only staff such as ops (permissions, not group names: integration_hub/core/roles.py)."""
        return request.user.has_perm("core.change_connection")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields + ["last_error_detail"] if self.shows_remote_detail(request) else fields

    def get_exclude(self, request, obj=None):
        return None if self.shows_remote_detail(request) else ["last_error_detail"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        cleared = getattr(obj, "secrets_cleared", [])
        if cleared:
            messages.warning(
                request,
                f"The API / token URL of {obj.name} changed, so its stored credentials were cleared "
                f"({', '.join(cleared)}): enter the secrets for the new URL.",
            )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from connectors.registry import api_notice

        obj = self.get_object(request, object_id) if request.method == "GET" else None
        if obj is not None:
            modelled, notice = api_notice(obj.system_type)
            if notice:
                (messages.warning if modelled else messages.info)(request, notice)
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "connection", "external_id", "warehouse", "active"]
    list_filter = ["connection", "active"]
    list_select_related = ["connection", "warehouse"]
    search_fields = ["key", "name", "external_id"]


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "connection", "external_id", "active"]
    list_filter = ["connection", "active"]
    list_select_related = ["connection"]
    search_fields = ["code", "name", "external_id"]


@admin.register(SyncCursor)
class SyncCursorAdmin(admin.ModelAdmin):
    list_display = ["connection", "stream", "value", "updated_at"]
    list_select_related = ["connection"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "action", "content_type", "object_repr", "actor", "source"]
    list_filter = ["action", "content_type", "source"]
    list_select_related = ["actor", "content_type"]
    search_fields = ["object_repr", "object_id"]
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Beat jobs: django-celery-beat's admin, with its bulk enable/disable/toggle actions audited too (they use
# queryset.update(), which sends no signals; single saves are audited by beat.track_schedule_changes).
admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class AuditedPeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    def enable_tasks(self, request, queryset):
        with beat.audited_bulk_change(queryset):
            super().enable_tasks(request, queryset)

    def disable_tasks(self, request, queryset):
        with beat.audited_bulk_change(queryset):
            super().disable_tasks(request, queryset)

    def toggle_tasks(self, request, queryset):
        with beat.audited_bulk_change(queryset):
            super().toggle_tasks(request, queryset)

    enable_tasks.short_description = BeatPeriodicTaskAdmin.enable_tasks.short_description
    disable_tasks.short_description = BeatPeriodicTaskAdmin.disable_tasks.short_description
    toggle_tasks.short_description = BeatPeriodicTaskAdmin.toggle_tasks.short_description
