"""One error taxonomy for every external call (ARCHITECTURE principle 3)."""
from __future__ import annotations


class ConnectorError(Exception):
    """Base class. ``retryable`` says whether the same call may succeed later."""

    retryable = False
    kind = "permanent"

    def __init__(self, message: str, *, status: int | None = None, body=None, retry_after: float | None = None, system: str = ""):
        super().__init__(message)
        self.status, self.body, self.retry_after, self.system = status, body, retry_after, system


class RetryableError(ConnectorError):
    """Timeouts, connection failures, 5xx: try again after a back-off."""

    retryable = True
    kind = "retryable"


class TimeoutError_(RetryableError):
    kind = "timeout"


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


class ConfigurationError(PermanentError):
    """The connection itself is unusable as configured (a required option missing, a number that is not one):
    no retry helps until an admin fixes it. Raised before any call (:func:`connectors.options.check`)."""

    kind = "configuration"
