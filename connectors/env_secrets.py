"""Secrets named by environment variable: the one rule for every connection field and option that does so.

A connection may name an environment variable holding a secret (``secret_env``, ``webhook_secret_env``, and
options such as Inventory Planner's ``sftp_password_env`` or the commercetools SQS relay's
``accessSecret_env``). Only names with the prefix ``HUB_CONN_`` are read: an admin must never be able to send
the hub's own settings (``HUB_SECRET_KEY``, ``HUB_ENCRYPTION_KEY``, ``DATABASE_URL`` …) to a URL of their
choosing. A refused name is a permanent connector error; its value is never read.
"""

from __future__ import annotations

import os
import re

from . import errors

PREFIX = "HUB_CONN_"
_NAME_RX = re.compile(rf"^{PREFIX}[A-Z0-9_]+$")


class SecretEnvNotAllowed(errors.PermanentError, ValueError):
    """A connection names an environment variable outside the HUB_CONN_ prefix; its value is never read.
    A permanent connector error, so the sync that needed the secret records it for people to fix."""


def problem(name: str) -> str | None:
    """Why ``name`` may not hold a connection secret (``None`` when it may, or when no name is given)."""
    if not name or _NAME_RX.match(name):
        return None
    return (
        f"{name!r} is not allowed: connection secrets come only from environment variables named "
        f"{PREFIX}<NAME> (capitals, digits, underscores), never from the hub's own settings"
    )


def read(name: str, what: str = "secret", system: str = "") -> str:
    """The value of the allowed variable ``name`` ('' when unset or no name); raises SecretEnvNotAllowed."""
    why = problem(name)
    if why:
        raise SecretEnvNotAllowed(f"{what}: {why}", system=system)
    return os.environ.get(name, "") if name else ""
