""" "Received, not acknowledged" is part of the error taxonomy: recognised by ``isinstance``, never by class name."""

from __future__ import annotations

from connectors import errors
from connectors.wair import NotAcknowledged
from exceptions_app.services import kind_for_error


def test_wair_not_acknowledged_is_the_taxonomy_error():
    exc = NotAcknowledged("pending", order_ref="uk-web-1")
    assert isinstance(exc, errors.NotAcknowledgedError)
    assert isinstance(exc, errors.RetryableError) and exc.retryable
    assert exc.kind == "not_acknowledged" and exc.order_ref == "uk-web-1"


def test_not_acknowledged_files_like_any_retryable_error():
    # the send loop keeps such an order *sent* without a transport record; elsewhere it is a sync_timeout
    assert kind_for_error(errors.NotAcknowledgedError("pending")) == "sync_timeout"
    assert not isinstance(errors.RetryableError("503"), errors.NotAcknowledgedError)
