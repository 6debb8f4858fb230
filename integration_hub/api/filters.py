"""The API's filter backend: django-filter's, with date-time filters that work on every database engine.

An ISO date-time may carry any UTC offset up to ±23:59, but PostgreSQL accepts offsets only up to ±15:59
("time zone displacement out of range": a 500 found by the API fuzz run). Filter values are therefore
converted to UTC before they reach the query; a value that cannot be (out of the representable range) is a
400 like any other unreadable filter value.
"""

from __future__ import annotations

from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.db import models
from django_filters import fields, filters
from django_filters.rest_framework import DjangoFilterBackend, FilterSet


class UTCIsoDateTimeField(fields.IsoDateTimeField):
    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt_timezone.utc)
        except (OverflowError, ValueError) as exc:
            raise ValidationError("Enter a date-time within the supported range.", code="invalid") from exc


class UTCIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class HubFilterSet(FilterSet):
    FILTER_DEFAULTS = {**FilterSet.FILTER_DEFAULTS, models.DateTimeField: {"filter_class": UTCIsoDateTimeFilter}}


class HubFilterBackend(DjangoFilterBackend):
    filterset_base = HubFilterSet
