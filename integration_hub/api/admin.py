"""API tokens in the Django admin: only a digest prefix is ever shown; a new token is shown once.

Replaces knox's own ModelAdmin, which lists the full digest and lets the add form pick a raw expiry.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from knox.models import AuthToken, get_digest_token
from knox.settings import CONSTANTS, knox_settings

admin.site.unregister(AuthToken)


class IssueTokenForm(forms.ModelForm):
    valid_hours = forms.FloatField(
        min_value=0.01,
        max_value=24 * 366,
        initial=lambda: knox_settings.TOKEN_TTL.total_seconds() / 3600,
        help_text="The token stops working after this many hours.",
    )

    class Meta:
        model = AuthToken
        fields = ["user"]

    def save(self, commit=True):
        """Fill the row like knox's manager does (digest of a fresh random token); keep the token to show once."""
        obj = super().save(commit=False)
        digest, self.token = get_digest_token()
        obj.digest, obj.token_key = digest, self.token[: CONSTANTS.TOKEN_KEY_LENGTH]
        obj.expiry = timezone.now() + timedelta(hours=self.cleaned_data["valid_hours"])
        if commit:
            obj.save()
        return obj


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    list_display = ("digest_prefix", "user", "created", "expiry")
    list_filter = ("expiry",)
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
    ordering = ("-created",)
    actions = ["delete_selected"]  # revoke

    @admin.display(description="digest")
    def digest_prefix(self, obj):
        return f"{obj.digest[:12]}…"

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = IssueTokenForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "valid_hours"] if obj is None else ["digest_prefix", "user", "created", "expiry"]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("digest_prefix", "user", "created", "expiry")

    def has_change_permission(self, request, obj=None):
        return False  # tokens are not edited: revoke (delete) and issue a new one

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"Token for {obj.user}: {form.token} — copy it now, it is not shown again "
            f"(expires {obj.expiry:%Y-%m-%d %H:%M %Z}).",
            messages.WARNING,
        )
