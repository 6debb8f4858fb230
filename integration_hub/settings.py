"""Integration Hub settings.

One engine, two sizes (ARCHITECTURE principle 8): everything is chosen by environment variables.

Embedded default (nothing set): SQLite in ``var/`` and a Celery broker that needs no server
(kombu's SQLAlchemy transport on a second SQLite file). At scale set:

  DATABASE_URL        postgres://user@host:5432/dbname
  CELERY_BROKER_URL   redis://host:6379/0  or  amqp://guest:guest@host:5672//
  REDIS_URL           redis://host:6379/1   (shared rate limiter + cache across workers/hosts)
  HUB_SECRET_KEY      Django secret key (required when debug is off)
  HUB_ENCRYPTION_KEY  Fernet key(s), newest first, encrypting connection secrets at rest (required when debug
                      is off; only the debug demo derives one from the secret key)

Debug is off unless HUB_DEBUG=true (``./hub up`` sets it for its loopback demo); the security block at the
end holds the production defaults (HTTPS-only cookies, HSTS, SSL redirect, CSP) and the start-up refusals.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE

from integration_hub.core import deploy_guard, filemodes

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = filemodes.private_dir(Path(os.environ.get("HUB_VAR_DIR", BASE_DIR / "var")))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get("HUB_SECRET_KEY") or deploy_guard.DEV_SECRET_KEY
DEBUG = env_bool("HUB_DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("HUB_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("HUB_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "rest_framework",
    "knox",  # hashed, expiring API tokens (sec-auth)
    "axes",  # login lockout (sec-auth)
    "django_filters",
    "django_celery_beat",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "integration_hub.core",
    "integration_hub.catalog",
    "integration_hub.inventory",
    "integration_hub.orders",
    "integration_hub.planning",
    "integration_hub.reconciliation",
    "integration_hub.console",
    "integration_hub.api",
    "exceptions_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files on the production path (waitress)
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "integration_hub.core.audit.CurrentUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # sec-auth: turns a lockout into the lockout page / 429 (keep last)
]

ROOT_URLCONF = "integration_hub.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "integration_hub.core.roles.roles_context",
            ],
        },
    },
]

WSGI_APPLICATION = "integration_hub.wsgi.application"

# --- database --------------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / os.environ.get("HUB_SQLITE_NAME", "hub.sqlite3")
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    if os.environ.get("HUB_TEST_DB_NAME"):
        DATABASES["default"]["TEST"] = {"NAME": os.environ["HUB_TEST_DB_NAME"]}
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and os.environ.get("HUB_PG_JIT", "off") == "off":
        # PostgreSQL's JIT compiles plans whose estimated cost is high: 2.1 s of a 9.5 s whole-catalogue ATS
        # statement was compilation (issue 19), and the hub runs no query long enough to win it back.
        # HUB_PG_JIT=on leaves the server's setting alone.
        options = DATABASES["default"].setdefault("OPTIONS", {})
        options["options"] = (options.get("options", "") + " -c jit=off").strip()
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # WAL + IMMEDIATE transactions let the web server, worker, beat and sandbox share one file.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file (not :memory:) so a real Celery worker process can see the test database.
            "TEST": {"NAME": str(VAR_DIR / os.environ.get("HUB_TEST_DB_NAME", "test_hub.sqlite3"))},
        }
    }
if os.environ.get("HUB_DB_NAME_OVERRIDE"):
    # A Celery worker started by the tests points at the test database this way.
    DATABASES["default"]["NAME"] = os.environ["HUB_DB_NAME_OVERRIDE"]
IS_SQLITE = DATABASES["default"]["ENGINE"].endswith("sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("HUB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("HUB_STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise indexes it at start-up (filled by collectstatic)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip) made by collectstatic; no manifest, so pages render before collectstatic too.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- cache / redis ----------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{VAR_DIR / 'broker.sqlite3'}"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Queues (issue 20): the order flow ("priority"), the stock decrements orders cause ("stock") and all
# else ("default") never share one; integration_hub/core/queues.py routes. One worker per queue
# (README "At scale"; `./hub up` does the same).
CELERY_TASK_ROUTES = ("integration_hub.core.queues.route",)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A task not acked within this window (worker killed mid-task) is redelivered.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
_scheme, _plus, _rest = CELERY_BROKER_URL.partition("+")
if _plus and _scheme in ("sqla", "sqlalchemy"):
    # kombu's SQLAlchemy transport (the embedded SQLite broker), polled every 0.1 s instead of 1 s; kombu takes a
    # transport class by setting only, never from the URL
    CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT = _rest, "integration_hub.core.embedded_broker:Transport"

# --- DRF --------------------------------------------------------------------------------------
# --- authentication: login lockout, API tokens (sec-auth) -------------------------------------
# django-axes (https://django-axes.readthedocs.io/en/latest/4_configuration.html): every login that goes
# through django.contrib.auth.authenticate(request, ...) — console, Django admin, POST /api/token/ — counts.
AUTHENTICATION_BACKENDS = [
    "integration_hub.core.login_lockout.LockoutBackend",  # first: axes refuses locked-out logins before the password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # shared by every web process; admin can unlock
AXES_FAILURE_LIMIT = int(os.environ.get("HUB_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("HUB_LOGIN_COOLOFF_MINUTES", "15")))
# Either counter locks: one username failing from many addresses, or one address trying many usernames.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "integration_hub.core.login_lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "integration_hub.core.login_lockout.client_ip"
# Behind N reverse proxies that append to X-Forwarded-For, the client is the Nth address from the right.
# 0 (default): REMOTE_ADDR only — a client-sent X-Forwarded-For is never trusted.
HUB_TRUSTED_PROXY_COUNT = int(os.environ.get("HUB_TRUSTED_PROXY_COUNT", "0"))
# django-rest-knox (https://jazzband.github.io/django-rest-knox/settings/): only a SHA-512 digest is stored.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=float(os.environ.get("HUB_API_TOKEN_TTL_HOURS", "10"))),
    "AUTH_HEADER_PREFIX": "Token",  # same header as before: Authorization: Token <key>
}
HUB_API_TOKEN_RATE = os.environ.get("HUB_API_TOKEN_RATE", "20/minute")  # POST /api/token/ per client address

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes DRF answer 401 (not 403) to missing/invalid
    # credentials; session second keeps CSRF enforcement for browser users.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_RATES": {"api_token": HUB_API_TOKEN_RATE},
    "NUM_PROXIES": HUB_TRUSTED_PROXY_COUNT,
    "DEFAULT_PERMISSION_CLASSES": ["integration_hub.core.roles.HasModelRolePermission"],
    # JSON nested deeper than core.jsonsafe.MAX_DEPTH is a 400, not a RecursionError
    "DEFAULT_PARSER_CLASSES": [
        "integration_hub.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "integration_hub.api.filters.HubFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Integration Hub API",
    "VERSION": "1.0.0",
    # Swagger UI / Redoc served from our own static files (self-hosted: no CDN needed).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ExceptionKindEnum": "exceptions_app.models.Kind",
        "ReportKindEnum": "integration_hub.reconciliation.models.ReportKind",
    },
    # sec-auth: 400/401/403/404 documented on every operation that can answer them
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "integration_hub.api.schema.document_error_responses",
    ],
}

# --- hub behaviour ----------------------------------------------------------------------------
HUB = {
    "ENCRYPTION_KEY": os.environ.get("HUB_ENCRYPTION_KEY", ""),
    # Minutes after which an order sent to the warehouse with no acknowledgement is stuck.
    "ACK_TIMEOUT_MINUTES": int(os.environ.get("HUB_ACK_TIMEOUT_MINUTES", "15")),
    # Minutes after a warehouse dispatch by which the storefront must show it shipped.
    "DISPATCH_NOTIFY_MINUTES": int(os.environ.get("HUB_DISPATCH_NOTIFY_MINUTES", "60")),
    # currency of Item.unit_cost (finance reports value stock at cost in it)
    "COST_CURRENCY": os.environ.get("HUB_COST_CURRENCY", "GBP"),
    # links in e-mails (finance report subscriptions): the console's public address, e.g. https://hub.example.com
    "PUBLIC_URL": os.environ.get("HUB_PUBLIC_URL", ""),
    # Minutes after the warehouse acknowledged an order by which it should have dispatched it; older
    # acknowledged orders are looked up in the warehouse (a lost dispatch confirmation) or flagged.
    "DISPATCH_DUE_MINUTES": int(os.environ.get("HUB_DISPATCH_DUE_MINUTES", str(24 * 60))),
    # Seconds an acknowledged order's stock hold may wait for the master's feed to carry it (longer than
    # any master's feed lag); older holds are released with a stock_drift record (issue 20).
    "HOLD_MAX_SECONDS": int(os.environ.get("HUB_HOLD_MAX_SECONDS", "900")),
    # Seconds within which a master's stock feed normally carries an acknowledged order; older holds show as
    # "holds beyond the feed lag" on the dashboard (issue 20, item 9) long before HOLD_MAX_SECONDS releases them.
    "MASTER_FEED_LAG_SECONDS": int(os.environ.get("HUB_MASTER_FEED_LAG_SECONDS", "120")),
    "SANDBOX_URL": os.environ.get("HUB_SANDBOX_URL", "http://127.0.0.1:8765"),
    # Hosts / CIDRs outbound calls may reach although internal (loopback, private, link-local …); empty =
    # public addresses only (connectors/egress.py). `./hub up` and the tests allow the loopback sandbox.
    "OUTBOUND_ALLOW": os.environ.get("HUB_OUTBOUND_ALLOW", ""),
    # Stock rows stamped further than this ahead of the hub's clock are rejected as bad data (a row dated
    # years ahead would otherwise make every later real change look stale); dispatch times are clamped.
    "FUTURE_TOLERANCE_SECONDS": int(os.environ.get("HUB_FUTURE_TOLERANCE_SECONDS", "300")),
    # Exception records with the same root cause (kind + connection + error) raised within this many minutes
    # of the group's last occurrence share one parent row in the queue (exceptions_app.services)
    "EXCEPTION_GROUP_WINDOW_MINUTES": int(os.environ.get("HUB_EXCEPTION_GROUP_WINDOW_MINUTES", "60")),
    # "retry / act on all matching" runs in the request up to this many rows, else on a worker
    "BULK_INLINE_LIMIT": int(os.environ.get("HUB_BULK_INLINE_LIMIT", "500")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"quiet_403": {"()": "integration_hub.core.logfilters.QuietPermissionDenied"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["quiet_403"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("HUB_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- security ---------------------------------------------------------------------------------
# Unsafe combinations refuse to start (debug on a public host; debug off with the public dev key or
# without a real encryption key): integration_hub/core/deploy_guard.py.
deploy_guard.check(
    debug=DEBUG,
    allowed_hosts=ALLOWED_HOSTS,
    secret_key=os.environ.get("HUB_SECRET_KEY"),
    encryption_key=HUB["ENCRYPTION_KEY"],
)
# Error reports (debug page, e-mails) mask connection-URL passwords and sensitive variables.
DEFAULT_EXCEPTION_REPORTER_FILTER = "integration_hub.core.error_reports.HubExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "integration_hub.core.error_reports.HubExceptionReporter"
# HTTPS: on by default whenever debug is off (`manage.py check --deploy` passes). Behind a TLS-terminating
# proxy set HUB_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO (the proxy must set/overwrite that header).
SECURE_SSL_REDIRECT = env_bool("HUB_SECURE_SSL_REDIRECT", not DEBUG)
# Probes and scrapers talk to the app server directly (no TLS proxy): a redirect to https would fail them, and
# it protects nothing — a bearer token in a plain-http request has already been sent when the 301 comes back.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("HUB_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("HUB_SECURE_HSTS_SECONDS", "0" if DEBUG else str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HUB_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("HUB_SECURE_HSTS_PRELOAD", True)
_proxy_header, _, _proxy_value = os.environ.get("HUB_SECURE_PROXY_SSL_HEADER", "").partition("=")
SECURE_PROXY_SSL_HEADER = (_proxy_header.strip(), _proxy_value.strip() or "https") if _proxy_header.strip() else None
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp 4). Scripts only from our static files (no inline script or event
# handler anywhere: templates use static/console/hub.js); inline CSS is allowed — base.html and the
# admin carry <style> blocks and style attributes. blob: workers are Redoc's search.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# --- monitoring: alerts, live dashboard, metrics, health, logs (integration_hub.monitoring) ----------------
INSTALLED_APPS += ["django_htmx", "integration_hub.monitoring"]
MIDDLEWARE.insert(0, "integration_hub.monitoring.metrics.RequestMetricsMiddleware")
HUB.update(
    {
        # bearer token for /metrics (Prometheus); unset = the endpoint does not exist (404)
        "METRICS_TOKEN": os.environ.get("HUB_METRICS_TOKEN", ""),
        # days of sampled figures kept for the dashboard charts (a week is charted)
        "MONITORING_RETENTION_DAYS": float(os.environ.get("HUB_MONITORING_RETENTION_DAYS", "8")),
        "DASHBOARD_REFRESH_SECONDS": int(os.environ.get("HUB_DASHBOARD_REFRESH_SECONDS", "15")),
    }
)
# Alert email goes through Django's mail backend: SMTP when HUB_SMTP_HOST is set, else the log (console).
if os.environ.get("HUB_SMTP_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["HUB_SMTP_HOST"]
    EMAIL_PORT = int(os.environ.get("HUB_SMTP_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("HUB_SMTP_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("HUB_SMTP_PASSWORD", "")
    EMAIL_USE_SSL = env_bool("HUB_SMTP_SSL", False)  # implicit TLS (port 465)
    EMAIL_USE_TLS = env_bool("HUB_SMTP_TLS", not EMAIL_USE_SSL)  # STARTTLS
    EMAIL_TIMEOUT = 15
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("HUB_MAIL_FROM", "integration-hub@localhost")
if os.environ.get("HUB_LOG_FORMAT", "").strip().lower() == "json":
    LOGGING["formatters"]["json"] = {"()": "integration_hub.monitoring.logs.JsonFormatter"}
    LOGGING["handlers"]["console"]["formatter"] = "json"
from integration_hub.monitoring.sentry import init_from_env as _init_sentry  # noqa: E402 — after the settings it reads

_init_sentry()  # only when SENTRY_DSN is set and sentry-sdk is installed
