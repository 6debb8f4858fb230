from __future__ import annotations

from datetime import datetime

from django_celery_beat.models import IntervalSchedule, PeriodicTask
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from exceptions_app.models import ExceptionRecord
from integration_hub.catalog.models import IdentifierTransform, Item, SkuMapping
from integration_hub.core import beat
from integration_hub.core.models import Channel, Connection, Location
from integration_hub.inventory.models import ChannelStockRule, PendingPush, StockLevel, StockPool
from integration_hub.inventory.rules import channel_rule_errors
from integration_hub.orders.models import Order, OrderLine, ShippingMethodMap
from integration_hub.orders.shipping_rules import shipping_map_clash
from integration_hub.reconciliation.models import Report, ReportRow


# Declared fields over nullable model fields say ``allow_null=True`` (the generated ones do it themselves), so the
# OpenAPI schema marks them nullable: tests/api/test_schema_nullable.py checks every serializer.
class ExceptionSerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)
    connection = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    status_changed_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="who last changed the status; null: nobody yet",
    )

    class Meta:
        model = ExceptionRecord
        fields = [
            "id",
            "kind",
            "severity",
            "status",
            "dedupe_key",
            "title",
            "message",
            "context",
            "connection",
            "channel",
            "sku",
            "order_ref",
            "count",
            "first_seen",
            "last_seen",
            "status_changed_at",
            "status_changed_by",
            "status_reason",
            "times_reopened",
        ]
        read_only_fields = fields


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class MapSkuSerializer(serializers.Serializer):
    item = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="master SKU to map to; empty = the suggested item (and its transform)",
    )
    all_channels = serializers.BooleanField(default=False, help_text="map on every channel, not just the exception's")
    bulk = serializers.BooleanField(
        default=False, help_text="apply the suggested transform to all similar open exceptions"
    )


class FixResultSerializer(serializers.Serializer):
    resolved = serializers.IntegerField()
    acknowledged = serializers.IntegerField(
        help_text="SKU exceptions acknowledged until the re-queued stock push confirms"
    )
    mappings_created = serializers.IntegerField()
    mappings_updated = serializers.IntegerField()
    pushes_queued = serializers.IntegerField()
    orders_revalidated = serializers.IntegerField()
    skipped = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))


class OrderLineSerializer(serializers.ModelSerializer):
    item_sku = serializers.CharField(
        source="item.sku",
        default=None,
        read_only=True,
        allow_null=True,
        help_text="master SKU; null while the line is unmapped",
    )

    class Meta:
        model = OrderLine
        fields = [
            "id",
            "line_id",
            "storefront_sku",
            "item_sku",
            "quantity",
            "unit_price_cents",
            "shipped_quantity",
            "parent",
        ]


class OrderSerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="key", read_only=True)
    warehouse = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    lines = OrderLineSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "channel",
            "external_id",
            "order_number",
            "state",
            "placed_at",
            "currency",
            "total_cents",
            "shipping_method",
            "warehouse_shipping_method",
            "warehouse",
            "warehouse_ref",
            "send_attempts",
            "sent_at",
            "acknowledged_at",
            "dispatched_at",
            "notified_at",
            "tracking",
            "hold_reason",
            "created_at",
            "updated_at",
            "lines",
        ]
        read_only_fields = fields


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)


