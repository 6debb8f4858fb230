"""Logging filters (settings.LOGGING)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class QuietPermissionDenied(logging.Filter):
    """A 403 is an expected answer, not a fault: keep Django's one "Forbidden (Permission denied): /path"
    line but drop the traceback it attaches to every refused request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
