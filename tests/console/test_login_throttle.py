"""Login lockout (django-axes) on the console login and the Django admin login; common-password validation."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

PASSWORD = "pass-Word-123"
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


def attempt(url, username, password, ip="127.0.0.1"):
    return Client(REMOTE_ADDR=ip).post(url, {"username": username, "password": password, "next": "/"})


def logged_in(response):
    return response.status_code == 302 and "_auth_user_id" in response.client.session


@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_ten_wrong_passwords_lock_the_account_for_the_cooloff(url, make_user):
    make_user("admin", username="alice")
    codes = [attempt(url, "alice", "wrong-guess").status_code for _ in range(10)]
    assert codes == [200] * 9 + [429]  # wrong password re-shows the form; the 10th failure locks
    assert "wrong-guess" not in "".join(AccessAttempt.objects.values_list("post_data", flat=True))  # masked
    r = attempt(url, "alice", PASSWORD)
    assert r.status_code == 429 and not logged_in(r)
    page = r.content.decode()
    assert "Login locked" in page and "15 minutes" in page and "administrator" in page
    assert r["Retry-After"] == str(15 * 60)
    # still locked from another address (per-user counter)
    assert attempt(url, "alice", PASSWORD, ip="10.0.0.2").status_code == 429
    # after the cool-off the right password works again
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert logged_in(attempt(url, "alice", PASSWORD))


def test_other_users_from_other_addresses_are_unaffected(make_user):
    make_user("ops", username="alice")
    make_user("ops", username="bob")
    for _ in range(10):
        attempt(LOGIN, "alice", "wrong-guess", ip="10.0.0.1")
    assert attempt(LOGIN, "alice", PASSWORD, ip="10.0.0.1").status_code == 429
    assert logged_in(attempt(LOGIN, "bob", PASSWORD, ip="10.0.0.2"))


def test_one_address_spraying_many_usernames_is_locked(make_user):
    make_user("ops", username="bob")
    for i in range(10):
        attempt(LOGIN, f"guess-{i}", "wrong-guess", ip="10.0.0.66")
    assert attempt(LOGIN, "bob", PASSWORD, ip="10.0.0.66").status_code == 429  # per-address counter
    assert logged_in(attempt(LOGIN, "bob", PASSWORD, ip="10.0.0.67"))


def test_forwarded_for_is_ignored_unless_a_proxy_is_configured(make_user, settings):
    make_user("ops", username="bob")
    for i in range(10):  # an attacker rotating a forged X-Forwarded-For is still one address
        Client(REMOTE_ADDR="10.0.0.66", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").post(
            LOGIN, {"username": f"guess-{i}", "password": "x"}
        )
    assert attempt(LOGIN, "bob", PASSWORD, ip="10.0.0.66").status_code == 429
    AccessAttempt.objects.all().delete()
    settings.HUB_TRUSTED_PROXY_COUNT = 1  # behind one proxy: every client arrives from the proxy's address
    for i in range(10):
        Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="198.51.100.1").post(
            LOGIN, {"username": f"guess-{i}", "password": "x"}
        )
    proxied = Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="198.51.100.2")
    r = proxied.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert r.status_code == 302  # another client behind the same proxy is not locked out


def test_success_resets_the_counter(make_user):
    make_user("ops", username="alice")
    for _ in range(9):
        attempt(LOGIN, "alice", "wrong-guess")
    assert logged_in(attempt(LOGIN, "alice", PASSWORD))
    for _ in range(9):
        attempt(LOGIN, "alice", "wrong-guess")
    assert logged_in(attempt(LOGIN, "alice", PASSWORD))


def test_admin_unlocks_with_axes_reset(make_user):
    make_user("ops", username="alice")
    for _ in range(10):
        attempt(LOGIN, "alice", "wrong-guess")
    assert attempt(LOGIN, "alice", PASSWORD).status_code == 429
    call_command("axes_reset", stdout=StringIO())
    assert logged_in(attempt(LOGIN, "alice", PASSWORD))


def test_hub_admin_unlocks_in_the_django_admin(make_user, client):
    make_user("ops", username="alice")
    for _ in range(10):
        attempt(LOGIN, "alice", "wrong-guess")
    client.force_login(make_user("admin", username="root"))
    r = client.get("/admin/axes/accessattempt/")
    assert r.status_code == 200 and "alice" in r.content.decode()
    ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    r = client.post("/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert r.status_code == 302 and not AccessAttempt.objects.exists()
    assert logged_in(attempt(LOGIN, "alice", PASSWORD))


def test_authenticate_without_a_request_is_not_blocked(make_user):
    make_user("ops", username="alice")
    assert authenticate(username="alice", password=PASSWORD) is not None  # shell / management commands


@pytest.mark.parametrize("weak", ["password123", "qwertyuiop", "12345678901", "83920174652"])
def test_common_and_numeric_passwords_are_refused(weak):
    with pytest.raises(ValidationError):
        validate_password(weak)


def test_a_decent_password_passes(db):
    validate_password("tangerine-Ledger-47")