class SkuMappingSerializer(serializers.ModelSerializer):
    item = serializers.SlugRelatedField(slug_field="sku", queryset=Item.objects.all(), help_text="master SKU")
    channel = serializers.SlugRelatedField(
        slug_field="key",
        queryset=Channel.objects.all(),
        allow_null=True,
        required=False,
        help_text="channel key; null = every channel",
    )
    transform = serializers.SlugRelatedField(
        slug_field="name", queryset=IdentifierTransform.objects.all(), allow_null=True, required=False
    )

    class Meta:
        model = SkuMapping
        fields = [
            "id",
            "item",
            "channel",
            "storefront_sku",
            "storefront_product",
            "transform",
            "safety_buffer",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        validators = []  # the unique (channel, sku) pair is checked below with a readable message

    def validate(self, attrs):
        channel = attrs.get("channel", getattr(self.instance, "channel", None))
        sku = attrs.get("storefront_sku", getattr(self.instance, "storefront_sku", None))
        clash = SkuMapping.objects.filter(channel=channel, storefront_sku=sku)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError({"storefront_sku": f"{sku!r} is already mapped on this channel scope."})
        return attrs


class TransformSerializer(serializers.ModelSerializer):
    connection = serializers.SlugRelatedField(
        slug_field="name", queryset=Connection.objects.all(), allow_null=True, required=False
    )
    channel = serializers.SlugRelatedField(
        slug_field="key", queryset=Channel.objects.all(), allow_null=True, required=False
    )

    class Meta:
        model = IdentifierTransform
        fields = [
            "id",
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


class ChannelStockRuleSerializer(serializers.ModelSerializer):
    # one rule per channel (a OneToOneField): declared fields get no automatic UniqueValidator, so name it
    channel = serializers.SlugRelatedField(
        slug_field="key",
        queryset=Channel.objects.all(),
        validators=[
            UniqueValidator(
                queryset=ChannelStockRule.objects.all(), message="This channel already has a stock rule: edit that one."
            )
        ],
    )
    locations = serializers.SlugRelatedField(
        slug_field="code", queryset=Location.objects.all(), many=True, required=False
    )
    pool = serializers.SlugRelatedField(
        slug_field="code", queryset=StockPool.objects.all(), allow_null=True, required=False
    )

    class Meta:
        model = ChannelStockRule
        fields = ["id", "channel", "mode", "locations", "pool", "safety_buffer", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate(self, attrs):
        mode = attrs.get("mode", getattr(self.instance, "mode", ChannelStockRule.Mode.SEGREGATED))
        pool = attrs.get("pool", getattr(self.instance, "pool", None))
        if "locations" in attrs:
            locations = attrs["locations"]
        else:
            locations = list(self.instance.locations.all()) if self.instance is not None else []
        errors = channel_rule_errors(mode, pool, locations)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ShippingMapSerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(
        slug_field="key", queryset=Channel.objects.all(), allow_null=True, required=False
    )

    class Meta:
        model = ShippingMethodMap
        fields = ["id", "channel", "storefront_method", "warehouse_method", "carrier", "active"]
        validators = []  # the unique (channel, method) pair is checked below with a readable message (not a 500)

    def validate(self, attrs):
        channel = attrs.get("channel", getattr(self.instance, "channel", None))
        method = attrs.get("storefront_method", getattr(self.instance, "storefront_method", None))
        clash = shipping_map_clash(channel, method, getattr(self.instance, "pk", None))
        if clash:
            raise serializers.ValidationError({"storefront_method": clash})
        return attrs


class ScheduleSerializer(serializers.ModelSerializer):
    """A beat job: enable/disable it, or change how often (``every`` + ``period``) or when (``cron``) it runs.
    Validated and saved by the same code as the console's schedule page (:mod:`core.beat`), audited alike."""

    every = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="interval: run every N periods"
    )
    period = serializers.ChoiceField(choices=IntervalSchedule.PERIOD_CHOICES, required=False, allow_null=True)
    cron = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=100,
        help_text="crontab 'm h dom mon dow' (e.g. '30 5 * * *'); replaces the interval",
    )

    class Meta:
        model = PeriodicTask
        fields = [
            "id",
            "name",
            "task",
            "description",
            "enabled",
            "every",
            "period",
            "cron",
            "runs",
            "next_run_at",
            "queue",
            "last_run_at",
            "total_run_count",
        ]
        read_only_fields = ["id", "name", "task", "description", "queue", "last_run_at", "total_run_count"]

    runs = serializers.SerializerMethodField(help_text="the schedule in words, e.g. 'every day at 02:00 UTC'")
    next_run_at = serializers.SerializerMethodField(help_text="when beat next sends it (UTC); null when disabled")

    def get_runs(self, task) -> str:
        from integration_hub.console import schedules

        return schedules.describe(task)

    def get_next_run_at(self, task) -> datetime | None:
        from integration_hub.console import schedules

        nxt = schedules.next_run(task)
        return serializers.DateTimeField().to_representation(nxt) if nxt else None

    def to_representation(self, task):
        data = super().to_representation(task)
        data["every"] = task.interval.every if task.interval_id else None
        data["period"] = task.interval.period if task.interval_id else None
        data["cron"] = beat.cron_text(task) or None
        return data

    def validate(self, attrs):
        from django.core.exceptions import ValidationError as DjangoValidationError

        wants = {k: attrs.get(k) for k in ("every", "period", "cron") if k in attrs}
        if not wants:
            attrs["schedule"] = None  # only enabled/disabled
            return attrs
        if not wants.get("cron") and self.instance is not None and self.instance.interval_id:
            wants.setdefault("every", self.instance.interval.every)  # PATCH {"every": 5} keeps the period
            wants.setdefault("period", self.instance.interval.period)
        try:
            attrs["schedule"] = beat.clean_schedule(
                every=wants.get("every"), period=wants.get("period"), cron=wants.get("cron")
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs

    def update(self, task, validated):
        return beat.apply_schedule(task, validated.get("schedule"), enabled=validated.get("enabled"))


class ScheduleRunSerializer(serializers.Serializer):
    """A "Run now": the Celery task id and what the worker made of it (queued, started, succeeded, failed)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    task = serializers.CharField()
    task_id = serializers.CharField(source="celery_task_id")
    state = serializers.CharField()
    launched_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.CharField()
    error = serializers.CharField()


class StockLevelSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="item.sku", read_only=True)
    location = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = StockLevel
        fields = ["id", "sku", "location", "state", "quantity", "source_updated_at", "updated_at"]
        read_only_fields = fields


class PendingPushSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="item.sku", read_only=True)
    channel = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = PendingPush
        fields = [
            "id",
            "channel",
            "sku",
            "priority",
            "reason",
            "changes",
            "attempts",
            "not_before",
            "claimed_until",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ReportSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="who asked for it; null: the scheduled run"
    )

    class Meta:
        model = Report
        fields = [
            "id",
            "kind",
            "run_date",
            "status",
            "trigger",
            "requested_by",
            "started_at",
            "finished_at",
            "row_count",
            "total_value",
            "params",
            "error",
        ]
        read_only_fields = fields


class ReportRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReportRow
        exclude = ["report"]


class RunReportSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Report._meta.get_field("kind").choices)
