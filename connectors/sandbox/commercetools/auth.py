"""OAuth (``POST /oauth/token``, client credentials with HTTP Basic), bearer-token checks with per-endpoint scopes
(``ENDPOINT_SCOPES``, from the API reference), the project route, and the credential controls
(``set_credentials``, ``revoke_tokens``).
"""

from __future__ import annotations

import base64
import secrets
import time

from ..common import TokenControls
from ..server import HttpError, Request, Response, route
from .base import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, P, TOKEN_TTL, ct_error

# OAuth scopes per endpoint, as the API reference lists them (``security`` of each operation in
# commercetools-api-reference oas/api/openapi.yaml): resource → (any of these to read, any of these to write).
# ``manage_X`` grants ``view_X`` too, ``manage_project`` grants everything.
ENDPOINT_SCOPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "": (("view_project_settings",), ("manage_project_settings",)),
    "inventory": (("view_products",), ("manage_products",)),
    "channels": (("view_channels", "view_products"), ("manage_channels", "manage_products")),
    "orders": (("view_orders",), ("manage_orders",)),
    "product-projections": (("view_products", "view_published_products"), ()),
    "products": (("view_products",), ("manage_products",)),
    "subscriptions": (("manage_subscriptions",), ("manage_subscriptions",)),
    "types": (("view_types",), ("manage_types",)),
    "shipping-methods": (
        ("view_orders", "view_shipping_methods", "manage_my_orders"),
        ("manage_orders", "manage_shipping_methods"),
    ),
    "discount-codes": (("view_discount_codes",), ("manage_discount_codes",)),
    # Import API (import-openapi.yaml)
    "import-containers": (("view_import_containers", "manage_import_containers"), ("manage_import_containers",)),
    "import-operations": (("view_import_containers", "manage_import_containers"), ("manage_import_containers",)),
    "inventories": (("manage_products",), ("manage_products",)),
}


