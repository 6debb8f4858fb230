from __future__ import annotations

from django import forms

from integration_hub.catalog import transforms
from integration_hub.catalog.models import Item

from . import kinds
from .triage import (
    EDITABLE_ORDER_FIELDS,
    actions_for_state,
    field_choices,
    matching_spec,
)


class StatusForm(forms.Form):
    ACTIONS = [("acknowledge", "Acknowledge"), ("ignore", "Ignore"), ("resolve", "Resolve"), ("reopen", "Reopen")]
    action = forms.ChoiceField(choices=ACTIONS)
    reason = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self):
        data = super().clean()
        if data.get("action") == "ignore" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why this exception can be ignored.")
        return data


class MapSkuForm(forms.Form):
    """How to fix a SKU problem: the suggestion, one of the near-match items, one of the configured transforms
    that produces this storefront SKU, or an item typed by hand."""

    MODES = [
        ("suggested", "use the suggested item and transform"),
        ("alternative", "map to one of the near matches"),
        ("transform", "use a configured transform"),
        ("item", "map to the item I choose"),
    ]
    mode = forms.ChoiceField(choices=MODES, initial="suggested", widget=forms.RadioSelect)
    alternative = forms.ChoiceField(required=False, widget=forms.RadioSelect, label="Near match")
    transform = forms.ChoiceField(required=False, widget=forms.RadioSelect, label="Configured transform")
    item_sku = forms.CharField(required=False, max_length=100, label="Master SKU")
    all_channels = forms.BooleanField(required=False, label="map on every channel (not just this one)")
    bulk = forms.BooleanField(required=False, label="apply the same transform to all similar open exceptions")

    def __init__(
        self, *args, suggestion=None, alternatives=(), transform_options=(), storefront_sku: str = "", **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.suggestion = suggestion
        self.storefront_sku = storefront_sku
        self.alternatives = {i.sku: i for i in alternatives}
        self.transform_options = {f"{t.pk}:{i.pk}": (t, i) for t, i in transform_options}
        self.fields["alternative"].choices = [
            (i.sku, f"{i.sku}" + (f" — {i.name}" if i.name else "")) for i in alternatives
        ]
        self.fields["transform"].choices = [
            (k, f"{t.name} ({transforms.describe(transforms.TransformSpec.from_model(t))}): {i.sku} → {storefront_sku}")
            for k, (t, i) in self.transform_options.items()
        ]
        modes = [
            m
            for m in self.MODES
            if (m[0] != "suggested" or (suggestion is not None and suggestion.item is not None))
            and (m[0] != "alternative" or self.alternatives)
            and (m[0] != "transform" or self.transform_options)
        ]
        self.fields["mode"].choices = modes
        if suggestion is None or suggestion.item is None:
            self.fields["mode"].initial = modes[0][0]

    def clean(self):
        data = super().clean()
        mode = data.get("mode")
        if mode == "suggested":
            if self.suggestion is None or self.suggestion.item is None:
                raise forms.ValidationError("There is no suggestion for this SKU: choose an item.")
            data["item"] = self.suggestion.item
            data["spec"] = self.suggestion.spec
        elif mode == "alternative":
            item = self.alternatives.get(data.get("alternative") or "")
            if item is None:
                self.add_error("alternative", "Choose one of the near matches.")
                return data
            data["item"] = item
            data["spec"] = matching_spec(item.sku, self.storefront_sku)  # a plain mapping when no transform fits
        elif mode == "transform":
            chosen = self.transform_options.get(data.get("transform") or "")
            if chosen is None:
                self.add_error("transform", "Choose one of the configured transforms.")
                return data
            transform, item = chosen
            data["item"] = item
            data["spec"] = transforms.TransformSpec.from_model(transform)
        elif mode == "item":
            sku = (data.get("item_sku") or "").strip()
            if not sku:
                self.add_error("item_sku", "Enter the master SKU to map to.")
                return data
            item = Item.objects.filter(sku=sku).first()
            if item is None:
                self.add_error("item_sku", f"No master item with SKU {sku!r}.")
                return data
            data["item"] = item
            data["spec"] = None
        if data.get("bulk") and data.get("spec") is None and "item" in data:
            self.add_error("bulk", "Bulk-apply needs a transform: use the suggestion or a configured transform.")
        return data


class OrderActionForm(forms.Form):
    ACTIONS = [
        ("retry", "Retry send"),
        ("edit", "Edit field and resend"),
        ("notify", "Resend shipped notification"),
        ("cancel", "Cancel order"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    field = forms.ChoiceField(choices=list(EDITABLE_ORDER_FIELDS.items()), required=False)
    value = forms.CharField(required=False, max_length=2000)
    reason = forms.CharField(required=False, max_length=1000)

    def __init__(self, *args, record=None, order=None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["field"].choices = field_choices(record)
        # what the page offers: the actions the order's state allows and the user's role permits; Cancel is
        # its own button (with a confirmation), never an entry of the Action list
        allowed = actions_for_state(order.state) if order is not None else [a for a, _ in self.ACTIONS]
        if user is not None:
            allowed = [a for a in allowed if user.has_perms(kinds.permissions("order", a))]
        labels = dict(self.ACTIONS)
        self.offered = [(a, labels[a]) for a in allowed if a != "cancel"]
        self.can_cancel = "cancel" in allowed
        self.can_edit = "edit" in allowed
        chosen = self.data.get("action") if self.is_bound else None
        self.chosen_action = chosen if chosen in dict(self.offered) else (self.offered[0][0] if self.offered else "")

    @staticmethod
    def allowed(user, data) -> bool:
        """Checked before the form is validated, so a user without the permission gets a 403 whatever they
        post and never sees validation messages: the posted action's permissions, or — for a missing or
        unknown action, which the form then refuses — the permissions of at least one order action."""
        steps = kinds.FIX_ACTIONS["order"].steps
        perms = steps.get(data.get("action") or "")
        if perms is None:
            return any(user.has_perms(p) for p in steps.values())
        return user.has_perms(perms)

    def clean(self):
        data = super().clean()
        if data.get("action") == "edit" and not data.get("field"):
            self.add_error("field", "Choose the field to correct.")
        if data.get("action") == "cancel" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why the order is cancelled.")
        return data
