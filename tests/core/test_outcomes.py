"""core.outcomes.connection_call: the one "call a connection and record the outcome" policy."""

from __future__ import annotations

import pytest

from connectors import errors
from exceptions_app.models import ExceptionRecord
from integration_hub.core.models import Connection
from integration_hub.core.outcomes import connection_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn():
    return Connection.objects.create(name="wh", system_type="wair", base_url="https://wair.example.com")


def _fail(conn, exc, **kw):
    with connection_call(
        conn, "stock_changes", title="Polling stock from wh failed", action="retry_poll", **kw
    ) as call:
        raise exc
    return call


@pytest.mark.parametrize(
    "exc, key",
    [
        (errors.TimeoutError_("master timed out"), "sync_timeout:wh:stock_changes"),
        (errors.RetryableError("502 from the master", status=502), "sync_timeout:wh:stock_changes"),
        (errors.RateLimitedError("429", status=429, retry_after=3), "rate_limited:wh:stock_changes"),
        (errors.BadDataError("payload refused", status=422), "bad_payload:wh:stock_changes"),
        (errors.PermanentError("credentials refused", status=401), "auth_failure:wh"),  # one per connection
        (errors.PermanentError("forbidden", status=403), "auth_failure:wh"),
        (errors.NotFoundError("no such list"), "sync_timeout:wh:stock_changes"),
    ],
)
def test_each_error_kind_files_its_record_and_stamps_the_connection(conn, exc, key):
    call = _fail(conn, exc)
    assert call.failed and call.error is exc and call.key == key and call.kind == key.split(":")[0]
    rec = ExceptionRecord.objects.get(dedupe_key=key)
    assert rec.status == "open" and rec.connection == conn and rec.title == "Polling stock from wh failed"
    assert rec.context == {"operation": "stock_changes", "error": type(exc).__name__, "action": "retry_poll"}
    assert rec.message == str(exc)
    conn.refresh_from_db()
    assert conn.last_error == str(exc) and conn.last_error_at is not None and conn.last_success_at is None


def test_the_remote_body_goes_to_the_admin_detail_never_to_the_record(conn):
    _fail(conn, errors.BadDataError("payload refused", status=400, body='{"token": "s3cr3t"}'))
    rec = ExceptionRecord.objects.get(dedupe_key="bad_payload:wh:stock_changes")
    assert "s3cr3t" not in rec.message and "s3cr3t" not in str(rec.context)
    conn.refresh_from_db()
    assert "s3cr3t" not in conn.last_error and "s3cr3t" in conn.last_error_detail


def test_success_clears_every_transport_record_of_the_operation_and_stamps_success(conn):
    for exc in (
        errors.TimeoutError_("slow"),
        errors.RateLimitedError("429"),
        errors.BadDataError("no"),
        errors.PermanentError("refused", status=401),
    ):
        _fail(conn, exc)
    with connection_call(conn, "other_operation", title="t", action="a") as other:
        raise errors.TimeoutError_("other")
    assert other.failed
    with connection_call(conn, "stock_changes", title="t", action="retry_poll", cleared="poll succeeded") as call:
        pass
    assert not call.failed and call.error_text() == ""
    resolved = dict(ExceptionRecord.objects.values_list("dedupe_key", "status"))
    assert resolved == {
        "sync_timeout:wh:stock_changes": "resolved",
        "rate_limited:wh:stock_changes": "resolved",
        "bad_payload:wh:stock_changes": "resolved",
        "auth_failure:wh": "resolved",
        "sync_timeout:wh:other_operation": "open",
    }  # another operation's failure stays
    assert ExceptionRecord.objects.get(dedupe_key="auth_failure:wh").status_reason == "poll succeeded"
    conn.refresh_from_db()
    assert conn.last_success_at is not None


def test_the_block_adds_context_and_the_record_names_the_channel(conn):
    from integration_hub.core.models import Channel

    channel = Channel.objects.create(key="web", name="Web", connection=conn, external_id="sc-web")
    with connection_call(
        conn, "drift_check/web", title="t", action="retry_drift_check", channel=channel, context={"batch": 1}
    ) as call:
        call.context["lines_waiting"] = 7
        raise errors.TimeoutError_("slow")
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:wh:drift_check/web")
    assert rec.channel == channel
    assert rec.context == {
        "operation": "drift_check/web",
        "error": "TimeoutError_",
        "batch": 1,
        "lines_waiting": 7,
        "action": "retry_drift_check",
    }


def test_reraise_records_then_raises(conn):
    with pytest.raises(errors.TimeoutError_):
        _fail(conn, errors.TimeoutError_("slow"), reraise=True)
    assert ExceptionRecord.objects.get(dedupe_key="sync_timeout:wh:stock_changes").status == "open"


def test_other_errors_pass_through_untouched(conn):
    with pytest.raises(ValueError):
        _fail(conn, ValueError("a bug"))
    with pytest.raises(NotImplementedError):
        _fail(conn, NotImplementedError())
    assert not ExceptionRecord.objects.exists()
    conn.refresh_from_db()
    assert conn.last_error == "" and conn.last_error_at is None and conn.last_success_at is None


def test_a_listed_non_connector_error_files_the_record_but_does_not_stamp_the_connection(conn):
    call = _fail(conn, NotImplementedError(), catch=(errors.ConnectorError, NotImplementedError))
    assert call.failed
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:wh:stock_changes")
    assert rec.message == "NotImplementedError"  # never an empty message
    conn.refresh_from_db()
    assert conn.last_error_at is None and conn.last_success_at is None


def test_without_an_action_the_context_names_none_and_an_unexplained_error_gets_the_callers_words(conn):
    with connection_call(
        conn,
        "catalogue_audit",
        title="t",
        catch=(errors.ConnectorError, NotImplementedError),
        unexplained="connector cannot list SKUs",
    ) as call:
        raise NotImplementedError()
    assert call.failed
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:wh:catalogue_audit")
    assert rec.message == "connector cannot list SKUs"
    assert rec.context == {"operation": "catalogue_audit", "error": "NotImplementedError"}
