"""Production-safe settings: debug off by default and never on a public host, keys required, URL
passwords masked in error reports, `check --deploy` clean, owner-only var/, static files and a CSP on
the production path (debug off, the WSGI app)."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import RequestFactory
from django.views.debug import get_exception_reporter_class, technical_500_response
from django.views.decorators.debug import sensitive_variables

ROOT = Path(__file__).resolve().parents[2]
PROD_SECRET = "prod-like-secret-" + "x7Qp2" * 10


def clean_env(tmp_path, **overrides) -> dict:
    """The process environment without any HUB_* setting (as on a fresh host), plus ``overrides``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUB_", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"))
    }
    env.update(
        HUB_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="integration_hub.settings", PYTHONPATH=str(ROOT)
    )
    env.update(overrides)
    return env


def prod_env(tmp_path, **overrides) -> dict:
    production = {
        "HUB_SECRET_KEY": PROD_SECRET,
        "HUB_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "HUB_ALLOWED_HOSTS": "hub.example.com",
        "HUB_CSRF_TRUSTED_ORIGINS": "https://hub.example.com",
        "HUB_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
    }
    return clean_env(tmp_path, **{**production, **overrides})


def import_settings(env) -> subprocess.CompletedProcess:
    code = (
        "import json, integration_hub.settings as s; print(json.dumps({'DEBUG': s.DEBUG, "
        "'SSL': s.SECURE_SSL_REDIRECT, 'COOKIE': s.SESSION_COOKIE_SECURE, 'HSTS': s.SECURE_HSTS_SECONDS, "
        "'PROXY': s.SECURE_PROXY_SSL_HEADER}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
    )


# --- debug -----------------------------------------------------------------------------------------
def test_debug_is_off_unless_asked_for(tmp_path):
    out = import_settings(prod_env(tmp_path))
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)
    assert values["DEBUG"] is False
    assert values["SSL"] is True and values["COOKIE"] is True and values["HSTS"] >= 31536000
    assert values["PROXY"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_debug_refuses_a_public_host(tmp_path):
    out = import_settings(clean_env(tmp_path, HUB_DEBUG="true", HUB_ALLOWED_HOSTS="localhost,hub.example.com"))
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and "hub.example.com" in out.stderr and "loopback" in out.stderr
    out = import_settings(clean_env(tmp_path, HUB_DEBUG="true", HUB_ALLOWED_HOSTS="*"))
    assert out.returncode != 0 and "ImproperlyConfigured" in out.stderr


def test_debug_demo_on_loopback_starts_without_keys(tmp_path):
    out = import_settings(clean_env(tmp_path, HUB_DEBUG="true"))  # what ./hub up does
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["DEBUG"] is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"HUB_SECRET_KEY": ""}, "HUB_SECRET_KEY must be set"),
        ({"HUB_SECRET_KEY": "dev-only-insecure-key-change-me-in-production-0123456789"}, "HUB_SECRET_KEY must be set"),
        ({"HUB_ENCRYPTION_KEY": ""}, "HUB_ENCRYPTION_KEY must be set"),
        ({"HUB_ENCRYPTION_KEY": "not-a-fernet-key"}, "not a Fernet key"),
        ({"HUB_ENCRYPTION_KEY": f"{Fernet.generate_key().decode()},short"}, "key #2 is not a Fernet key"),
    ],
)
def test_production_refuses_missing_or_weak_keys(tmp_path, overrides, message):
    out = import_settings(prod_env(tmp_path, **overrides))
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and message in out.stderr
    assert "not-a-fernet-key" not in out.stderr.split("ImproperlyConfigured")[-1]  # never echoes the key


def test_check_deploy_passes_with_production_env(tmp_path):
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=prod_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


# --- error reports ---------------------------------------------------------------------------------
# Made at run time, so the source lines the report shows never contain them.
PW = {
    name: f"{name}-pass-{secrets.token_hex(4)}"
    for name in ["pg", "broker", "redis", "env", "frame", "msg", "nested", "sensitive"]
}
PASSWORDS = list(PW.values())


@sensitive_variables("token")
def _fail_with_secrets(broker_url):
    token = PW["sensitive"]  # noqa: F841  (shown in the frame unless cleansed)
    local_url = f"amqp://hub:{PW['frame']}@rabbit:5672//"  # noqa: F841
    raise ConnectionError(f"cannot reach postgres://hub:{PW['msg']}@db:5432/hub")


def _render_500(settings, *, is_email=False):
    settings.DEBUG = True
    settings.DATABASE_URL = f"postgres://hub:{PW['pg']}@db:5432/hub"
    settings.CELERY_BROKER_URL = f"redis://:{PW['broker']}@redis:6379/0"
    settings.REDIS_URL = f"redis://default:{PW['redis']}@redis:6379/1"
    settings.HUB_EXTRA_SERVICES = {"cache": {"LOCATION": f"rediss://cache:{PW['nested']}@cache:6380/0"}}
    # runserver copies the process environment into request.META
    request = RequestFactory().get(
        "/boom/", DATABASE_URL=f"postgres://hub:{PW['env']}@db/hub", CELERY_BROKER_URL=f"amqp://u:{PW['env']}@rabbit//"
    )
    try:
        _fail_with_secrets(f"redis://:{PW['broker']}@redis:6379/0")
    except ConnectionError:
        exc_info = sys.exc_info()
    if is_email:
        return get_exception_reporter_class(request)(request, *exc_info, is_email=True).get_traceback_text()
    return technical_500_response(request, *exc_info).content.decode()


