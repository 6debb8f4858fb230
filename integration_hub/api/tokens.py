"""API tokens: hashed, expiring, revocable (django-rest-knox), issued by ``POST /api/token/``.

- ``POST /api/token/`` with ``{"username", "password"}`` (JSON or form, as before) → ``{"token", "expiry"}``.
  The token is shown once; the database keeps only its SHA-512 digest (``knox.AuthToken.digest``) and the
  first characters as a lookup key. It expires after ``HUB_API_TOKEN_TTL_HOURS`` (``REST_KNOX.TOKEN_TTL``).
- The password is checked with ``django.contrib.auth.authenticate(request, ...)``, so a failed attempt
  counts toward the login lockout (django-axes) exactly like a console or admin login, and a locked-out
  client gets 429. The view is also rate limited per client address (``HUB_API_TOKEN_RATE``).
- ``POST /api/token/logout/`` revokes the token that made the call; ``POST /api/token/logoutall/`` every
  token of that user.

Send the token as ``Authorization: Token <token>``. Knox: https://jazzband.github.io/django-rest-knox/
(views: LoginView / LogoutView / LogoutAllView; auth: knox.auth.TokenAuthentication).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox import views as knox_views
from knox.models import AuthToken
from knox.settings import knox_settings
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from integration_hub.core.login_lockout import LOCKED_STATUS, lockout_message

THROTTLE_SCOPE = "api_token"


def issue_token(user, ttl: timedelta | None = None):
    """A new token for ``user`` (e.g. a service user), expiring after ``ttl`` (default the configured TTL).
    Returns ``(AuthToken row, token string)``; the string exists only here — show it once."""
    return AuthToken.objects.create(user=user, expiry=ttl if ttl is not None else knox_settings.TOKEN_TTL)


class TokenLoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        max_length=4096, trim_whitespace=False, style={"input_type": "password"}, write_only=True
    )


TokenResponse = inline_serializer(
    "TokenResponse",
    {
        "token": serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown only once."),
        "expiry": serializers.DateTimeField(allow_null=True),
    },
)
DetailResponse = inline_serializer("TokenDetail", {"detail": serializers.CharField()})


class TokenLoginThrottle(ScopedRateThrottle):
    """ScopedRateThrottle that reads its rate when asked (DRF copies the rates at import time, which
    would make ``HUB_API_TOKEN_RATE`` and test overrides of REST_FRAMEWORK ineffective)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class TokenLoginView(knox_views.LoginView):
    """Exchange a username and password for a new API token (shown once)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenLoginThrottle]
    throttle_scope = THROTTLE_SCOPE
    serializer_class = TokenLoginSerializer

    @extend_schema(
        request=TokenLoginSerializer,
        auth=[],
        responses={
            200: TokenResponse,
            400: OpenApiResponse(description="Missing fields or wrong username/password."),
            429: OpenApiResponse(DetailResponse, description="Too many attempts: rate limited or login locked."),
        },
    )
    def post(self, request, format=None):
        form = TokenLoginSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        django_request = request._request  # axes records the attempt on (and reads the client from) it
        user = authenticate(
            django_request, username=form.validated_data["username"], password=form.validated_data["password"]
        )
        if user is None:
            if getattr(django_request, "axes_locked_out", False):
                return Response({"detail": lockout_message()}, status=LOCKED_STATUS)
            raise ValidationError({"non_field_errors": ["Unable to log in with the provided credentials."]})
        request.user = user
        response = super().post(request, format=format)
        # axes' access log forces a session into existence for its hash; an API client does not need one.
        if not django_request.session.keys():
            django_request.session.flush()
        return response


class TokenLogoutView(knox_views.LogoutView):
    """Revoke the token used for this call."""

    @extend_schema(request=None, responses={204: None, 401: OpenApiResponse(DetailResponse)})
    def post(self, request, format=None):
        return super().post(request, format=format)


class TokenLogoutAllView(knox_views.LogoutAllView):
    """Revoke every token of the calling user."""

    @extend_schema(request=None, responses={204: None, 401: OpenApiResponse(DetailResponse)})
    def post(self, request, format=None):
        return super().post(request, format=format)
