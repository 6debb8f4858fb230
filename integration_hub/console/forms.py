from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from integration_hub.catalog import transforms
from integration_hub.catalog.models import IdentifierTransform, Item, SkuMapping
from integration_hub.catalog.validation import sku_problem
from integration_hub.core import beat
from integration_hub.inventory.models import ChannelStockRule
from integration_hub.inventory.rules import channel_rule_errors
from integration_hub.orders.models import ShippingMethodMap
from integration_hub.orders.shipping_rules import shipping_map_clash


class SkuMappingForm(forms.ModelForm):
    item_sku = forms.CharField(label="Master SKU", max_length=100)

    class Meta:
        model = SkuMapping
        fields = ["channel", "storefront_sku", "storefront_product", "transform", "safety_buffer", "active"]
        help_texts = {"channel": "empty: every channel"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["item_sku"].initial = self.instance.item.sku
        self.order_fields(["item_sku", *self.Meta.fields])

    def clean_item_sku(self):
        sku = self.cleaned_data["item_sku"].strip()
        item = Item.objects.filter(sku=sku).first()
        if item is None:
            raise forms.ValidationError(f"No master item with SKU {sku!r}.")
        self.instance.item = item
        return sku

    def clean_storefront_sku(self):
        sku = self.cleaned_data["storefront_sku"]
        why = sku_problem(sku)
        if why:
            raise forms.ValidationError(f"Storefront SKU {sku!r} {why}.")
        return sku

    def clean(self):
        data = super().clean()
        channel, sku, transform = data.get("channel"), data.get("storefront_sku"), data.get("transform")
        if sku:
            clash = SkuMapping.objects.filter(channel=channel, storefront_sku=sku).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error(
                    "storefront_sku", f"{sku!r} is already mapped on {'that channel' if channel else 'every channel'}."
                )
        if sku and transform is not None and self.instance.item_id:
            try:
                produced = transforms.apply(self.instance.item.sku, transforms.TransformSpec.from_model(transform))
            except transforms.TransformError as exc:
                self.add_error(
                    "transform", f"Transform {transform.name} cannot be applied to {self.instance.item.sku}: {exc}."
                )
            else:
                if produced != sku:
                    self.add_error(
                        "transform",
                        f"Transform {transform.name} turns {self.instance.item.sku} into "
                        f"{produced!r}, not the storefront SKU {sku!r}.",
                    )
        return data

    def validate_unique(self):
        """Duplicates are reported by :meth:`clean` in words; the database constraints' own messages (their
        names) would repeat them."""

    def overrides(self) -> list[str]:
        """Warnings to show after saving: a channel mapping that takes precedence over an all-channel one."""
        channel, sku = self.cleaned_data.get("channel"), self.cleaned_data.get("storefront_sku")
        if channel is None or not sku:
            return []
        out = []
        for m in (
            SkuMapping.objects.filter(channel__isnull=True, active=True)
            .filter(Q(storefront_sku=sku) | Q(item_id=self.instance.item_id))
            .select_related("item")
        ):
            out.append(
                f"On {channel.key} this mapping overrides the all-channel mapping {m.item.sku} → {m.storefront_sku}."
            )
        return out


class TransformForm(forms.ModelForm):
    class Meta:
        model = IdentifierTransform
        fields = [
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


class ChannelRuleForm(forms.ModelForm):
    class Meta:
        model = ChannelStockRule
        fields = ["channel", "mode", "locations", "pool", "safety_buffer"]
        widgets = {"locations": forms.CheckboxSelectMultiple}

    def clean(self):
        data = super().clean()
        for name, message in channel_rule_errors(data.get("mode"), data.get("pool"), data.get("locations")).items():
            self.add_error(name, message)
        return data


class ShippingMapForm(forms.ModelForm):
    class Meta:
        model = ShippingMethodMap
        fields = ["channel", "storefront_method", "warehouse_method", "carrier", "active"]
        help_texts = {"channel": "empty: every channel"}

    def clean(self):
        data = super().clean()
        clash = shipping_map_clash(data.get("channel"), data.get("storefront_method"), self.instance.pk)
        if clash:
            raise forms.ValidationError(clash)
        return data


class ScheduleForm(forms.ModelForm):
    """Enable/disable a beat job and change how often it runs (interval) or when (crontab)."""

    every = forms.IntegerField(min_value=1, required=False, label="Run every")
    period = forms.ChoiceField(choices=IntervalSchedule.PERIOD_CHOICES, required=False)
    cron = forms.CharField(
        required=False,
        label="or crontab (m h dom mon dow)",
        max_length=100,
        help_text="e.g. '30 5 * * *' for 05:30 daily; leave empty to use the interval",
    )

    class Meta:
        model = PeriodicTask
        fields = ["enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        task = self.instance
        if task.interval_id:
            self.fields["every"].initial = task.interval.every
            self.fields["period"].initial = task.interval.period
        self.fields["cron"].initial = beat.cron_text(task)

    def clean(self):
        data = super().clean()
        try:
            data["schedule"] = beat.clean_schedule(
                every=data.get("every"), period=data.get("period"), cron=data.get("cron")
            )
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                self.add_error(name, errors)
        return data

    def save(self, commit=True):
        """Saved through :func:`core.beat.apply_schedule` (audited before/after whatever the path)."""
        task = super().save(commit=False)
        return beat.apply_schedule(task, self.cleaned_data["schedule"], commit=commit)


class CsvImportForm(forms.Form):
    file = forms.FileField(label="CSV file")
    dry_run = forms.BooleanField(
        required=False, label="Dry run: check every row and show what would change, save nothing"
    )

    def clean_file(self):
        f = self.cleaned_data["file"]
        if f.size > 50 * 1024 * 1024:
            raise forms.ValidationError("The file is larger than 50 MB: split it.")
        return f
