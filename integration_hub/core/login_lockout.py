"""Login lockout (django-axes): who the client is, and what a locked-out client is told.

Axes counts every failed ``django.contrib.auth.authenticate(request, ...)`` — the console login, the Django
admin login and ``POST /api/token/`` — and after ``AXES_FAILURE_LIMIT`` failures for one username or one
client address refuses further attempts for ``AXES_COOLOFF_TIME`` (settings, "authentication" block).
Admins unlock with ``manage.py axes_reset_username <name>`` / ``axes_reset_ip <addr>`` / ``axes_reset``
or by deleting the row under "Access attempts" in the Django admin.

Configuration reference: https://django-axes.readthedocs.io/en/latest/4_configuration.html
(``AXES_CLIENT_IP_CALLABLE``, ``AXES_LOCKOUT_CALLABLE``).
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

LOCKED_STATUS = 429


class LockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check (first in ``AUTHENTICATION_BACKENDS``). Every HTTP login path passes the request
    (Django's LoginView and admin, DRF, our token view); a call without one — a management command, a shell,
    the test client's ``login()`` — is not a login over the network and is not counted or refused, instead of
    axes' ValueError."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str | None:
    """The client's address. ``REMOTE_ADDR`` unless ``HUB_TRUSTED_PROXY_COUNT`` (N) says N reverse proxies
    append to ``X-Forwarded-For``: then the Nth address from the right (what the outermost trusted proxy
    saw). Same rule as DRF's ``NUM_PROXIES`` (set from the same setting), so the token throttle and the
    lockout agree on who the client is. Addresses a client wrote into the header itself are never used."""
    remote = request.META.get("REMOTE_ADDR")
    count = getattr(settings, "HUB_TRUSTED_PROXY_COUNT", 0)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if count <= 0 or not forwarded:
        return remote
    addrs = [a.strip() for a in forwarded.split(",") if a.strip()]
    if not addrs:
        return remote
    return addrs[-min(count, len(addrs))]


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed login attempts. Login is locked for {minutes} minutes; an administrator can unlock it sooner."
    )


def _is_api(request) -> bool:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.namespace == "api"
    return request.path_info.startswith("/api/")


def lockout_response(request, original_response=None, credentials=None):
    """429 for a locked-out login: JSON ``{"detail": ...}`` on the API, the lockout page elsewhere."""
    message = lockout_message()
    if _is_api(request):
        response = JsonResponse({"detail": message}, status=LOCKED_STATUS)
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"message": message, "cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)},
            status=LOCKED_STATUS,
        )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
