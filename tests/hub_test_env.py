"""pytest plugin (pytest.ini ``-p tests.hub_test_env``): test-only settings environment.

Loaded before pytest-django imports the settings (a conftest.py is too late for that), so plain
``pytest`` works as well as ``./hub test``. The suite runs with debug off — the production settings —
so it needs a secret key and an encryption key; these are test-only values, set only when absent.
The test client and the live server speak plain http: no SSL redirect, no Secure-only cookies.
Everything here is inherited by the Celery worker processes the tests start.
"""

import os

from cryptography.fernet import Fernet

TEST_ENV = {
    "HUB_SECRET_KEY": "test-only-secret-key-integration-hub-suite-never-use-in-production-7c41",
    "HUB_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "HUB_SECURE_SSL_REDIRECT": "false",
    "HUB_SECURE_COOKIES": "false",
    # The sandbox and the test servers listen on loopback, which the outbound guard
    # (connectors/egress.py) refuses unless allow-listed.
    "HUB_OUTBOUND_ALLOW": "127.0.0.1,localhost,::1",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)
