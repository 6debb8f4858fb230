"""The OpenAPI schema (``/api/schema/``) says ``nullable`` wherever the API can answer null: every serializer
field over a ``null=True`` model field (directly or through a nullable relation), and computed fields that
can be None."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db.models import ForeignObjectRel, ManyToManyField
from rest_framework import serializers as drf
from rest_framework.test import APIClient

from integration_hub.api import serializers as s


@pytest.fixture
def schema(make_user):
    c = APIClient()
    c.force_authenticate(make_user("admin"))
    r = c.get("/api/schema/", {"format": "json"})
    assert r.status_code == 200
    return r.json()["components"]["schemas"]


def is_nullable(prop: dict) -> bool:
    if prop.get("nullable"):
        return True
    return any(
        sub.get("nullable") or sub.get("$ref", "").endswith("/NullEnum")
        for key in ("oneOf", "anyOf", "allOf")
        for sub in prop.get(key, [])
    )


def can_be_null(model, source: str) -> bool:
    """Whether ``source`` (``a`` or ``a.b``) read from a ``model`` row can be None."""
    for part in source.split("."):
        field = model._meta.get_field(part)
        if isinstance(field, (ForeignObjectRel, ManyToManyField)):
            return False  # a list (possibly empty), never null
        if field.null:
            return True
        model = field.related_model or model
    return False


MODEL_SERIALIZERS = [
    c
    for c in vars(s).values()
    if isinstance(c, type) and issubclass(c, drf.ModelSerializer) and c is not drf.ModelSerializer
]


@pytest.mark.parametrize("serializer", MODEL_SERIALIZERS, ids=lambda c: c.__name__)
def test_fields_over_nullable_model_fields_are_nullable(schema, serializer):
    component = schema[serializer.__name__.removesuffix("Serializer")]["properties"]
    model = serializer.Meta.model
    checked = wrong = 0
    for name, field in serializer().fields.items():
        if field.source == "*":
            continue
        try:
            nullable_in_model = can_be_null(model, field.source)
        except FieldDoesNotExist:  # not a model field (computed in to_representation): see the test below
            continue
        checked += 1
        if nullable_in_model != is_nullable(component[name]):
            wrong += 1
            print(
                serializer.__name__, name, "model nullable" if nullable_in_model else "model NOT NULL", component[name]
            )
    assert checked and not wrong


def test_computed_fields_that_can_be_none_are_nullable(schema):
    assert is_nullable(schema["OrderLine"]["properties"]["item_sku"])  # an unmapped line has no item
    for name in ("every", "period", "cron"):  # a schedule has an interval or a crontab, the other is null
        assert is_nullable(schema["Schedule"]["properties"][name]), name
    assert not is_nullable(schema["Order"]["properties"]["state"])  # and non-null stays non-null
    assert not is_nullable(schema["Exception"]["properties"]["kind"])
