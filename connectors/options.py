"""``Connection.options`` per system: what is required and what each value must look like — in one place.

Used at save (``Connection.clean()``: the admin form, and any serializer that validates a connection) so a
connection cannot be stored without, say, its commercetools project key; and at use
(:func:`connectors.registry.get_connector` calls :func:`check`), so a connection stored before this check, or
written around it, fails with :class:`connectors.errors.ConfigurationError` (a PermanentError: the callers turn
it into an exception record) instead of a KeyError/ValueError deep in a connector.

What each connector reads is documented in its module; the values required here are the ones without which
no call can be right:

- commercetools ``project_key``: every API path starts with it (``/{projectKey}/…``, HTTP API docs
  https://docs.commercetools.com/api/general-concepts) and the default OAuth scope names it.
- sfcc ``site_id``: every Shop API path is ``/s/{site_id}/dw/shop/{version}/…`` (B2C Commerce OCAPI docs); a
  default would point a real instance at the demo site (RefArch). ``api_family`` is ``ocapi`` or ``scapi_oci``; the
  latter needs ``organization_id`` (``f_ecom_…``, the Admin APIs' ``/organizations/{organizationId}``).
- inventory_planner ``account`` (or the connection's client id): the ``Account`` header of every call
  (Inventory Planner API docs, authentication).
- clarus ``subdomain``: every call carries it as ``X-Clarus-Subdomain`` (Clarus API reference, "Authentication");
  the connector cannot be built without it, so a webhook to such a connection was a 500.
- WAIR, Archean: nothing required; numbers must be numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import env_secrets, errors
from .parsing import parse_iso


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be text"


def _required_text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "is required (non-empty text)"


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool):
        return "must be a whole number above 0"
    try:
        ok = int(value) > 0 and float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    return None if ok else "must be a whole number above 0"


def _non_negative_number(value: Any) -> str | None:
    if isinstance(value, bool):
        return "must be a number of 0 or more"
    try:
        ok = float(value) >= 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    return None if ok else "must be a number of 0 or more"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _import_key(value: Any) -> str | None:
    import re

    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_-]{2,256}", value):
        return None
    return "must be 2-256 letters, digits, '_' or '-' (an ImportContainer key)"


def _iso(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        parse_iso(value)
    except (TypeError, ValueError):
        return "must be an ISO-8601 date-time, e.g. 2026-01-31T00:00:00Z"
    return None


def _text_or_list(value: Any) -> str | None:
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        return None
    return "must be text or a list of texts"


def _sfcc_family(options: dict) -> dict[str, str]:
    """SFCC ``api_family``: ``ocapi`` (default) or ``scapi_oci``; ``scapi_oci`` needs ``organization_id``
    (``f_ecom_<realm>_<instance>``: every Admin API path is ``/organizations/{organizationId}/…`` and the token's
    tenant scope is ``SALESFORCE_COMMERCE_API:<realm>_<instance>``)."""
    family = options.get("api_family", "ocapi")
    if not isinstance(family, str) or family.strip().lower() not in ("ocapi", "scapi_oci"):
        return {"api_family": "must be one of ocapi, scapi_oci"}
    if family.strip().lower() != "scapi_oci":
        return {}
    org = options.get("organization_id")
    if not isinstance(org, str) or not org.strip():
        return {"organization_id": "is required for api_family scapi_oci"}
    if not org.startswith("f_ecom_") or len(org) <= len("f_ecom_"):
        return {"organization_id": "must be f_ecom_<realm>_<instance>, e.g. f_ecom_zzxy_prd"}
    return {}


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else 'must be an object, e.g. {"wair": "123"}'


Check = Callable[[Any], "str | None"]
REQUIRED: dict[str, tuple[str, ...]] = {
    "commercetools": ("project_key",),
    "sfcc": ("site_id",),
    "clarus": ("subdomain",),
}
CHECKS: dict[str, dict[str, Check]] = {
    "commercetools": {
        "project_key": _required_text,
        "scopes": _text_or_list,
        "write_concurrency": _positive_int,
        "orders_poll_lag_seconds": _non_negative_number,
        "orders_start": _iso,
        "gift_message_field": _text,
        "delivery_notes_field": _text,
        # full loads through the Import API (connectors.commercetools_import)
        "import_api": _bool,
        "import_min": _positive_int,
        "import_settle_seconds": _non_negative_number,
        "import_container": _import_key,
        "import_url": _text,
    },
    "sfcc": {
        "site_id": _required_text,
        "api_version": _required_text,
        "batch_size": _positive_int,
        "default_inventory_list": _text,
        "orders_start": _iso,
        "storefront_fulfilments_from": _iso,
        "scope": _text,
        "oci_tenant_group_id": _text,
    },
    "wair": {"page_size": _positive_int, "tenant": _text, "api_prefix": _text},
    "clarus": {"subdomain": _required_text, "page_size": _positive_int, "client_code": _text},
    "archean": {"page_size": _positive_int},
    "inventory_planner": {
        "account": _text,
        "batch_size": _positive_int,
        "page_size": _positive_int,
        "warehouses": _mapping,
    },
}


def option_errors(system_type: str, options: Any, client_id: str = "") -> dict[str, str]:
    """``{option name: what is wrong}``; empty when the options are usable for ``system_type``."""
    if options in (None, ""):
        options = {}
    if not isinstance(options, dict):
        return {"options": 'must be a JSON object, e.g. {"project_key": "my-project"}'}
    out: dict[str, str] = {}
    for name in REQUIRED.get(system_type, ()):
        if name not in options:
            out[name] = f"is required for {system_type}"
    if system_type == "inventory_planner" and not (options.get("account") or client_id):
        out["account"] = "is required for inventory_planner (or set the connection's client id to the account id)"
    if system_type == "sfcc":
        for name, why in _sfcc_family(options).items():
            out.setdefault(name, why)
    for name, check in CHECKS.get(system_type, {}).items():
        if name in options and name not in out:
            problem = check(options[name])
            if problem:
                out[name] = problem
    for name, value in _env_options(options):
        why = env_secrets.problem(str(value or ""))
        if why:
            out.setdefault(name, why)
    return out


def _env_options(value, path=""):
    """Every option (nested too) whose key ends in ``_env``: it names an environment variable with a secret."""
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if str(k).endswith("_env") and not isinstance(v, (dict, list)):
                yield where, v
            else:
                yield from _env_options(v, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _env_options(v, f"{path}[{i}]")


def describe(problems: dict[str, str]) -> str:
    return "; ".join(
        f"options.{name} {why}" if name != "options" else f"options {why}" for name, why in problems.items()
    )


def check(connection) -> None:
    """Raise :class:`ConfigurationError` naming every unusable option of this connection."""
    problems = option_errors(connection.system_type, connection.options, getattr(connection, "client_id", ""))
    if problems:
        raise errors.ConfigurationError(
            f"connection {connection.name} is misconfigured: {describe(problems)}", system=connection.system_type
        )
