"""Fixtures shared by the SFCC connector tests: a connection to the sandbox's SFCC emulator, seeded."""

from __future__ import annotations

import pytest

from connectors.sfcc import SFCCConnector
from connectors.sfcc_scapi import SFCCScapiConnector
from tests.support.sandbox import controller, faulter

LISTS = ["inv_uk", "inv_eu"]
SKUS = [f"SF-{i:03d}" for i in range(1, 121)]


control = controller("sfcc")
faults = faulter("sfcc")


@pytest.fixture
def sf_conn(db, sandbox):
    from django.core.cache import cache

    from integration_hub.core.models import Connection

    cache.clear()
    conn = Connection(
        name="sfcc-test",
        system_type="sfcc",
        base_url=f"{sandbox.url}/sfcc",
        auth_url=f"{sandbox.url}/sfcc/dwsso/oauth2/access_token",
        client_id="am-client",
        options={"site_id": "RefArch", "default_inventory_list": "inv_uk"},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=4,
    )
    conn.set_secret("am-secret")
    conn.set_webhook_secret("sfcc-hook-secret")
    conn.save()
    control(sandbox, "configure_client", {"client_id": "am-client", "client_secret": "am-secret"})
    control(sandbox, "seed_catalog", {"channels": LISTS, "skus": SKUS, "quantity": 3})
    return conn


@pytest.fixture
def sf(sf_conn):
    c = SFCCConnector(sf_conn)
    c.client.backoff_base = 0.01
    return c


@pytest.fixture
def scapi_conn(db, sandbox):
    """An SFCC connection on the B2C Commerce API + OCI (api_family scapi_oci), the site selling from OCI."""
    from django.core.cache import cache

    from integration_hub.core.models import Connection

    cache.clear()
    conn = Connection(
        name="sfcc-scapi",
        system_type="sfcc",
        base_url=f"{sandbox.url}/sfcc",
        auth_url=f"{sandbox.url}/sfcc",
        client_id="am-client",
        options={
            "api_family": "scapi_oci",
            "organization_id": "f_ecom_zzxy_prd",
            "site_id": "RefArch",
            "default_inventory_list": "inv_uk",
        },
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=4,
    )
    conn.set_secret("am-secret")
    conn.set_webhook_secret("sfcc-hook-secret")
    conn.save()
    control(sandbox, "configure_client", {"client_id": "am-client", "client_secret": "am-secret"})
    control(sandbox, "configure_site", {"inventory": "oci"})
    control(sandbox, "seed_catalog", {"channels": LISTS, "skus": SKUS, "quantity": 3})
    return conn


@pytest.fixture
def scapi(scapi_conn):
    c = SFCCScapiConnector(scapi_conn)
    c.client.backoff_base = 0.01
    return c
