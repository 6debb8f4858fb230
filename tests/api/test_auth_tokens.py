"""API tokens (knox): issued once by POST /api/token/, stored as a digest only, expiring, revocable; missing or
invalid credentials answer 401 with WWW-Authenticate, a wrong role 403; the token view is throttled and its
failures count toward the login lockout."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from integration_hub.core.login_lockout import client_ip

PASSWORD = "pass-Word-123"


@pytest.fixture(autouse=True)
def _fresh_throttle_cache():
    cache.clear()  # DRF throttle history lives in the cache
    yield
    cache.clear()


def get_token(client, username, password=PASSWORD, **extra):
    return client.post("/api/token/", {"username": username, "password": password}, format="json", **extra)


def test_token_login_returns_a_token_once_and_it_works(make_user):
    make_user("cx")
    api = APIClient()
    r = get_token(api, "user-cx")
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"token", "expiry"} and len(body["token"]) == 64 and body["expiry"]
    assert "sessionid" not in r.cookies  # no stray session for an API client
    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert api.get("/api/orders/").status_code == 200
    assert api.get("/api/reports/").status_code == 403  # wrong role: 403, not 401


def test_form_encoded_request_shape_still_works(make_user):
    make_user("ops")
    r = APIClient().post("/api/token/", {"username": "user-ops", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["token"]


def test_wrong_password_is_400_and_issues_nothing(make_user):
    make_user("ops")
    r = get_token(APIClient(), "user-ops", "nope")
    assert r.status_code == 400 and "credentials" in r.content.decode()
    assert get_token(APIClient(), "", "").status_code == 400
    assert AuthToken.objects.count() == 0


def test_database_holds_only_a_digest(make_user):
    make_user("ops")
    token = get_token(APIClient(), "user-ops").json()["token"]
    row = AuthToken.objects.get()
    assert row.digest != token and len(row.digest) == 128 and token not in row.digest
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM knox_authtoken")
        dumped = repr(cur.fetchall())
    assert token not in dumped  # the full token is nowhere in the table
    assert not any(t.name == "authtoken_token" for t in connection.introspection.get_table_list(connection.cursor()))


def test_expired_token_is_401(make_user):
    make_user("ops")
    token = get_token(APIClient(), "user-ops").json()["token"]
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    r = api.get("/api/orders/")
    assert r.status_code == 401 and r["WWW-Authenticate"] == "Token"
    assert AuthToken.objects.count() == 0  # knox drops the expired row


def test_token_ttl_follows_the_setting(make_user, settings):
    settings.REST_KNOX = {"TOKEN_TTL": timedelta(hours=2), "AUTH_HEADER_PREFIX": "Token"}
    make_user("ops")
    before = timezone.now()
    get_token(APIClient(), "user-ops")
    expiry = AuthToken.objects.get().expiry
    assert before + timedelta(hours=2) - timedelta(seconds=5) <= expiry <= timezone.now() + timedelta(hours=2)


def test_logout_revokes_this_token_and_logoutall_every_token(make_user):
    make_user("ops")
    t1, t2, t3 = (get_token(APIClient(), "user-ops").json()["token"] for _ in range(3))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {t1}")
    assert api.post("/api/token/logout/").status_code == 204
    assert api.get("/api/orders/").status_code == 401
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {t2}")
    assert other.get("/api/orders/").status_code == 200
    assert other.post("/api/token/logoutall/").status_code == 204
    for t in (t2, t3):
        other.credentials(HTTP_AUTHORIZATION=f"Token {t}")
        assert other.get("/api/orders/").status_code == 401
    assert AuthToken.objects.count() == 0
    assert APIClient().post("/api/token/logout/").status_code == 401


@pytest.mark.parametrize("header", [None, "Token wrong", "Token " + "0" * 64, "Token", "Token a b", "Bearer x"])
def test_missing_or_invalid_credentials_are_401_with_www_authenticate(db, header):
    api = APIClient()
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)
    for url in ("/api/orders/", "/api/", "/api/schema/"):
        r = api.get(url)
        assert r.status_code == 401, (header, url, r.status_code)
        assert r["WWW-Authenticate"] == "Token"


def test_session_users_still_need_csrf(make_user):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(make_user("ops"))
    assert c.get("/api/orders/").status_code == 200
    assert c.post("/api/transforms/", {"name": "t", "case": "keep"}).status_code == 403


def test_token_view_is_rate_limited_per_client(make_user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "3/minute"}}
    make_user("ops")
    codes = [get_token(APIClient(), "user-ops").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    forged = get_token(APIClient(), "user-ops", HTTP_X_FORWARDED_FOR="198.51.100.77")
    assert forged.status_code == 429  # a client-written X-Forwarded-For does not make a new client
    assert get_token(APIClient(), "user-ops", REMOTE_ADDR="10.0.0.9").status_code == 200  # another client


def test_token_view_failures_lock_out_the_user(make_user):
    make_user("ops")
    codes = [get_token(APIClient(), "user-ops", "wrong-password").status_code for _ in range(10)]
    assert codes == [400] * 9 + [429]  # the 10th failure locks
    r = get_token(APIClient(), "user-ops")  # then the right password fails too
    assert r.status_code == 429 and "locked" in r.json()["detail"]
    assert AuthToken.objects.count() == 0
    # the username is locked from any address; another user from another address is not
    assert get_token(APIClient(), "user-ops", REMOTE_ADDR="10.0.0.7").status_code == 429
    make_user("cx")
    assert get_token(APIClient(), "user-cx", REMOTE_ADDR="10.0.0.7").status_code == 200
    # admin unlocks
    call_command("axes_reset_username", "user-ops", stdout=StringIO())
    call_command("axes_reset_ip", "127.0.0.1", stdout=StringIO())
    assert get_token(APIClient(), "user-ops").status_code == 200


def test_client_ip_trusts_forwarded_for_only_when_configured(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")
    settings.HUB_TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.1.1.1"
    settings.HUB_TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.5"  # what our one proxy saw; the client-written 6.6.6.6 is ignored
    settings.HUB_TRUSTED_PROXY_COUNT = 5
    assert client_ip(request) == "6.6.6.6"
    assert client_ip(rf.get("/", REMOTE_ADDR="10.1.1.1")) == "10.1.1.1"


def test_issue_api_token_command_prints_the_token_once(make_user):
    make_user(None, username="svc-erp")
    out, err = StringIO(), StringIO()
    call_command("issue_api_token", "svc-erp", "--hours", "48", stdout=out, stderr=err)
    token = out.getvalue().strip()
    row = AuthToken.objects.get()
    assert len(token) == 64 and row.user.username == "svc-erp" and token not in row.digest
    assert timedelta(hours=47) < row.expiry - timezone.now() <= timedelta(hours=48)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/orders/").status_code == 403  # authenticated, no role
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("issue_api_token", "nobody-here", stdout=StringIO(), stderr=StringIO())


def test_admin_issues_a_token_shown_once_and_lists_only_a_digest_prefix(make_user, client):
    admin = make_user("admin")
    svc = make_user(None, username="svc-wms")
    client.force_login(admin)
    r = client.post("/admin/knox/authtoken/add/", {"user": svc.pk, "valid_hours": "24"}, follow=True)
    assert r.status_code == 200
    row = AuthToken.objects.get(user=svc)
    html = r.content.decode()
    shown = [w for w in html.replace("<", " ").split() if len(w) == 64 and w.startswith(row.token_key)]
    assert len(shown) == 1, "the new token is shown once on the page after adding"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {shown[0]}")
    assert api.get("/api/orders/").status_code == 403  # valid token, no role
    listing = client.get("/admin/knox/authtoken/").content.decode()
    # the digest (not usable as a token) is the row's key, so it appears in links; the token never does
    assert f"{row.digest[:12]}…" in listing and shown[0] not in listing
    detail = client.get(f"/admin/knox/authtoken/{row.pk}/change/")
    assert detail.status_code == 200 and shown[0] not in detail.content.decode()
    assert "Save" not in detail.content.decode()  # read-only: revoke and issue a new one instead


def test_unknown_api_urls_answer_json_404(make_user):
    api = APIClient(enforce_csrf_checks=True)
    api.force_authenticate(make_user("admin"))
    for method in ("get", "post", "delete"):
        r = getattr(api, method)("/api/channel-rules/0.5/")
        assert r.status_code == 404 and r["Content-Type"] == "application/json" and r.json() == {"detail": "Not found."}


def test_schema_documents_the_error_answers(make_user):
    api = APIClient()
    api.force_authenticate(make_user("ops"))
    paths = api.get("/api/schema/?format=json").json()["paths"]
    assert {"400", "401", "403", "404"} <= set(paths["/api/sku-mappings/{id}/"]["put"]["responses"])
    assert {"401", "403"} <= set(paths["/api/orders/"]["get"]["responses"])
    assert "401" not in paths["/api/token/"]["post"]["responses"]  # public: no credentials to be wrong
