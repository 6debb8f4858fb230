"""Each error class is filed under its own exception kind (issue 14: a WAIR 401 and a WAIR 422 both became
``sync timeout``): refused credentials → ``auth_failure`` on the connection; data the remote refused →
``bad_payload`` on the record, with its order; only timeouts / 5xx stay ``sync_timeout``."""

from __future__ import annotations

import pytest
from django.utils import timezone

from connectors import errors
from connectors.wair import WairValidationError
from exceptions_app.models import ExceptionRecord
from exceptions_app.services import kind_for_error
from integration_hub.orders import capture, fulfilments, processing, send
from integration_hub.orders.models import StorefrontFulfilment

from .conftest import make_so


@pytest.mark.parametrize(
    "exc, kind",
    [
        (errors.PermanentError("WAIR POST /orders → 401 (permanent)", status=401), "auth_failure"),
        (errors.PermanentError("token endpoint refused the credentials (403)", status=403), "auth_failure"),
        (
            WairValidationError("422", fields={"locationId": "location 'uk-web' is not known"}, status=422),
            "bad_payload",
        ),
        (errors.BadDataError("400", status=400), "bad_payload"),
        (errors.RateLimitedError("429", status=429), "rate_limited"),
        (errors.TimeoutError_("slow"), "sync_timeout"),
        (errors.RetryableError("503", status=503), "sync_timeout"),
    ],
)
def test_kind_for_error(exc, kind):
    assert kind_for_error(exc) == kind


def test_wair_401_on_send_is_an_auth_failure_on_the_connection(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-401"))
    processing.validate_due()
    wh.script[o.idempotency_key] = [errors.PermanentError("WAIR POST /orders → 401 (permanent)", status=401)]
    send.send_due()
    kinds = set(ExceptionRecord.objects.values_list("kind", flat=True))
    assert "sync_timeout" not in kinds
    rec = ExceptionRecord.objects.get(dedupe_key="auth_failure:wair")
    assert rec.connection_id == world.wh.pk and rec.kind == "auth_failure" and "credentials" in rec.title


def test_wair_422_on_a_fulfilment_is_bad_data_on_its_order(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-422"))
    StorefrontFulfilment.objects.create(
        order=o,
        fulfilment_ref="F1",
        warehouse=world.wh,
        lines=[["SKU-1", 1]],
        location="uk-web",
        fulfilled_at=timezone.now(),
    )
    wh.script["F:F1"] = [
        WairValidationError("WAIR 422", fields={"locationId": "location 'uk-web' is not known"}, status=422)
        for _ in range(3)
    ]
    for _ in range(3):
        StorefrontFulfilment.objects.update(next_attempt_at=None)
        fulfilments.send_fulfilments()
    assert not ExceptionRecord.objects.filter(kind="sync_timeout").exists()
    rec = ExceptionRecord.objects.get(kind="bad_payload")
    assert rec.order_ref == o.idempotency_key and "locationId" in rec.title and rec.channel_id == world.channel.pk
    # the fulfilment going through later clears it
    StorefrontFulfilment.objects.update(next_attempt_at=None)
    fulfilments.send_fulfilments()
    rec.refresh_from_db()
    assert rec.status == "resolved"
