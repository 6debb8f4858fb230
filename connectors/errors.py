"""One error taxonomy for every external call (ARCHITECTURE principle 3).

Hierarchy (callers decide by ``isinstance``, never by class name)::

    ConnectorError                 permanent unless a subclass says otherwise
    ├── RetryableError             timeouts, connection failures, 5xx: try again after a back-off
    │   ├── TimeoutError_
    │   ├── RateLimitedError       429 (``retry_after``)
    │   ├── NotAcknowledgedError   received, not acknowledged yet (202 pending): ask again, same key
    │   └── ImportPending          a bulk import still processing the record
    ├── ConflictError              409 / version mismatch (retryable after a re-read)
    ├── NotFoundError
    ├── PermanentError             4xx retrying cannot fix
    │   ├── UnsafeDestinationError
    │   ├── RedirectRefusedError
    │   └── ConfigurationError
    └── BadDataError               the payload is invalid: a person or a data fix
"""

from __future__ import annotations

DETAIL_LIMIT = 2000


class ConnectorError(Exception):
    """Base class. ``retryable`` says whether the same call may succeed later."""

    retryable = False
    kind = "permanent"

    def __init__(
        self, message: str, *, status: int | None = None, body=None, retry_after: float | None = None, system: str = ""
    ):
        super().__init__(message)
        self.status, self.body, self.retry_after, self.system = status, body, retry_after, system

    @property
    def detail(self) -> str:
        """What the remote answered (an excerpt of its body), for admins only: never part of ``str(self)``,
        which people on the ops screens read (a body can carry anything the remote chose to return)."""
        if self.body is None or self.body == "":
            return ""
        return str(self.body)[:DETAIL_LIMIT]


class RetryableError(ConnectorError):
    """Timeouts, connection failures, 5xx: try again after a back-off."""

    retryable = True
    kind = "retryable"


class TimeoutError_(RetryableError):
    kind = "timeout"


class NotAcknowledgedError(RetryableError):
    """The remote *received* the request but has not acknowledged it yet (an HTTP 202 "pending": no id for the
    record yet). Not a failure of the call and not a timeout: the work is at the remote, unconfirmed. A
    RetryableError because asking again is how the caller gets the acknowledgement (safe when the request
    carries an idempotency key: the remote replays, never duplicates). Callers that track acknowledgements
    (the order send loop) recognise it by ``isinstance`` and keep the record *sent*, backing off without filing
    a transport problem. ``order_ref``: the record the remote holds unacknowledged, when known.
    System-specific subclasses add nothing but their name (``connectors.wair.NotAcknowledged``)."""

    kind = "not_acknowledged"

    def __init__(self, message: str, *, order_ref: str = "", **kw):
        super().__init__(message, **kw)
        self.order_ref = order_ref


class RateLimitedError(RetryableError):
    """429: try again after ``retry_after`` seconds."""

    kind = "rate_limited"


class ConflictError(ConnectorError):
    """409 / version mismatch: re-read the resource and retry with the current version."""

    retryable = True
    kind = "conflict"

    def __init__(self, message: str, *, current_version: int | None = None, **kw):
        super().__init__(message, **kw)
        self.current_version = current_version


class NotFoundError(ConnectorError):
    kind = "not_found"


class PermanentError(ConnectorError):
    """4xx that retrying cannot fix (auth refused, forbidden, bad route)."""

    kind = "permanent"


class BadDataError(ConnectorError):
    """Our payload (or theirs) is invalid: needs a person or a data fix, not a retry."""

    kind = "bad_data"


class UnsafeDestinationError(PermanentError):
    """The destination is not allowed: not http(s), or its host resolves to a loopback, private,
    link-local (metadata), CGNAT, multicast or reserved address that ``HUB_OUTBOUND_ALLOW`` does not list
    (:mod:`connectors.egress`). Needs an admin to fix the URL or the allow-list, not a retry."""

    kind = "unsafe_destination"


class RedirectRefusedError(PermanentError):
    """The remote redirected to another origin (scheme, host, port). Redirects are followed within the
    same origin only: credentials headers (API keys, account ids) must never travel to a different host."""

    kind = "redirect_refused"


class ConfigurationError(PermanentError):
    """The connection itself is unusable as configured (a required option missing, a number that is not one):
    no retry helps until an admin fixes it. Raised before any call (:func:`connectors.options.check`)."""

    kind = "configuration"


def error_detail(exc: BaseException) -> str:
    """The admin-only detail of any exception ("" when it has none)."""
    return exc.detail if isinstance(exc, ConnectorError) else ""


class ImportPending(RetryableError):
    """A bulk import accepted the record and is still processing it: its outcome is read back later (commercetools
    Import API operations, :mod:`connectors.commercetools_import`), not a failure. The push engine keeps the row in
    the outbox, deferred by ``retry_after``; the outcome step (:mod:`integration_hub.inventory.import_outcomes`)
    confirms it or records why it failed. Past the deferral the row is pushed again through the delta path."""

    kind = "import_pending"
