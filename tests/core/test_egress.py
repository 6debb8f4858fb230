"""Outbound guard (SSRF), redirects, credential forwarding, remote bodies kept from ops, secret variable
names: over real HTTP against local servers, through the admin form and the console pages."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from connectors import egress, errors
from connectors.http import MAX_REDIRECTS, HttpClient, OAuthClientCredentials
from connectors.sandbox.server import Emulator, Response, SandboxServer, route
from integration_hub.core.models import Connection, SecretEnvNotAllowed

MARKER = "METADATA-CREDENTIALS-7f3a9c"  # what a remote (e.g. a metadata service) answers; ops must never see it


class Target(Emulator):
    """A remote that records what reached it (headers included) and answers on demand."""

    prefix = "t"
    exempt_patterns = (r".*",)

    def __init__(self, other_url: str = ""):
        self.other_url = other_url
        super().__init__()

    def reset(self):
        self.seen: list[dict] = []

    def _note(self, req):
        self.seen.append(
            {
                "path": req.path,
                "method": req.method,
                "api_key": req.header("X-Api-Key"),
                "account": req.header("Account"),
                "auth": req.header("Authorization"),
            }
        )

    @route("GET", r"/things/(?P<id>\d+)")
    def thing(self, req):
        self._note(req)
        return Response(200, {"id": int(req.params["id"])})

    @route("POST", r"/things")
    def create(self, req):
        self._note(req)
        return Response(201, req.json())

    @route("GET", r"/hop/same")
    def same(self, req):
        self._note(req)
        return Response(302, {}, {"Location": "/t/things/7"})

    @route("POST", r"/hop/keep")
    def keep(self, req):
        self._note(req)
        return Response(307, {}, {"Location": "/t/things"})

    @route("GET", r"/hop/away")
    def away(self, req):
        self._note(req)
        return Response(302, {}, {"Location": f"{self.other_url}/t/things/1"})

    @route("GET", r"/hop/loop")
    def loop(self, req):
        self._note(req)
        return Response(302, {}, {"Location": "/t/hop/loop"})

    @route("POST", r"/oauth/token")
    def token(self, req):
        self._note(req)
        return Response(302, {}, {"Location": f"{self.other_url}/t/oauth/token"})

    @route("GET", r"/api/v1/stock/changes")
    def leaky(self, req):
        self._note(req)
        return Response(500, {"error": "internal", "dump": MARKER})


def _serve(emulator):
    server = SandboxServer([emulator], port=0)
    server.start_in_thread()
    return server


@pytest.fixture(scope="module")
def servers():
    other = _serve(Target())
    main = _serve(Target(other_url=other.url))
    yield main, other
    for s in (main, other):
        s.shutdown()
        s.server_close()


@pytest.fixture
def remote(servers):
    main, other = servers
    for s in servers:
        s.emulators["t"].reset_all()
    return main, other


def client(url, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("max_retries", 0)
    return HttpClient("t", url + "/t", rate_per_second=1000, burst=1000, bucket_name=f"egress-{time.time()}", **kw)


@pytest.fixture
def no_allow(settings):
    """Production default: nothing internal allow-listed."""
    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": ""}


# --- address classes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "224.0.0.251",
        "239.1.2.3",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
        "192.0.0.8",
        "198.18.0.1",
    ],
)
def test_internal_addresses_are_blocked(address):
    assert egress.blocked_reason(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert egress.blocked_reason(ipaddress.ip_address(address)) is None


def test_allow_list_by_host_and_cidr(settings):
    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": " wms.internal. , 10.20.0.0/16,[::1]"}
    assert egress.host_allowed("WMS.internal") and not egress.host_allowed("other.internal")
    assert egress.address_allowed(ipaddress.ip_address("10.20.3.4"))
    assert egress.address_allowed(ipaddress.ip_address("::ffff:10.20.3.4"))
    assert not egress.address_allowed(ipaddress.ip_address("10.21.0.1"))
    egress.check_url("http://10.20.9.9:8080/api")
    egress.check_url("http://[::1]:9/")
    with pytest.raises(errors.UnsafeDestinationError, match="private"):
        egress.check_url("http://10.21.0.1/api")


def test_check_url_refuses_other_schemes_and_literal_internal_hosts(no_allow):
    for url in ("file:///etc/passwd", "gopher://x/", "ftp://example.com/"):
        with pytest.raises(errors.UnsafeDestinationError, match="only http and https"):
            egress.check_url(url)
    with pytest.raises(errors.UnsafeDestinationError, match="link-local"):
        egress.check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(errors.UnsafeDestinationError, match="loopback"):
        egress.check_url("http://[::ffff:127.0.0.1]:8000/")
    with pytest.raises(errors.UnsafeDestinationError, match="loopback"):
        egress.check_url("http://localhost:8000/")  # by name: resolved, every address checked


# --- request time --------------------------------------------------------------------------------------
def test_loopback_is_refused_at_request_time_unless_allow_listed(remote, no_allow, settings):
    main, _ = remote
    port = main.url.rsplit(":", 1)[1]
    for url in (main.url, f"http://localhost:{port}", f"http://2130706433:{port}", f"http://[::ffff:127.0.0.1]:{port}"):
        with pytest.raises(errors.UnsafeDestinationError) as exc:
            client(url).get("/things/1")
        assert not exc.value.retryable and "HUB_OUTBOUND_ALLOW" in str(exc.value)
    assert main.emulators["t"].seen == []  # nothing reached the internal address
    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": "127.0.0.0/8"}
    assert client(main.url).get("/things/1").json() == {"id": 1}


def test_every_resolved_address_is_verified(remote, no_allow, monkeypatch):
    """A name answering a public and an internal address is refused (one bad answer is enough)."""
    main, _ = remote
    port = int(main.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def fake(host, *a, **kw):
        if host == "mixed.example":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(errors.UnsafeDestinationError, match="127.0.0.1"):
        client(f"http://mixed.example:{port}").get("/things/1")
    assert main.emulators["t"].seen == []


def test_dns_rebinding_after_the_save_time_check_is_caught_when_connecting(remote, no_allow, monkeypatch, db):
    """The admin saved a name that resolved to a public address; it now resolves to loopback. The
    connection-time guard resolves once and connects only to what it verified."""
    main, _ = remote
    port = int(main.url.rsplit(":", 1)[1])
    real, answers = socket.getaddrinfo, iter(["93.184.216.34"] + ["127.0.0.1"] * 10)

    def fake(host, *a, **kw):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    conn = Connection(
        name="rebind",
        system_type="wair",
        base_url=f"http://rebind.example:{port}/t",
        max_retries=0,
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
    )
    conn.full_clean()  # public at save time
    with pytest.raises(errors.UnsafeDestinationError, match="loopback"):
        HttpClient.for_connection(conn).get("/things/1")
    assert main.emulators["t"].seen == []


# --- redirects ---------------------------------------------------------------------------------------
def test_same_origin_redirects_are_followed(remote):
    main, _ = remote
    c = client(main.url, default_headers={"X-Api-Key": "k-1"})
    assert c.get("/hop/same").json() == {"id": 7}
    created = c.post("/hop/keep", json={"name": "n"})  # 307 keeps the method and the body
    assert created.status_code == 201 and created.json() == {"name": "n"}
    seen = main.emulators["t"].seen
    assert [s["path"] for s in seen] == ["/hop/same", "/things/7", "/hop/keep", "/things"]
    assert all(s["api_key"] == "k-1" for s in seen)


def test_cross_origin_redirect_is_refused_and_sends_no_credentials(remote):
    main, other = remote
    c = client(main.url, default_headers={"X-Api-Key": "k-secret", "Account": "acct-9"}, max_retries=3)
    with pytest.raises(errors.RedirectRefusedError) as exc:
        c.get("/hop/away")
    err = exc.value
    assert isinstance(err, errors.PermanentError) and not err.retryable and err.kind == "redirect_refused"
    assert "another origin" in str(err) and other.url in str(err)
    assert len(main.emulators["t"].seen) == 1  # a permanent error: not retried
    assert other.emulators["t"].seen == []  # neither X-Api-Key nor Account travelled


def test_redirect_loop_ends(remote):
    main, _ = remote
    with pytest.raises(errors.PermanentError, match=f"more than {MAX_REDIRECTS} redirects"):
        client(main.url).get("/hop/loop")
    assert len(main.emulators["t"].seen) == MAX_REDIRECTS + 1


def test_token_request_follows_no_redirect(remote, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "egress"}}
    main, other = remote
    auth = OAuthClientCredentials(token_url=f"{main.url}/t/oauth/token", client_id="client", client_secret="secret")
    with pytest.raises(errors.RedirectRefusedError, match="token endpoint"):
        client(main.url, auth=auth).get("/things/1")
    assert other.emulators["t"].seen == []


def test_messages_carry_no_query_string(remote):
    main, _ = remote
    with pytest.raises(errors.NotFoundError) as exc:
        client(main.url).get("/nothing", params={"api_key": "q-secret"})
    assert "q-secret" not in str(exc.value) and "/t/nothing" in str(exc.value)


# --- remote bodies stay admin-only ---------------------------------------------------------------------
def test_remote_body_reaches_admins_only(remote, db, role_client, make_user, client):
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    from exceptions_app.models import ExceptionRecord
    from integration_hub.inventory.tasks import poll_stock

    main, _ = remote
    conn = Connection(name="leaky", system_type="wair", base_url=f"{main.url}/t", max_retries=0)
    conn.set_secret("k")
    conn.save()
    poll_stock(conn.pk)  # the real poll task: GET stock/changes → 500 with the marker in its body
    conn.refresh_from_db()
    assert conn.last_error and "500" in conn.last_error and MARKER not in conn.last_error
    assert MARKER in conn.last_error_detail
    rec = ExceptionRecord.objects.get(connection=conn)
    assert MARKER not in rec.message and MARKER not in str(rec.context)

    planner = Connection.objects.create(
        name="planner",
        system_type="inventory_planner",
        base_url=f"{main.url}/t",
        max_retries=0,
        rate_limit_per_second=1000,
    )
    with pytest.raises(errors.RetryableError) as failed:
        HttpClient.for_connection(planner).get("/api/v1/stock/changes")
    Connection.record_error(planner.pk, failed.value)

    ops = role_client("ops")
    for url in (
        reverse("console:dashboard"),
        reverse("exceptions:list"),
        reverse("exceptions:detail", args=[rec.pk]),
        "/api/exceptions/",
        "/planning/",
    ):
        page = ops.get(url)
        assert page.status_code == 200, url
        assert MARKER not in page.content.decode(), url
    assert "500" in ops.get(reverse("console:dashboard")).content.decode()

    # staff with view-only rights (an ops user made staff) do not see the remote's answer in the admin
    viewer = make_user("ops", username="ops-staff")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_connection"))
    client.force_login(viewer)
    page = client.get(f"/admin/core/connection/{conn.pk}/change/")
    assert page.status_code == 200 and MARKER not in page.content.decode()

    client.force_login(make_user("admin", username="boss"))
    page = client.get(f"/admin/core/connection/{conn.pk}/change/")
    assert page.status_code == 200 and MARKER in page.content.decode()


# --- save time: the admin form -----------------------------------------------------------------------
def _form_data(conn: Connection, **changes) -> dict:
    data = {
        "name": conn.name,
        "system_type": conn.system_type,
        "base_url": conn.base_url,
        "auth_url": conn.auth_url,
        "client_id": conn.client_id,
        "secret_env": conn.secret_env,
        "webhook_secret_env": conn.webhook_secret_env,
        "options": "{}",
        "rate_limit_per_second": "10",
        "rate_limit_burst": "10",
        "timeout_seconds": "10",
        "max_retries": "5",
        "enabled": "on",
        "secret": "",
        "webhook_secret": "",
    }
    data.update(changes)
    return data


@pytest.fixture
def admin_client(make_user, client):
    user = make_user("admin", username="root")
    client.force_login(user)
    return client


def test_admin_refuses_internal_urls_with_a_clear_message(admin_client, no_allow, db):
    conn = Connection.objects.create(name="shop", system_type="wair", base_url="https://api.example.com")
    url = f"/admin/core/connection/{conn.pk}/change/"
    for field, value in (
        ("base_url", "http://169.254.169.254/latest"),
        ("auth_url", "http://10.0.0.5/token"),
        ("options", '{"token_url": "http://[::1]:8080/x"}'),
    ):
        page = admin_client.post(url, _form_data(conn, **{field: value}))
        assert page.status_code == 200, field  # the form again, with the error
        body = page.content.decode()
        assert "HUB_OUTBOUND_ALLOW" in body and "refused" in body, field
    conn.refresh_from_db()
    assert conn.base_url == "https://api.example.com" and conn.options == {}


def test_admin_refuses_secret_env_outside_the_prefix(admin_client, db):
    conn = Connection.objects.create(name="shop", system_type="wair", base_url="https://api.example.com")
    url = f"/admin/core/connection/{conn.pk}/change/"
    for field in ("secret_env", "webhook_secret_env"):
        for name in (
            "HUB_SECRET_KEY",
            "HUB_ENCRYPTION_KEY",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "REDIS_URL",
            "HUB_CONNX",
            "hub_conn_lower",
        ):
            page = admin_client.post(url, _form_data(conn, **{field: name}))
            assert page.status_code == 200 and "HUB_CONN_" in page.content.decode(), (field, name)
    conn.refresh_from_db()
    assert conn.secret_env == "" and conn.webhook_secret_env == ""
    page = admin_client.post(url, _form_data(conn, secret_env="HUB_CONN_SHOP_KEY"))
    assert page.status_code == 302
    conn.refresh_from_db()
    assert conn.secret_env == "HUB_CONN_SHOP_KEY"


def test_get_secret_never_reads_a_disallowed_variable(db, monkeypatch):
    monkeypatch.setenv("HUB_SECRET_KEY", "the-hub-key")
    monkeypatch.setenv("HUB_CONN_SHOP", "shop-key")
    conn = Connection(
        name="shop",
        system_type="wair",
        base_url="https://api.example.com",
        secret_env="HUB_SECRET_KEY",
        webhook_secret_env="DATABASE_URL",
    )
    with pytest.raises(SecretEnvNotAllowed, match="HUB_CONN_") as exc:
        conn.get_secret()
    assert "the-hub-key" not in str(exc.value)
    with pytest.raises(SecretEnvNotAllowed):
        conn.get_webhook_secret()
    conn.secret_env = "HUB_CONN_SHOP"
    assert conn.get_secret() == "shop-key"


def test_changing_the_url_in_the_admin_clears_stored_secrets(admin_client, db):
    conn = Connection(
        name="shop", system_type="wair", base_url="https://api.example.com", webhook_secret_env="HUB_CONN_SHOP_HOOK"
    )
    conn.set_secret("old-api-key")
    conn.set_webhook_secret("old-hook")
    conn.save()
    url = f"/admin/core/connection/{conn.pk}/change/"

    # same URL: secrets kept
    assert admin_client.post(url, _form_data(conn, client_id="c2")).status_code == 302
    conn.refresh_from_db()
    assert conn.get_secret() == "old-api-key" and conn.webhook_secret_encrypted

    # new URL, no new secret: every stored secret and secret variable is dropped, and the admin is told
    page = admin_client.post(url, _form_data(conn, base_url="https://attacker.example.net"), follow=True)
    assert page.status_code == 200
    assert "credentials were cleared" in page.content.decode()
    conn.refresh_from_db()
    assert conn.base_url == "https://attacker.example.net"
    assert conn.secret_encrypted == "" and conn.webhook_secret_encrypted == "" and conn.webhook_secret_env == ""

    # new URL with the new secret in the same save: the new one is kept
    assert (
        admin_client.post(url, _form_data(conn, auth_url="https://auth.example.net", secret="new-key")).status_code
        == 302
    )
    conn.refresh_from_db()
    assert conn.get_secret() == "new-key"


def test_model_save_path_clears_secrets_on_url_change(db):
    conn = Connection(name="shop", system_type="wair", base_url="https://api.example.com")
    conn.set_secret("k1")
    conn.save()
    conn = Connection.objects.get(pk=conn.pk)
    conn.base_url = "https://elsewhere.example.com"
    conn.save()
    assert conn.secrets_cleared == ["secret_encrypted"]
    assert Connection.objects.get(pk=conn.pk).secret_encrypted == ""
    conn.set_secret("k2")
    conn.save(update_fields=["secret_encrypted"])
    conn.auth_url = "https://auth.example.com"
    conn.save(update_fields=["client_id"])  # the URL change is not saved: nothing cleared
    assert conn.secrets_cleared == [] and Connection.objects.get(pk=conn.pk).get_secret() == "k2"
    conn.set_secret("k2")
    conn.save(update_fields=["auth_url", "secret_encrypted"])
    assert Connection.objects.get(pk=conn.pk).get_secret() == "k2"


def test_runhub_allows_exactly_the_sandbox_host(settings):
    """`./hub up` runs the sandbox on loopback: runhub allow-lists its host for itself and its children."""
    from integration_hub.core.management.commands.runhub import Command

    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": ""}
    env = {"HUB_OUTBOUND_ALLOW": "wms.internal"}
    Command().allow_outbound("127.0.0.1", env)
    assert env["HUB_OUTBOUND_ALLOW"] == "wms.internal,127.0.0.1" == settings.HUB["OUTBOUND_ALLOW"]
    egress.check_url("http://127.0.0.1:8765/wair")
    with pytest.raises(errors.UnsafeDestinationError):
        egress.check_url("http://10.0.0.1/")


def test_a_disallowed_secret_env_in_the_database_stops_the_sync_with_a_record(db, monkeypatch):
    """A row saved before the rule (or written around the admin) is refused when the secret is needed,
    and the failure is an exception record ops see, not a traceback nobody reads."""
    from exceptions_app.models import ExceptionRecord
    from integration_hub.inventory.tasks import poll_stock

    monkeypatch.setenv("HUB_ENCRYPTION_KEY", "never-sent")
    conn = Connection.objects.create(
        name="old",
        system_type="wair",
        base_url="https://api.example.com",
        secret_env="HUB_ENCRYPTION_KEY",
        max_retries=0,
    )
    assert "error" in poll_stock(conn.pk)
    rec = ExceptionRecord.objects.get(connection=conn)
    assert "HUB_CONN_" in rec.message and "never-sent" not in rec.message
    conn.refresh_from_db()
    assert "HUB_CONN_" in conn.last_error


# --- every secret named by environment variable, every non-HTTP destination ---------------------------------
@pytest.mark.parametrize(
    "system_type, options",
    [
        ("inventory_planner", {"account": "a", "delivery": "sftp", "sftp_password_env": "HUB_SECRET_KEY"}),
        ("commercetools", {"project_key": "p", "relay": {"type": "SQS", "accessSecret_env": "DATABASE_URL"}}),
    ],
)
def test_option_secret_variables_outside_the_prefix_are_refused_at_save(db, system_type, options):
    from django.core.exceptions import ValidationError

    conn = Connection(name="c", system_type=system_type, base_url="https://api.example.com", options=options)
    with pytest.raises(ValidationError, match="HUB_CONN_"):
        conn.full_clean()


def test_option_secret_variables_outside_the_prefix_are_never_read(monkeypatch):
    from connectors import env_secrets

    monkeypatch.setenv("HUB_SECRET_KEY", "the-hubs-own-key")
    with pytest.raises(SecretEnvNotAllowed) as exc:
        env_secrets.read("HUB_SECRET_KEY", "options.sftp_password_env")
    assert "the-hubs-own-key" not in str(exc.value)
    monkeypatch.setenv("HUB_CONN_SFTP", "pw")
    assert env_secrets.read("HUB_CONN_SFTP") == "pw"


def test_sftp_uploads_go_through_the_outbound_guard(settings):
    """The SFTP client is not HTTP, so it has its own guarded connect: the metadata address is refused."""
    from connectors import egress

    settings.HUB = {**settings.HUB, "OUTBOUND_ALLOW": ""}
    with pytest.raises(errors.UnsafeDestinationError, match="169.254.169.254"):
        egress.connect_tcp("169.254.169.254", 22, timeout=1)
