"""Start-up refusals for unsafe configurations, called from ``settings.py`` while it is imported.

Every process — web (runserver, waitress), Celery worker and beat, any manage.py command — reads the
settings, so an unsafe configuration stops all of them with one clear ``ImproperlyConfigured``:

- debug on while ``ALLOWED_HOSTS`` names anything but loopback (the debug pages show settings,
  environment and local variables);
- debug off with the public development ``SECRET_KEY`` or none set;
- debug off without a valid ``HUB_ENCRYPTION_KEY`` (connection secrets at rest).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .crypto import parse_keys

# Public (it is in the repository): fine for the loopback demo, refused in production.
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1", "testserver"})


def non_loopback(hosts) -> list[str]:
    return [h for h in hosts if h.strip().lower() not in LOOPBACK_HOSTS]


def check(*, debug: bool, allowed_hosts, secret_key: str | None, encryption_key: str) -> None:
    if debug:
        public = non_loopback(allowed_hosts)
        if public:
            raise ImproperlyConfigured(
                f"HUB_DEBUG is on but HUB_ALLOWED_HOSTS includes non-loopback hosts ({', '.join(public)}). "
                "Debug pages expose settings and environment; debug is for the loopback demo only "
                "(localhost, 127.0.0.1, [::1]). Set HUB_DEBUG=false to serve other hosts."
            )
        return
    if not secret_key or secret_key == DEV_SECRET_KEY:
        raise ImproperlyConfigured(
            "HUB_SECRET_KEY must be set to a long random value when HUB_DEBUG is off "
            "(the built-in development key is public)."
        )
    if not encryption_key:
        raise ImproperlyConfigured(
            "HUB_ENCRYPTION_KEY must be set to a Fernet key when HUB_DEBUG is off (it encrypts connection "
            "secrets at rest; make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')."
        )
    try:
        parse_keys(encryption_key)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
