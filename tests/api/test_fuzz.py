"""API fuzz run: schemathesis generates requests for every operation of the app's OpenAPI schema and sends
each with a token of every role (ops, cx, finance, admin) through the WSGI app. Any 5xx, undocumented status
code or content type, or response body that does not match the documented schema fails.

Bounded and repeatable: a few examples per operation, derandomized (same cases every run), no shrinking,
no example database. Schemathesis: https://schemathesis.readthedocs.io/en/stable/ (Python API: loading a
schema, ``case.call``, ``case.validate_response`` with explicit checks).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from knox.models import AuthToken
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import factories as f

ROLES = ("ops", "cx", "finance", "admin")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 10
FEWER_EXAMPLES = {"GET /api/schema/": 3}  # each answer regenerates the whole schema (~1 s)

_django_app = WSGIHandler()


def wsgi_app(environ, start_response):
    """Django's WSGI handler as the test client runs it: the request must not close the test's database
    connection (which holds the test transaction), so ``close_old_connections`` is unhooked meanwhile."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = _django_app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return [body]


def served_schema() -> dict:
    """The document ``GET /api/schema/`` serves (same generator and hooks; checked below)."""
    return SchemaGenerator().get_schema(request=None, public=True)


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = wsgi_app
OPERATIONS = sorted(op.ok().label for op in schema.get_all_operations())


@pytest.fixture(scope="module")
def fuzz_world(django_db_setup, django_db_blocker):
    """One world with a row of every kind, and a token per role, made once for the module inside a
    transaction that is rolled back at the end (each test then runs in its own savepoint, like TestCase)."""
    from django.contrib.auth.models import Group, User
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from exceptions_app.models import Kind
    from integration_hub.catalog.models import IdentifierTransform
    from integration_hub.orders.models import OrderState, ShippingMethodMap
    from integration_hub.reconciliation import services as recon

    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            w = f.console_world()
            f.sku_exceptions(w, w.items[:2])
            f.sku_exceptions(w, w.items[2:3], kind=Kind.UNKNOWN_SKU, strip=False)
            f.mappings(w, w.items[3:5])
            IdentifierTransform.objects.create(name="strip", strip_leading_zeros=True)
            ShippingMethodMap.objects.create(channel=w.channel, storefront_method="std", warehouse_method="DPD")
            PeriodicTask.objects.create(
                name="job", task="x.y", interval=IntervalSchedule.objects.create(every=60, period="seconds")
            )
            recon.generate("stock_drift")
            f.orders(w, 2, state=OrderState.HELD)
            f.stock(w, w.items, 3)
            f.pushes(w, w.items[:2])
            tokens = {}
            for role in ROLES:
                user = User.objects.create(
                    username=f"fuzz-{role}", is_staff=role == "admin"
                )  # no password: none needed
                user.groups.add(Group.objects.get(name=role))
                tokens[role] = AuthToken.objects.create(user=user)[1]
            yield tokens
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def tokens(fuzz_world, db):
    cache.clear()  # token-view throttle history
    return fuzz_world


def test_the_fuzzed_schema_is_the_one_the_app_serves(tokens):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {tokens['finance']}")
    r = api.get("/api/schema/?format=json")
    assert r.status_code == 200
    assert r.json() == served_schema()
    assert len(OPERATIONS) >= 50  # every operation is fuzzed


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_fuzz(label, tokens):
    operation = schema.find_operation_by_label(label)
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(
        max_examples=FEWER_EXAMPLES.get(label, MAX_EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        for role in ROLES:
            response = case.call(headers={"Authorization": f"Token {tokens[role]}"})
            try:
                case.validate_response(response, checks=CHECKS)
            except (FailureGroup, Failure) as exc:
                raise AssertionError(f"{label} as {role}: {exc}") from exc

    fuzz()
