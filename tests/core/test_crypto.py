"""Secrets at rest: real keys required, HKDF derivation (debug only), MultiFernet rotation, rotate_secrets."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from integration_hub.core import crypto
from integration_hub.core.models import AuditEntry, Connection

NEW, OLD = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def use_keys(settings, value: str):
    settings.HUB = {**settings.HUB, "ENCRYPTION_KEY": value}


def sha256_key(secret_key: str) -> bytes:  # what the hub used to derive, unsalted
    return base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())


def test_debug_only_derivation_uses_hkdf_not_plain_sha256(settings):
    settings.DEBUG = True
    use_keys(settings, "")
    token = crypto.encrypt("s3cret")
    with pytest.raises(InvalidToken):
        Fernet(sha256_key(settings.SECRET_KEY)).decrypt(token.encode())
    assert Fernet(crypto.derive_key(settings.SECRET_KEY)).decrypt(token.encode()) == b"s3cret"
    assert crypto.derive_key(settings.SECRET_KEY) != crypto.derive_key(settings.SECRET_KEY + "x")
    # a demo database written by the old derivation still reads (and rotate_secrets moves it on)
    old_token = Fernet(sha256_key(settings.SECRET_KEY)).encrypt(b"from-before").decode()
    assert crypto.decrypt(old_token) == "from-before"


def test_no_key_with_debug_off_refuses(settings):
    assert settings.DEBUG is False
    use_keys(settings, "")
    with pytest.raises(ImproperlyConfigured, match="HUB_ENCRYPTION_KEY must be set"):
        crypto.encrypt("s3cret")


def test_invalid_key_refuses_without_echoing_it(settings):
    use_keys(settings, "my-password-as-key")
    with pytest.raises(ImproperlyConfigured, match="not a Fernet key") as err:
        crypto.encrypt("s3cret")
    assert "my-password-as-key" not in str(err.value)


def test_key_list_encrypts_with_newest_and_decrypts_with_any(settings):
    use_keys(settings, OLD)
    old_token = crypto.encrypt("kept")
    use_keys(settings, f"{NEW}, {OLD}")
    assert crypto.decrypt(old_token) == "kept"
    new_token = crypto.encrypt("fresh")
    assert Fernet(NEW.encode()).decrypt(new_token.encode()) == b"fresh"
    with pytest.raises(InvalidToken):
        Fernet(OLD.encode()).decrypt(new_token.encode())


def _connections(n=3):
    rows = []
    for i in range(n):
        conn = Connection(name=f"c{i}", system_type="wair", base_url="http://x")
        conn.set_secret(f"api-key-{i}")
        if i % 2 == 0:
            conn.set_webhook_secret(f"hook-{i}")
        conn.save()
        rows.append(conn)
    Connection.objects.create(name="env-only", system_type="wair", base_url="http://x", secret_env="HUB_CONN_X")
    return rows


def test_rotate_secrets_reencrypts_every_stored_secret_with_the_newest_key(db, settings):
    use_keys(settings, OLD)
    rows = _connections()
    use_keys(settings, f"{NEW},{OLD}")
    audited_before = AuditEntry.objects.count()
    call_command("rotate_secrets", verbosity=0)
    newest = Fernet(NEW.encode())
    for conn in Connection.objects.exclude(name="env-only"):
        assert newest.decrypt(conn.secret_encrypted.encode()).decode().startswith("api-key-")
        if conn.webhook_secret_encrypted:
            assert newest.decrypt(conn.webhook_secret_encrypted.encode()).decode().startswith("hook-")
    entries = AuditEntry.objects.filter(source="rotate_secrets")
    assert entries.count() == len(rows) and AuditEntry.objects.count() == audited_before + len(rows)
    assert all("secret_encrypted" not in (e.after or {}) for e in entries)  # secrets never in the audit trail
    use_keys(settings, NEW)  # the old key can now go
    assert [c.get_secret() for c in Connection.objects.exclude(name="env-only").order_by("name")] == [
        "api-key-0",
        "api-key-1",
        "api-key-2",
    ]
    assert Connection.objects.get(name="c0").get_webhook_secret() == "hook-0"


def test_rotate_secrets_writes_nothing_when_a_secret_cannot_be_decrypted(db, settings):
    use_keys(settings, OLD)
    _connections(2)
    before = dict(Connection.objects.values_list("name", "secret_encrypted"))
    use_keys(settings, NEW)  # the old key was dropped too early
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_secrets", verbosity=0)
    assert dict(Connection.objects.values_list("name", "secret_encrypted")) == before
    assert not AuditEntry.objects.filter(source="rotate_secrets").exists()


def test_rotate_secrets_legacy_moves_sha256_derived_tokens(db, settings):
    conn = Connection.objects.create(
        name="old",
        system_type="wair",
        base_url="http://x",
        secret_encrypted=Fernet(sha256_key(settings.SECRET_KEY)).encrypt(b"legacy").decode(),
    )
    use_keys(settings, NEW)
    with pytest.raises(CommandError):
        call_command("rotate_secrets", verbosity=0)
    call_command("rotate_secrets", "--legacy", verbosity=0)
    conn.refresh_from_db()
    assert conn.get_secret() == "legacy"
    assert Fernet(NEW.encode()).decrypt(conn.secret_encrypted.encode()) == b"legacy"