class AuthRoutes(TokenControls):
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers);
    ``revoke_tokens`` from :class:`connectors.sandbox.common.TokenControls`."""

    def reset_auth(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        self.credentials = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
        self.allowed_projects: set[str] | None = None  # None = any project key
        self.token_ttl = TOKEN_TTL
        self.tokens: dict[str, dict] = {}
        self.tokens_issued = 0

    def _auth(self, req: Request) -> dict:
        header = req.header("Authorization")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        with self.lock:
            info = self.tokens.get(token)
            self._run_imports()  # ct processes imports in the background: every later request sees the due ones
        if not info or info["expires"] < time.time():
            raise HttpError(
                401,
                {
                    "statusCode": 401,
                    "message": "invalid_token",
                    "errors": [{"code": "invalid_token", "message": "invalid_token"}],
                    "error": "invalid_token",
                    "error_description": "invalid_token",
                },
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        project = req.params.get("project")
        if project and info["projects"] is not None and project not in info["projects"]:
            msg = f"Insufficient scope. One of the following scopes is missing: manage_project:{project}"
            raise HttpError(
                403,
                {
                    "statusCode": 403,
                    "message": msg,
                    "errors": [{"code": "insufficient_scope", "message": msg}],
                    "error": "insufficient_scope",
                    "error_description": msg,
                },
            )
        if project and info.get("grants") is not None:
            self._check_scope(req, project, info["grants"])
        if project and self.allowed_projects is not None and project not in self.allowed_projects:
            raise ct_error(404, "ResourceNotFound", f"Project '{project}' not found")
        return info

    @staticmethod
    def _check_scope(req: Request, project: str, grants: set[tuple[str, str]]) -> None:
        """403 ``insufficient_scope`` unless the token holds one of the endpoint's scopes for ``project``."""
        parts = req.path.strip("/").split("/")
        resource = parts[1] if len(parts) > 1 else ""
        if resource not in ENDPOINT_SCOPES:
            return
        granted = {perm for perm, proj in grants if proj == project}
        if "manage_project" in granted:
            return
        needed = ENDPOINT_SCOPES[resource][0 if req.method in ("GET", "HEAD") else 1]
        if any(n in granted or (n.startswith("view_") and "manage_" + n[5:] in granted) for n in needed):
            return
        missing = ", ".join(f"{n}:{project}" for n in needed + ("manage_project",))
        msg = f"Insufficient scope. One of the following scopes is missing: {missing}"
        raise HttpError(
            403,
            {
                "statusCode": 403,
                "message": msg,
                "errors": [{"code": "insufficient_scope", "message": msg}],
                "error": "insufficient_scope",
                "error_description": msg,
            },
        )

    @route("POST", r"/oauth/token")
    def token(self, req: Request) -> Response:
        header = req.header("Authorization")
        client_id = secret = None
        if header.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                client_id = None
        form = req.form()
        unauthorized = {
            "statusCode": 401,
            "message": "Please provide valid client credentials using HTTP Basic Authentication.",
            "errors": [
                {
                    "code": "invalid_client",
                    "message": "Please provide valid client credentials using HTTP Basic Authentication.",
                }
            ],
            "error": "invalid_client",
            "error_description": "Please provide valid client credentials using HTTP Basic Authentication.",
        }
        with self.lock:
            if not client_id or self.credentials.get(client_id) != secret:
                return Response(401, unauthorized)
            if form.get("grant_type") != "client_credentials":
                msg = "Invalid grant_type; only client_credentials is supported here."
                return Response(
                    400,
                    {
                        "statusCode": 400,
                        "message": msg,
                        "errors": [{"code": "unsupported_grant_type", "message": msg}],
                        "error": "unsupported_grant_type",
                        "error_description": msg,
                    },
                )
            scope = form.get("scope", "").strip()
            projects: set[str] | None = None
            grants: set[tuple[str, str]] | None = None
            if scope:
                projects, grants = set(), set()
                for s in scope.split():
                    perm, _, project = s.partition(":")
                    if not project or not perm:
                        msg = f"Invalid scope '{s}'"
                        return Response(
                            400,
                            {
                                "statusCode": 400,
                                "message": msg,
                                "errors": [{"code": "invalid_scope", "message": msg}],
                                "error": "invalid_scope",
                                "error_description": msg,
                            },
                        )
                    projects.add(project)
                    grants.add((perm, project))
            else:
                scope = "manage_project:" + (sorted(self.allowed_projects)[0] if self.allowed_projects else "demo")
            token = secrets.token_urlsafe(24)
            self.tokens[token] = {
                "client_id": client_id,
                "scope": scope,
                "projects": projects,
                "grants": grants,
                "expires": time.time() + self.token_ttl,
            }
            self.tokens_issued += 1
            return Response(
                200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl, "scope": scope}
            )

    @route("GET", P)
    def project(self, req):
        self._auth(req)
        key = req.params["project"]
        return Response(
            200,
            {
                "key": key,
                "name": key,
                "version": 1,
                "countries": ["GB", "DE", "NL", "FR"],
                "currencies": ["GBP", "EUR"],
                "languages": ["en", "en-GB", "de"],
                "createdAt": "2024-01-01T00:00:00.000Z",
                "trialUntil": None,
                "messages": {"enabled": True, "deleteDaysAfterCreation": 15},
                "carts": {"countryTaxRateFallbackEnabled": False},
            },
        )

    def control_set_credentials(self, payload: dict) -> dict:
        """{"client_id", "client_secret", "replace": false, "projects": [...] | null, "token_ttl": seconds}"""
        with self.lock:
            if payload.get("replace"):
                self.credentials = {}
            if payload.get("client_id"):
                self.credentials[payload["client_id"]] = payload.get("client_secret", "")
            if "projects" in payload:
                self.allowed_projects = set(payload["projects"]) if payload["projects"] is not None else None
            if payload.get("token_ttl"):
                self.token_ttl = int(payload["token_ttl"])
            return {
                "clients": sorted(self.credentials),
                "projects": sorted(self.allowed_projects) if self.allowed_projects else None,
            }
