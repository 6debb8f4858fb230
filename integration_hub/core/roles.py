"""Role-based access. Four groups (ops, cx, finance, admin) carry Django permissions; every view and
API checks permissions, never group names, so a site can re-shape roles in the admin.

``ROLE_PERMISSIONS`` is the shipped definition; the data migration creates the groups and
:func:`sync_role_permissions` (run after every migrate) attaches the permissions, so permissions of
models added later reach the roles too. Patterns: ``app.codename``, ``app.view_*``, ``app.*``.
"""

from __future__ import annotations

import fnmatch
import logging

from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from rest_framework.permissions import DjangoModelPermissions

log = logging.getLogger(__name__)

OPS, CX, FINANCE, ADMIN = "ops", "cx", "finance", "admin"
ROLES = (OPS, CX, FINANCE, ADMIN)

HUB_APPS = (
    "core",
    "catalog",
    "inventory",
    "orders",
    "planning",
    "reconciliation",
    "console",
    "api",
    "exceptions_app",
    "monitoring",
)

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Ops keep sync healthy: see everything operational, triage exceptions, fix SKU mismatches
    # (create/change mappings), retry or cancel stuck orders.
    OPS: [
        "core.view_*",
        "catalog.view_*",
        "inventory.view_*",
        "orders.view_*",
        "planning.view_*",
        "exceptions_app.*",
        "catalog.add_skumapping",
        "catalog.change_skumapping",
        "orders.change_order",
        "orders.retry_order",
        "orders.cancel_order",
        "inventory.change_pendingpush",
        "console.view_dashboard",
        "console.import_mappings",
        "monitoring.view_firing",
        "monitoring.view_alertrule",
        "monitoring.view_delivery",
        "monitoring.view_taskprogress",
    ],
    # Customer service: look up orders and their exceptions, retry or cancel an order with a reason. Named
    # models, not ``orders.view_*``: rule tables that live in the orders app (shipping-method maps) are not cx's.
    CX: [
        "orders.view_order",
        "orders.view_orderline",
        "orders.view_ordertransition",
        "core.view_channel",
        "exceptions_app.view_exceptionrecord",
        "exceptions_app.escalate_order",
        "orders.retry_order",
        "orders.cancel_order",
        "console.view_dashboard",
        "monitoring.view_firing",
    ],
    # Finance: reconciliation reports (view + download), read-only orders and stock.
    FINANCE: [
        "reconciliation.*",
        "orders.view_order",
        "orders.view_orderline",
        "inventory.view_stocklevel",
        "core.view_channel",
        "catalog.view_item",
    ],
    # Admins: everything in the hub, beat schedules, API tokens (knox), login lockouts (axes: unlock).
    ADMIN: [f"{app}.*" for app in HUB_APPS] + ["django_celery_beat.*", "knox.*", "axes.*", "auth.view_user"],
}


def expand(patterns: list[str], available: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Match ``app.codename`` glob patterns against (app_label, codename) pairs."""
    out = set()
    for pattern in patterns:
        app_pat, code_pat = pattern.split(".", 1)
        for app_label, codename in available:
            if fnmatch.fnmatchcase(app_label, app_pat) and fnmatch.fnmatchcase(codename, code_pat):
                out.add((app_label, codename))
    return out


def sync_role_permissions(**kwargs) -> None:
    from django.contrib.auth.models import Group, Permission

    perms = list(Permission.objects.select_related("content_type").all())
    available = [(p.content_type.app_label, p.codename) for p in perms]
    by_key = {(p.content_type.app_label, p.codename): p for p in perms}
    for role, patterns in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = {by_key[k] for k in expand(patterns, available)}
        group.permissions.set(wanted)


def user_roles(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    if user.is_superuser:
        return set(ROLES)
    cached = getattr(user, "_hub_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._hub_roles = cached
    return cached


def roles_context(request):
    user = getattr(request, "user", None)
    roles = user_roles(user) if user is not None else set()
    return {"hub_roles": roles}


class PermissionRequired(LoginRequiredMixin, PermissionRequiredMixin):
    """Console views: login required, then the named permission(s); 403 (not a redirect loop) when missing."""

    raise_exception = False

    def handle_no_permission(self):
        if self.request.user.is_authenticated:
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("Your role does not allow this page.")
        return super().handle_no_permission()


class HasModelRolePermission(DjangoModelPermissions):
    """DRF: model permissions for every method, including GET (view_*), so roles cannot read what
    they may not see. Views without a queryset must set ``required_permissions``."""

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request, view):
        required = getattr(view, "required_permissions", None)
        if required is not None:
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(required))
        return super().has_permission(request, view)
