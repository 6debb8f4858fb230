"""Optional error reporting to Sentry: only when ``SENTRY_DSN`` is set *and* ``sentry-sdk`` is installed
(it is not a requirement of the hub: ``pip install sentry-sdk`` where it is wanted). sentry-sdk enables
its Django and Celery integrations by itself when those packages are present
(https://docs.sentry.io/platforms/python/integrations/django/). No personal data is sent, and no local
variables: sentry-sdk does not honour Django's ``sensitive_variables`` (the webhook verifiers' secrets and
expected digests, connection secrets in the clients' frames), so frames go without their locals
(``include_local_variables=False``, https://docs.sentry.io/platforms/python/configuration/options/)."""

from __future__ import annotations

import logging
import os


def init_from_env(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        logging.getLogger(__name__).warning(
            "SENTRY_DSN is set but sentry-sdk is not installed: errors are not reported"
        )
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environ.get("HUB_ENVIRONMENT", "production"),
        send_default_pii=False,
        include_local_variables=False,
        traces_sample_rate=float(environ.get("SENTRY_TRACES_SAMPLE_RATE", "0") or 0),
    )
    return True
