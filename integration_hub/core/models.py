"""Topology of the integration: external systems (connections), storefront channels, stock locations,
sync cursors, and the audit trail kept for every admin-editable rule."""
from __future__ import annotations

import os

from django.conf import settings
from django.db import models

from . import crypto


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


class Connection(models.Model):
    """One configured external system. Credentials come from the environment (``*_env`` names an
    environment variable) or are stored encrypted at rest; plaintext is never stored."""

    name = models.SlugField(max_length=64, unique=True)
    system_type = models.CharField(max_length=32, choices=SystemType.choices)
    base_url = models.URLField(max_length=500, help_text="API root, e.g. https://api.europe-west1.gcp.commercetools.com")
    auth_url = models.URLField(max_length=500, blank=True, help_text="OAuth token endpoint root, when separate")
    client_id = models.CharField(max_length=200, blank=True)
    secret_env = models.CharField(max_length=100, blank=True, help_text="Environment variable holding the client secret / API key")
    secret_encrypted = models.TextField(blank=True, editable=False)
    webhook_secret_env = models.CharField(max_length=100, blank=True)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    options = models.JSONField(default=dict, blank=True, help_text="System specific settings: project key, site id, scopes, account id …")
    rate_limit_per_second = models.FloatField(default=10.0)
    rate_limit_burst = models.PositiveIntegerField(default=10)
    timeout_seconds = models.FloatField(default=10.0)
    max_retries = models.PositiveSmallIntegerField(default=5)
    enabled = models.BooleanField(default=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_system_type_display()})"

    # -- secrets ---------------------------------------------------------------------------
    def set_secret(self, plaintext: str) -> None:
        self.secret_encrypted = crypto.encrypt(plaintext)

    def get_secret(self) -> str:
        if self.secret_env:
            return os.environ.get(self.secret_env, "")
        return crypto.decrypt(self.secret_encrypted)

    def set_webhook_secret(self, plaintext: str) -> None:
        self.webhook_secret_encrypted = crypto.encrypt(plaintext)

    def get_webhook_secret(self) -> str:
        if self.webhook_secret_env:
            return os.environ.get(self.webhook_secret_env, "")
        if self.webhook_secret_encrypted:
            return crypto.decrypt(self.webhook_secret_encrypted)
        return settings.HUB["WEBHOOK_SECRET"]

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
    external_id = models.CharField(max_length=200, help_text="Supply channel key (commercetools) or inventory list id (SFCC)")
    warehouse = models.ForeignKey(
        Connection, on_delete=models.PROTECT, null=True, blank=True, related_name="fulfilled_channels",
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
