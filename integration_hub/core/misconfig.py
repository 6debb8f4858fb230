"""A connection unusable as configured (``connectors.errors.ConfigurationError``) becomes one exception record
per connection and operation — merged, with the reason and the fix — instead of a crash. Webhook views answer
it with a 503 (the sender retries; the data is not lost once an admin fixes the options)."""

from __future__ import annotations

from django.http import JsonResponse

from exceptions_app import kinds
from exceptions_app.services import raise_exception


def record(conn, exc: Exception, operation: str):
    return raise_exception(
        "sync_timeout",
        kinds.key("sync_timeout", conn.name, operation, "configuration"),
        f"Connection {conn.name} is misconfigured",
        message=str(exc)[:2000],
        connection=conn,
        context={
            "operation": operation,
            "reason": "configuration",
            "error": type(exc).__name__,
            "action": "fix_connection",
        },
    )


def webhook_response(conn, exc: Exception, operation: str) -> JsonResponse:
    record(conn, exc, operation)
    # the caller is not authenticated yet: the details are in the exception record, not in the answer
    return JsonResponse({"error": f"connection {conn.name} is misconfigured in the hub: retry later"}, status=503)
