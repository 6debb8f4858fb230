from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .models import ReportKind, ReportSubscription


class SubscriptionForm(forms.ModelForm):
    """Which reports, to whom (your own address and/or others), in which format."""

    send_to_me = forms.BooleanField(required=False, initial=True, label="Send to my own address")
    kinds = forms.MultipleChoiceField(
        choices=ReportKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Reports",
        help_text="none ticked: every report",
    )

    class Meta:
        model = ReportSubscription
        fields = ["kinds", "addresses", "format"]
        widgets = {"addresses": forms.TextInput(attrs={"placeholder": "finance@example.com, cfo@example.com"})}

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_addresses(self):
        raw = self.cleaned_data.get("addresses", "")
        out = []
        for a in [x.strip() for x in raw.replace(";", ",").split(",") if x.strip()]:
            try:
                validate_email(a)
            except ValidationError as exc:
                raise ValidationError(f"{a[:80]!r} is not an e-mail address.") from exc
            out.append(a)
        return ", ".join(dict.fromkeys(out))

    def clean(self):
        data = super().clean()
        me = data.get("send_to_me")
        if me and self.user is not None and not self.user.email:
            self.add_error(
                "send_to_me", "Your account has no e-mail address: ask an administrator to add one, or list addresses."
            )
        if not me and not data.get("addresses"):
            raise ValidationError("Send it to your own address, or list at least one address.")
        return data

    def save(self, commit=True):
        sub = super().save(commit=False)
        sub.kinds = list(self.cleaned_data.get("kinds") or [])
        sub.user = self.user if self.cleaned_data.get("send_to_me") else None
        if sub.pk is None:
            sub.created_by = self.user
        if commit:
            sub.save()
        return sub
