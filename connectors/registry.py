"""Connection → connector instance. Each system module registers its class(es) here."""

from __future__ import annotations

import importlib

# system_type → "module:Class". Modules are imported lazily.
CONNECTORS = {
    "commercetools": "connectors.commercetools:CommercetoolsConnector",
    "sfcc": "connectors.sfcc:SFCCConnector",
    "wair": "connectors.wair:WairConnector",
    "clarus": "connectors.clarus:ClarusConnector",
    "archean": "connectors.archean:ArcheanConnector",
    "inventory_planner": "connectors.inventory_planner:InventoryPlannerConnector",
    "wair_replenishment": "connectors.wair_replenishment:WairReplenishmentConnector",
}
# (system_type, options["api_family"]) → "module:Class": a connection of a system with several API families
# gets that family's class (the default family is CONNECTORS' class)
FAMILIES = {
    ("sfcc", "scapi_oci"): "connectors.sfcc_scapi:SFCCScapiConnector",
}

_cache: dict = {}


def api_notice(system_type: str) -> tuple[bool, str]:
    """``(modelled, text)``: what the admin tells people about a system type's connector — the published
    document it follows, or that its shape is an assumption (no published API). ``(False, "")`` for
    unknown types."""
    try:
        cls = connector_class(system_type)
    except LookupError:
        return False, ""
    if cls.modelled:
        return True, (
            f"{cls.__name__} is modelled on no published API: its paths, fields and states are an assumption "
            f"(see the docstring of {cls.__module__}). Check them against the tenant's real API before go-live."
        )
    return False, f"{cls.__name__} follows the published API: {cls.api_document}" if cls.api_document else ""


def connector_class(system_type: str):
    try:
        target = CONNECTORS[system_type]
    except KeyError:
        raise LookupError(f"no connector for system type {system_type!r}") from None
    return _load(target)


def class_for(connection):
    """The class that serves ``connection``: its system type's, or its ``api_family``'s (:data:`FAMILIES`)."""
    family = str((connection.options or {}).get("api_family") or "").strip().lower()
    target = FAMILIES.get((connection.system_type, family))
    return _load(target) if target else connector_class(connection.system_type)


def _load(target: str):
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def get_connector(connection, fresh: bool = False):
    """A connector for ``connection``, cached per process and connection version (so pooled sessions,
    token caches and rate-limit buckets are reused). Unusable options raise ``errors.ConfigurationError``."""
    key = (
        connection.pk,
        connection.system_type,
        connection.base_url,
        connection.rate_limit_per_second,
        connection.rate_limit_burst,
        connection.timeout_seconds,
        connection.max_retries,
        repr(connection.options),
        # a rotated webhook secret takes effect at once (verify_webhook reads it from this connection object)
        connection.webhook_secret_env,
        connection.webhook_secret_encrypted,
    )
    if fresh or key not in _cache:
        from .options import check

        check(connection)  # ConfigurationError (a PermanentError) before a connector half-builds
        _cache[key] = class_for(connection)(connection)
    return _cache[key]


def clear_cache():
    _cache.clear()
