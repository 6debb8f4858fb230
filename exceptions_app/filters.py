"""django-filter sets for the exception queue (console and API share them)."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db.models import Q
from django.utils import timezone

from integration_hub.core.models import Channel, Connection

from .models import ACTIVE_STATUSES, ExceptionRecord, Kind, Severity, Status

AGE_CHOICES = [
    ("1h", "older than 1 hour"),
    ("24h", "older than 24 hours"),
    ("7d", "older than 7 days"),
    ("new", "new in the last hour"),
]
_AGE = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
STATUS_CHOICES = [("active", "open or acknowledged"), *Status.choices, ("all", "any status")]


class ExceptionFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="SKU, order number or e-mail")
    kind = django_filters.ChoiceFilter(choices=Kind.choices, empty_label="any kind")
    severity = django_filters.ChoiceFilter(choices=Severity.choices, empty_label="any severity")
    status = django_filters.ChoiceFilter(choices=STATUS_CHOICES, method="filter_status", empty_label=None)
    connection = django_filters.ModelChoiceFilter(
        queryset=Connection.objects.only("id", "name", "system_type"), empty_label="any connection"
    )
    channel = django_filters.ModelChoiceFilter(queryset=Channel.objects.only("id", "name"), empty_label="any channel")
    age = django_filters.ChoiceFilter(choices=AGE_CHOICES, method="filter_age", empty_label="any age", label="Age")

    class Meta:
        model = ExceptionRecord
        fields = ["q", "kind", "severity", "status", "connection", "channel", "age"]

    def __init__(self, data=None, *args, **kwargs):
        data = data.copy() if data is not None else {}
        if not data.get("status"):
            data["status"] = "active"
        super().__init__(data, *args, **kwargs)

    def search(self, queryset, name, value):
        """SKU, the hub's order key, or what CX know: the order number (partial, '#' ignored) or the customer's
        e-mail — those through the order mirror (one subquery)."""
        from integration_hub.orders.models import Order

        value = value.strip().lstrip("#").strip()
        if not value:
            return queryset
        orders = Order.objects.filter(Q(order_number__icontains=value) | Q(customer_email__icontains=value))
        return queryset.filter(
            Q(sku__iexact=value)
            | Q(order_ref__iexact=value)
            | Q(sku__istartswith=value)
            | Q(order_ref__istartswith=value)
            | Q(dedupe_key__icontains=value)
            | Q(order_ref__in=orders.values("idempotency_key"))
        )

    def filter_status(self, queryset, name, value):
        if value == "active":
            return queryset.filter(status__in=ACTIVE_STATUSES)
        if value == "all" or not value:
            return queryset
        return queryset.filter(status=value)

    def filter_age(self, queryset, name, value):
        now = timezone.now()
        if value == "new":
            return queryset.filter(first_seen__gte=now - timedelta(hours=1))
        if value in _AGE:
            return queryset.filter(first_seen__lt=now - _AGE[value])
        return queryset
