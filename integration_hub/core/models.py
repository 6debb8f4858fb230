"""Topology of the integration: external systems (connections), storefront channels, stock locations,
sync cursors, and the audit trail kept for every admin-editable rule."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from connectors import egress, env_secrets, errors
from connectors.signatures import TOLERANCE

from . import crypto

# Connection secrets named by environment variable must carry this prefix: secret_env may never name the
# hub's own settings (HUB_SECRET_KEY, HUB_ENCRYPTION_KEY, DATABASE_URL, CELERY_BROKER_URL, REDIS_URL …),
# which would otherwise be sent to whatever URL the connection points at.
SECRET_ENV_PREFIX = env_secrets.PREFIX
URL_FIELDS = ("base_url", "auth_url")


SecretEnvNotAllowed = env_secrets.SecretEnvNotAllowed
secret_env_problem = env_secrets.problem


def _option_urls(value, path="options"):
    """Every http(s) URL in a connection's options, with where it sits."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _option_urls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _option_urls(v, f"{path}[{i}]")
    elif isinstance(value, str) and re.match(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        yield path, value.strip()


class SystemType(models.TextChoices):
    COMMERCETOOLS = "commercetools", "commercetools"
    SFCC = "sfcc", "Salesforce Commerce Cloud"
    WAIR = "wair", "WAIR for Retail"
    CLARUS = "clarus", "Clarus WMS"
    ARCHEAN = "archean", "Archean R247 Stock"
    INVENTORY_PLANNER = "inventory_planner", "Inventory Planner"
    WAIR_REPLENISHMENT = "wair_replenishment", "WAIR (replenishment API)"


STOREFRONT_SYSTEMS = {SystemType.COMMERCETOOLS, SystemType.SFCC}
MASTER_SYSTEMS = {SystemType.WAIR, SystemType.CLARUS, SystemType.ARCHEAN}
PLANNER_SYSTEMS = {SystemType.INVENTORY_PLANNER, SystemType.WAIR_REPLENISHMENT}
WEBHOOK_SYSTEMS = STOREFRONT_SYSTEMS | MASTER_SYSTEMS  # systems that post webhooks to the hub


def webhook_secret_configured(env_name: str, encrypted: str) -> bool:
    """True if a connection with these field values has a webhook secret (env variable set and non-empty,
    or one stored encrypted) — usable on ``.values()`` rows without loading or decrypting anything."""
    if env_name:
        return bool(os.environ.get(env_name, ""))
    return bool(encrypted)


def webhook_auth_configured(system_type: str, options, env_name: str, encrypted: str) -> bool:
    """Whether a connection's webhooks can be accepted at all: a webhook secret for every system that signs
    (or sends a static header), Clarus's identification headers in its options (Clarus signs nothing)."""
    if system_type == "clarus":
        from connectors.clarus import webhook_identification_configured

        return webhook_identification_configured(options)
    return webhook_secret_configured(env_name, encrypted)


class Connection(models.Model):
    """One configured external system. Credentials come from the environment (``*_env`` names an
    environment variable) or are stored encrypted at rest; plaintext is never stored."""

    name = models.SlugField(max_length=64, unique=True)
    system_type = models.CharField(max_length=32, choices=SystemType.choices)
    base_url = models.URLField(
        max_length=500, help_text="API root, e.g. https://api.europe-west1.gcp.commercetools.com"
    )
    auth_url = models.URLField(max_length=500, blank=True, help_text="OAuth token endpoint root, when separate")
    client_id = models.CharField(max_length=200, blank=True)
    secret_env = models.CharField(
        max_length=100, blank=True, help_text="Environment variable holding the client secret / API key"
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    webhook_secret_env = models.CharField(max_length=100, blank=True)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="System specific settings: project key, site id, scopes, account id …"
    )
    rate_limit_per_second = models.FloatField(default=10.0)
    rate_limit_burst = models.PositiveIntegerField(default=10)
    timeout_seconds = models.FloatField(default=10.0)
    max_retries = models.PositiveSmallIntegerField(default=5)
    enabled = models.BooleanField(default=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(
        blank=True, help_text="classified summary of the last failure (status, error class, URL)"
    )
    last_error_detail = models.TextField(
        blank=True, editable=False, help_text="what the remote answered to the last failure; admins only"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_system_type_display()})"

    # -- loaded state: which secrets a URL change must drop ----------------------------------------
    @classmethod
    def from_db(cls, db, field_names, values):
        obj = super().from_db(db, field_names, values)
        obj._loaded = {f: obj.__dict__.get(f) for f in (*URL_FIELDS, "secret_env", "webhook_secret_env")}
        return obj

    def urls_changed(self) -> bool:
        loaded = getattr(self, "_loaded", None)
        return bool(loaded) and any(
            f in self.__dict__ and loaded.get(f) is not None and self.__dict__[f] != loaded[f] for f in URL_FIELDS
        )

    def _drop_secrets_for_new_url(self) -> list[str]:
        """A changed API or token URL must not receive the secrets meant for the old one: clear every
        stored secret and secret variable name this same save does not supply anew."""
        if not self.urls_changed():
            return []
        loaded, supplied = self._loaded, getattr(self, "_supplied", set())
        cleared = []
        for field, kind in (("secret_encrypted", "secret"), ("webhook_secret_encrypted", "webhook_secret")):
            if getattr(self, field) and kind not in supplied:
                setattr(self, field, "")
                cleared.append(field)
        for field in ("secret_env", "webhook_secret_env"):
            if getattr(self, field) and getattr(self, field) == loaded.get(field):
                setattr(self, field, "")
                cleared.append(field)
        return cleared

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        saves_urls = update_fields is None or bool(set(update_fields) & set(URL_FIELDS))
        self.secrets_cleared = self._drop_secrets_for_new_url() if saves_urls else []
        if self.secrets_cleared and update_fields is not None:
            kwargs["update_fields"] = list({*update_fields, *self.secrets_cleared})
        super().save(*args, **kwargs)
        if saves_urls:
            self._loaded = {f: getattr(self, f) for f in (*URL_FIELDS, "secret_env", "webhook_secret_env")}
            self._supplied = set()

    # -- validation (admin form, any full_clean) --------------------------------------------------
    def clean(self):
        """URLs against the outbound guard, secret variable names against the prefix, and the system's
        required options (``connectors.options``, the same check the connector runs before use): the admin
        form and serializers that call ``full_clean`` show each as a field error."""
        from connectors.options import describe, option_errors

        super().clean()
        problems: dict[str, list[str]] = {}
        option_problems = option_errors(self.system_type, self.options, self.client_id)
        if option_problems:
            problems["options"] = [describe(option_problems)]
        for field in URL_FIELDS:
            url = getattr(self, field)
            if url:
                try:
                    egress.check_url(url)
                except errors.UnsafeDestinationError as exc:
                    problems.setdefault(field, []).append(str(exc))
        for where, url in _option_urls(self.options or {}):
            try:
                egress.check_url(url)
            except errors.UnsafeDestinationError as exc:
                problems.setdefault("options", []).append(f"{where}: {exc}")
        for field in ("secret_env", "webhook_secret_env"):
            problem = secret_env_problem(getattr(self, field))
            if problem:
                problems.setdefault(field, []).append(problem)
        if problems:
            raise ValidationError(problems)

    # -- secrets ---------------------------------------------------------------------------
    def _from_env(self, field: str) -> str:
        name = getattr(self, field)
        problem = secret_env_problem(name)
        if problem:
            raise SecretEnvNotAllowed(f"connection {self.name}: {field} {problem}", system=self.system_type)
        return os.environ.get(name, "")

    def set_secret(self, plaintext: str) -> None:
        self.secret_encrypted = crypto.encrypt(plaintext)
        self._supplied = {*getattr(self, "_supplied", set()), "secret"}

    def get_secret(self) -> str:
        if self.secret_env:
            return self._from_env("secret_env")
        return crypto.decrypt(self.secret_encrypted)

    def set_webhook_secret(self, plaintext: str) -> None:
        self.webhook_secret_encrypted = crypto.encrypt(plaintext)
        self._supplied = {*getattr(self, "_supplied", set()), "webhook_secret"}

    @sensitive_variables()
    def get_webhook_secret(self) -> str:
        """This connection's own webhook secret, or '' when it has none: there is no shared default, and a
        connection without a secret refuses every webhook (:mod:`connectors.signatures`)."""
        if self.webhook_secret_env:
            return self._from_env("webhook_secret_env")
        if self.webhook_secret_encrypted:
            return crypto.decrypt(self.webhook_secret_encrypted)
        return ""

    @property
    def has_webhook_secret(self) -> bool:
        """Whether a webhook secret is configured (without decrypting it)."""
        return webhook_secret_configured(self.webhook_secret_env, self.webhook_secret_encrypted)

    def claim_webhook_signature(self, sig, now: float | None = None) -> bool:
        """The replay cache of :class:`connectors.signatures.WebhookSender`: see :meth:`WebhookSignature.claim`."""
        return WebhookSignature.claim(self, sig, now)

    @property
    def receives_webhooks(self) -> bool:
        """Storefronts post order messages, inventory masters post stock and dispatch webhooks."""
        return self.system_type in WEBHOOK_SYSTEMS

    # -- health ------------------------------------------------------------------------------
    @classmethod
    def record_error(cls, pk: int, exc: BaseException | str, *, detail: str = "", at=None) -> None:
        """Note a failure on the connection: ``last_error`` gets the classified message (what ops see),
        ``last_error_detail`` what the remote answered (admins only)."""
        if not detail and isinstance(exc, BaseException):
            detail = errors.error_detail(exc)
        cls.objects.filter(pk=pk).update(
            last_error_at=at or timezone.now(),
            last_error=str(exc)[:2000],
            last_error_detail=detail[: errors.DETAIL_LIMIT],
        )

    @property
    def is_storefront(self) -> bool:
        return self.system_type in STOREFRONT_SYSTEMS

    @property
    def is_master(self) -> bool:
        return self.system_type in MASTER_SYSTEMS


class Channel(models.Model):
    """A storefront sales channel: a commercetools supply channel / store, an SFCC inventory list / site."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="channels")
    external_id = models.CharField(
        max_length=200, help_text="Supply channel key (commercetools) or inventory list id (SFCC)"
    )
    warehouse = models.ForeignKey(
        Connection,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="fulfilled_channels",
        help_text="Warehouse system that fulfils this channel's orders",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name


class Location(models.Model):
    """A stock location mastered by a WMS / retail ERP."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="locations")
    external_id = models.CharField(max_length=200)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["connection", "external_id"], name="uniq_location_external")]

    def __str__(self) -> str:
        return self.name


