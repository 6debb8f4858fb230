"""Admin forms of monitoring: credential fields (webhook URL, signing secret) are write-only and stored
encrypted; blank keeps what is stored."""

from __future__ import annotations

from django import forms
from django.core.validators import URLValidator, validate_email

from connectors import egress, errors

from .figures import FIGURES
from .models import AlertRule, NotificationChannel


class NotificationChannelForm(forms.ModelForm):
    url = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.PasswordInput(render_value=False),
        help_text="Slack / Teams / webhook URL (stored encrypted; blank keeps the stored one)",
    )
    secret = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text="generic webhook: HMAC signing secret (stored encrypted; blank keeps it)",
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "recipients", "role", "min_severity", "daily_digest", "enabled"]

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        url = (data.get("url") or "").strip()
        has_url = bool(url or (self.instance.pk and self.instance.url_encrypted))
        if kind == NotificationChannel.Kind.EMAIL:
            addresses = [a.strip() for a in (data.get("recipients") or "").split(",") if a.strip()]
            if not addresses and not data.get("role"):
                self.add_error("recipients", "Give at least one address or a role.")
            for a in addresses:
                try:
                    validate_email(a)
                except forms.ValidationError:
                    self.add_error("recipients", f"Not an email address: {a!r}.")
        elif kind:
            if url:
                try:
                    URLValidator(schemes=["http", "https"])(url)
                except forms.ValidationError:
                    self.add_error("url", "Give an http(s) URL.")
                else:
                    try:  # the outbound guard, as for connection URLs: no internal address unless allow-listed
                        egress.check_url(url)
                    except errors.UnsafeDestinationError as exc:
                        self.add_error("url", str(exc))
            elif not has_url:
                self.add_error("url", "This kind of channel needs its webhook URL.")
            if kind == NotificationChannel.Kind.WEBHOOK and not (data.get("secret") or self.instance.secret_encrypted):
                self.add_error("secret", "A generic webhook is signed: give a secret.")
        return data

    def save(self, commit=True):
        obj = super().save(commit=False)
        if self.cleaned_data.get("url"):
            obj.set_url(self.cleaned_data["url"].strip())
        if self.cleaned_data.get("secret"):
            obj.set_secret(self.cleaned_data["secret"])
        if commit:
            obj.save()
            self.save_m2m()
        return obj


class AlertRuleForm(forms.ModelForm):
    figure = forms.ChoiceField(choices=[(k, f"{v.label} ({k}, {v.unit})") for k, v in FIGURES.items()])

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "figure",
            "key",
            "op",
            "threshold",
            "window_minutes",
            "cooldown_minutes",
            "severity",
            "flow",
            "notify_recovery",
            "channels",
            "enabled",
        ]
        help_texts = {
            "key": 'blank = the hub-wide value; "*" = every key separately (each channel / connection / '
            'kind); or one channel key, connection name, exception kind (kind or kind:severity), order state'
        }
