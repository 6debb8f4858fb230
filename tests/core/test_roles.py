"""Roles: groups exist, permissions follow ROLE_PERMISSIONS, and the admin site is admin-only."""

import pytest
from django.contrib.auth.models import Group

from integration_hub.core.roles import ROLE_PERMISSIONS, expand, user_roles
from tests.support import factories


def perms(role):
    return set(Group.objects.get(name=role).permissions.values_list("content_type__app_label", "codename"))


def test_every_role_has_its_permissions(db):
    from django.contrib.auth.models import Permission

    available = list(Permission.objects.values_list("content_type__app_label", "codename"))
    for role, patterns in ROLE_PERMISSIONS.items():
        assert perms(role) == expand(patterns, available)
        assert perms(role), role


def test_separation_of_duties(db):
    assert ("exceptions_app", "change_exceptionrecord") in perms("ops")
    assert ("exceptions_app", "change_exceptionrecord") not in perms("cx")
    assert ("exceptions_app", "view_exceptionrecord") not in perms("finance")
    assert ("catalog", "change_skumapping") not in perms("cx")
    assert ("catalog", "change_skumapping") not in perms("finance")
    assert ("core", "change_connection") not in perms("ops")
    assert ("core", "change_connection") in perms("admin")
    assert ("django_celery_beat", "change_periodictask") in perms("admin")
    assert ("django_celery_beat", "change_periodictask") not in perms("ops")
    assert ("orders", "retry_order") in perms("cx")


def test_user_roles(make_user):
    assert user_roles(make_user("ops")) == {"ops"}


@pytest.mark.parametrize("role,status", [("ops", 302), ("cx", 302), ("finance", 302), ("admin", 200)])
def test_admin_site_only_for_admin_role(role_client, role, status):
    resp = role_client(role).get("/admin/catalog/skumapping/")
    assert resp.status_code == status


def test_admin_can_edit_mappings_ops_cannot_edit_connections(role_client, make_user, client):

    conn = factories.connection("commercetools", "shop", base_url="http://127.0.0.1:1/ct")
    admin = role_client("admin")
    assert admin.get("/admin/core/connection/").status_code == 200
    assert admin.get(f"/admin/core/connection/{conn.pk}/change/").status_code == 200
    assert admin.get("/admin/django_celery_beat/periodictask/").status_code == 200
    assert admin.get("/admin/catalog/skumapping/add/").status_code == 200
    client.logout()
    client.force_login(make_user("ops"))
    for url in (
        "/admin/core/connection/",
        f"/admin/core/connection/{conn.pk}/change/",
        "/admin/django_celery_beat/periodictask/",
    ):
        assert client.get(url).status_code in (302, 403), url
    r = client.post(
        f"/admin/core/connection/{conn.pk}/change/",
        {"name": "hijacked", "system_type": "commercetools", "base_url": "http://evil"},
    )
    assert r.status_code in (302, 403)
    conn.refresh_from_db()
    assert conn.name == "shop" and conn.base_url == "http://127.0.0.1:1/ct"
    # and the same through the console API: ops has no connection permissions at all
    assert not make_user("ops", username="ops2").has_perm("core.change_connection")


def test_anonymous_redirected_to_login(client, db):
    assert client.get("/admin/").status_code == 302