class SyncCursor(models.Model):
    """Where a poll of an external stream last stopped (e.g. 'orders since', 'stock changes since')."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="cursors")
    stream = models.CharField(max_length=64)
    value = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "stream"], name="uniq_cursor")]

    def __str__(self) -> str:
        return f"{self.connection.name}:{self.stream}={self.value}"


class AuditEntry(models.Model):
    """Who changed which rule or mapping, when, and what it looked like before and after."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"

    content_type = models.ForeignKey("contenttypes.ContentType", on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    action = models.CharField(max_length=10, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=32, blank=True, help_text="admin, console, api, csv-import, system")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_id", "-at"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.object_repr} by {self.actor or 'system'}"


class Heartbeat(models.Model):
    """Liveness of background parts: a beat job makes a worker touch its row every minute, so the
    dashboard can say when a worker last ran anything (and a missing worker is visible)."""

    name = models.CharField(max_length=100, unique=True)
    at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.at:%Y-%m-%d %H:%M:%S}"


class WebhookSignature(models.Model):
    """A webhook signature the hub has accepted, kept while its timestamp is inside the tolerance window
    so the same signed request cannot be accepted twice (:meth:`claim`; the scheme: :mod:`connectors.signatures`).
    ``digest`` is the HMAC the sender computed over its timestamp and body; it reveals nothing of the secret.

    Why a database table rather than ``cache.add``: the embedded mode's cache is a per-process LocMemCache, while
    several processes (web server threads/processes, workers, more hosts at scale) share the database in every
    mode; the unique constraint makes insert-or-reject atomic on SQLite and PostgreSQL alike; and the row is
    written in the request's transaction, so a request that fails while processing releases its signature and
    the sender's retry of the same signed request is not mistaken for a replay. Rows live ``TOLERANCE`` seconds
    after their ``t``; expired ones are removed by one indexed DELETE per claim (the table holds at most one
    window of traffic)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "digest"], name="uniq_webhook_signature")]

    def __str__(self) -> str:
        return f"{self.connection_id}:{self.digest[:12]}…"

    @classmethod
    def claim(cls, connection: Connection, sig, now: float | None = None) -> bool:
        """Record ``sig`` (a :class:`connectors.signatures.Signature`) as used for ``connection``: True the first
        time, False for a replay. Runs in the caller's transaction (a savepoint), so a request that fails
        afterwards releases its signature."""
        current = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
        cls.objects.filter(expires_at__lt=current).delete()
        expires = datetime.fromtimestamp(sig.timestamp, tz=UTC) + timedelta(seconds=TOLERANCE)
        try:
            with transaction.atomic():
                cls.objects.create(connection=connection, digest=sig.digest, expires_at=expires)
        except IntegrityError:
            return False
        return True