@pytest.mark.parametrize("is_email", [False, True], ids=["debug-page", "email-text"])
def test_error_reports_mask_connection_url_passwords(settings, is_email):
    page = _render_500(settings, is_email=is_email)
    assert "_fail_with_secrets" in page  # the report itself is intact
    leaked = [p for p in PASSWORDS if p in page]
    assert leaked == []
    assert "db:5432/hub" in page  # the rest of the URL stays readable


def test_debug_page_through_the_handler_masks_passwords(client, settings):
    """A view raising under DEBUG=True, answered by Django's own handler (test client, no re-raise)."""
    from django.urls import path

    def boom(request):
        _fail_with_secrets(f"redis://:{PW['broker']}@redis:6379/0")

    settings.DEBUG = True
    settings.DATABASE_URL = f"postgres://hub:{PW['pg']}@db:5432/hub"
    settings.ROOT_URLCONF = type("urls", (), {"urlpatterns": [path("boom/", boom)]})
    client.raise_request_exception = False
    response = client.get("/boom/", DATABASE_URL=f"postgres://hub:{PW['env']}@db/hub")
    assert response.status_code == 500
    body = response.content.decode()
    assert "ConnectionError" in body
    assert [p for p in PASSWORDS if p in body] == []


# --- var/ permissions ------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_migrate_makes_var_owner_only(tmp_path):
    env = clean_env(tmp_path, HUB_DEBUG="true")
    out = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    var = tmp_path / "var"
    assert _mode(var) == 0o700
    files = [p for p in var.iterdir() if p.is_file()]
    assert any(p.name == "hub.sqlite3" for p in files)
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(0o600) for p in files}


def test_existing_world_readable_var_is_tightened(tmp_path):
    """Installs made before this fix: var/ 0755 and the database 0644 become 0700 / 0600 on next start."""
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)
    db = var / "hub.sqlite3"
    db.touch()
    os.chmod(db, 0o644)
    code = "import django; django.setup(); from django.db import connection; connection.ensure_connection()"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_env(tmp_path, HUB_DEBUG="true"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert _mode(var) == 0o700
    assert _mode(db) == 0o600
    for journal in var.glob("hub.sqlite3-*"):
        assert _mode(journal) == 0o600, journal.name


# --- static files and CSP on the production path ------------------------------------------------
def _wsgi_get(app, path, **extra):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "SERVER_PROTOCOL": "HTTP/1.1",
        **extra,
    }
    status = {}

    def start_response(line, headers, exc_info=None):
        status["line"], status["headers"] = line, dict(headers)

    body = b"".join(app(environ, start_response))
    return int(status["line"].split()[0]), status["headers"], body


def test_wsgi_app_serves_collected_static_files_with_debug_off(db, settings, tmp_path):
    from django.core.wsgi import get_wsgi_application

    assert settings.DEBUG is False
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    app = get_wsgi_application()  # what waitress serves: WhiteNoise reads STATIC_ROOT at start-up
    for path in [
        "/static/admin/css/base.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
        "/static/console/hub.js",
    ]:
        code, headers, body = _wsgi_get(app, path)
        assert code == 200, path
        assert len(body) > 100, path
    code, headers, _ = _wsgi_get(app, "/static/admin/css/base.css", HTTP_ACCEPT_ENCODING="gzip")
    assert code == 200 and headers.get("Content-Encoding") == "gzip"


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def test_csp_header_and_no_inline_script(role_client):
    from integration_hub.core.models import Channel, Connection
    from integration_hub.inventory.models import ChannelStockRule

    conn = Connection.objects.create(name="ct", system_type="commercetools", base_url="http://x")
    rule = ChannelStockRule.objects.create(
        channel=Channel.objects.create(key="web", name="Web", connection=conn, external_id="web")
    )
    c = role_client("admin")
    pages = ["/", "/exceptions/", "/pushes/", f"/rules/channel-rules/{rule.pk}/", "/api/docs/", "/admin/"]
    for url in pages:
        response = c.get(url, follow=True)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["default-src"] == "'self'"
        assert "'unsafe-inline'" not in directives["script-src"] and "unsafe-eval" not in directives["script-src"]
        html = response.content.decode()
        if url == "/admin/":
            continue  # Django's own admin: its <script> tags are data (type=application/json) or files
        assert not INLINE_SCRIPT.search(html), url
        assert not INLINE_HANDLER.search(html), url
    script = c.get("/api/docs/?script")  # Swagger UI's start-up script comes as a file
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_demo_runner_with_debug_listens_on_loopback_only(settings):
    from django.core.management.base import CommandError

    settings.DEBUG = True  # as under ./hub up
    with pytest.raises(CommandError, match="loopback only"):
        call_command("runhub", addr="0.0.0.0:8000", no_sandbox=True, no_seed=True)
