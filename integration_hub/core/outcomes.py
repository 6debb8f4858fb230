"""Call a connection and record the outcome: the one failure policy of every connection-level operation.

``with connection_call(conn, "stock_changes", title=…, action="retry_poll") as call: …`` runs the block and then:

- **on a connector error** (:class:`connectors.errors.ConnectorError`, or another type named in ``catch``): files
  one exception record under the kind :func:`exceptions_app.services.error_key` picks (``rate_limited`` /
  ``sync_timeout`` / ``auth_failure`` — one per connection, whatever the operation — / ``bad_payload``), keyed
  ``<kind>:<connection name>:<operation>``; its message is ``str(exc)`` (the classified text ops may read, never
  the remote's body: that goes to ``Connection.last_error_detail``, admins only) and its context names the
  operation, the error type and the fix action. A connector error also stamps the connection
  (:meth:`Connection.record_error`: ``last_error`` / ``last_error_at`` / ``last_error_detail``); an error that is
  not the connection's (``NotImplementedError``: the system cannot do this) files the record only.
  Then the error is swallowed — ``call.failed`` / ``call.error`` tell the caller — unless ``reraise=True``
  (a task that lets Celery retry it).
- **on success**: clears every transport record of that operation (:func:`exceptions_app.services.transport_keys`:
  the three per-operation kinds and the connection's ``auth_failure``) and stamps ``Connection.last_success_at``.
- any other exception passes through untouched: no record, no clearing, no stamp.

The block may add to ``call.context`` while it runs (e.g. how many lines were still waiting); what is there when it
fails goes into the record.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from django.utils import timezone

from connectors import errors
from exceptions_app.services import clear, error_key, raise_exception, transport_keys
from integration_hub.core.models import Connection

MESSAGE_LIMIT = 2000


@dataclass
class ConnectionCall:
    """One call of ``operation`` on ``connection``; after the ``with`` block: what happened."""

    connection: Connection
    operation: str
    context: dict = field(default_factory=dict)
    error: BaseException | None = None
    kind: str = ""
    key: str = ""

    @property
    def failed(self) -> bool:
        return self.error is not None

    def error_text(self, limit: int = 300) -> str:
        """The error as the caller's result reports it (``""`` on success)."""
        return str(self.error)[:limit] if self.error is not None else ""


@contextmanager
def connection_call(
    connection: Connection,
    operation: str,
    *,
    title: str,
    action: str = "",
    channel=None,
    context: dict | None = None,
    catch: tuple[type[BaseException], ...] = (errors.ConnectorError,),
    reraise: bool = False,
    cleared: str = "cleared by a later success",
    unexplained: str = "",
):
    """Run the block as one call of ``operation`` on ``connection`` and record its outcome (module docstring).

    ``title``: the record's title; ``action``: the fix the console offers (``context["action"]``, if any); ``channel``: the
    channel the record is filed on, if any; ``context``: more context for the record; ``catch``: the error types
    that are this call's failures (always connector errors; add e.g. ``NotImplementedError`` where a system that
    cannot do this is a failure to see); ``reraise``: re-raise a recorded failure instead of swallowing it;
    ``cleared``: the reason a success gives the records it resolves; ``unexplained``: the record's message for an
    error without text (default: the error's type name)."""
    call = ConnectionCall(connection, operation, context=dict(context or {}))
    try:
        yield call
    except catch as exc:
        call.error = exc
        call.kind, call.key = error_key(exc, connection.name, operation)
        message = str(exc)[:MESSAGE_LIMIT] or unexplained or type(exc).__name__
        context = {"operation": operation, "error": type(exc).__name__, **call.context}
        if action:
            context["action"] = action
        raise_exception(
            call.kind, call.key, title, message=message, connection=connection, channel=channel, context=context
        )
        if isinstance(exc, errors.ConnectorError):
            Connection.record_error(connection.pk, exc)
        if reraise:
            raise
        return
    clear(transport_keys(connection.name, operation), reason=cleared)
    Connection.objects.filter(pk=connection.pk).update(last_success_at=timezone.now())
