"""Core models, transforms, exception merge/resolve, secrets, audit, webhook signatures."""

from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet
from django.db import IntegrityError, transaction

from connectors import signatures
from exceptions_app import kinds
from exceptions_app import services as exc
from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.catalog.models import BundleComponent, Item, SkuMapping
from integration_hub.catalog.transforms import TransformError, TransformSpec, apply, normalise
from integration_hub.core import audit
from integration_hub.core.models import AuditEntry, Channel, Connection, Location
from integration_hub.inventory.models import StockLevel
from tests.support import factories


@pytest.fixture
def topology(db):
    ct = factories.connection("commercetools", "ct", base_url="http://127.0.0.1:1/commercetools")
    wair = factories.connection("wair", "wair", base_url="http://127.0.0.1:1/wair")
    web = Channel.objects.create(key="web", name="Web", connection=ct, external_id="web-channel", warehouse=wair)
    dc = Location.objects.create(code="dc1", name="DC 1", connection=wair, external_id="DC1")
    return ct, wair, web, dc


# --- transforms ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "identifier,spec,expected",
    [
        ("000123", TransformSpec(strip_leading_zeros=True), "123"),
        ("0000", TransformSpec(strip_leading_zeros=True), "0"),
        ("123", TransformSpec(pad_to_length=8), "00000123"),
        (" ab-1 ", TransformSpec(case="upper"), "AB-1"),
        ("AB-1", TransformSpec(case="lower", prefix="x-"), "x-ab-1"),
        ("0042", TransformSpec(strip_leading_zeros=True, pad_to_length=6, suffix="-EU"), "000042-EU"),
        ("12345678", TransformSpec(fixed_length=8), "12345678"),
    ],
)
def test_transforms(identifier, spec, expected):
    assert apply(identifier, spec) == expected


@pytest.mark.parametrize(
    "identifier,spec",
    [
        ("123456789", TransformSpec(pad_to_length=8)),
        ("1234", TransformSpec(fixed_length=8)),
        ("", TransformSpec()),
        ("   ", TransformSpec()),
    ],
)
def test_transform_errors(identifier, spec):
    with pytest.raises(TransformError):
        apply(identifier, spec)


def test_normalise_matches_leading_zero_and_case_variants():
    assert normalise("000ab12") == normalise("AB12") == "AB12"


# --- models --------------------------------------------------------------------------------------
def test_stock_level_unique_per_item_location_state(topology):
    *_, dc = topology
    item = Item.objects.create(sku="SKU-1")
    StockLevel.objects.create(item=item, location=dc, state="available", quantity=5)
    StockLevel.objects.create(item=item, location=dc, state="damaged", quantity=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.create(item=item, location=dc, state="available", quantity=2)


def test_sku_mapping_unique_per_channel_and_global(topology):
    _, _, web, _ = topology
    a, b = Item.objects.create(sku="A"), Item.objects.create(sku="B")
    SkuMapping.objects.create(item=a, channel=web, storefront_sku="SF-1")
    SkuMapping.objects.create(item=a, channel=None, storefront_sku="SF-1")  # global mapping may coexist
    with pytest.raises(IntegrityError), transaction.atomic():
        SkuMapping.objects.create(item=b, channel=web, storefront_sku="SF-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        SkuMapping.objects.create(item=b, channel=None, storefront_sku="SF-1")


def test_bundle_component_rules(db):
    kit, part = Item.objects.create(sku="KIT", is_bundle=True), Item.objects.create(sku="PART")
    with pytest.raises(Exception):
        BundleComponent(bundle=kit, component=kit, quantity=1).full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        BundleComponent.objects.create(bundle=kit, component=part, quantity=0)
    BundleComponent.objects.create(bundle=kit, component=part, quantity=2)
    assert kit.components.get().quantity == 2


def test_connection_secret_encrypted_at_rest(db, monkeypatch):
    conn = Connection(name="x", system_type="wair", base_url="http://x")
    conn.set_secret("s3cret")
    conn.save()
    raw = Connection.objects.values_list("secret_encrypted", flat=True).get(pk=conn.pk)
    assert "s3cret" not in raw
    assert Connection.objects.get(pk=conn.pk).get_secret() == "s3cret"
    conn.secret_env = "HUB_CONN_TEST_SECRET"
    monkeypatch.setenv("HUB_CONN_TEST_SECRET", "from-env")
    assert conn.get_secret() == "from-env"


def test_secret_with_wrong_key_fails_loudly(db, settings):
    conn = Connection(name="x", system_type="wair", base_url="http://x")
    conn.set_secret("s3cret")
    settings.HUB = {**settings.HUB, "ENCRYPTION_KEY": Fernet.generate_key().decode()}  # another real key
    with pytest.raises(ValueError, match="cannot be decrypted"):
        conn.get_secret()


# --- audit ---------------------------------------------------------------------------------------
def test_audit_records_who_before_and_after(topology, django_user_model):
    _, _, web, _ = topology
    user = django_user_model.objects.create_user("alice", password="x")
    item = Item.objects.create(sku="A")
    with audit.acting_as(user, "console"):
        m = SkuMapping.objects.create(item=item, channel=web, storefront_sku="SF-A")
        m.storefront_sku = "SF-A2"
        m.save()
        m.save()  # no change: no entry
    entries = list(audit.history_for(m).order_by("at", "id"))
    assert [e.action for e in entries] == ["create", "update"]
    assert entries[1].before["storefront_sku"] == "SF-A" and entries[1].after["storefront_sku"] == "SF-A2"
    assert entries[1].actor == user and entries[1].source == "console"


def test_audit_never_copies_secrets(db):
    conn = Connection(name="y", system_type="wair", base_url="http://x")
    conn.set_secret("topsecret")
    conn.save()
    entry = AuditEntry.objects.get(object_id=str(conn.pk), content_type__model="connection")
    assert "secret_encrypted" not in entry.after


# --- exceptions ----------------------------------------------------------------------------------
def test_exception_merges_by_key(topology):
    _, _, web, _ = topology
    key = kinds.key(Kind.UNKNOWN_SKU, "web", "SF-9")
    for _ in range(500):
        rec = exc.raise_exception(Kind.UNKNOWN_SKU, key, "Unknown SKU SF-9", channel=web, sku="SF-9", context={"n": 1})
    assert ExceptionRecord.objects.count() == 1
    rec.refresh_from_db()
    assert rec.count == 500 and rec.first_seen <= rec.last_seen and rec.channel == web


def test_exception_resolve_clear_and_reopen(db, django_user_model):
    user = django_user_model.objects.create_user("bob")
    rec = exc.raise_exception(Kind.STUCK_ORDER, "stuck_order:o1", "Order o1 stuck", order_ref="o1")
    exc.acknowledge(rec, user)
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED and rec.status_changed_by == user
    assert exc.clear("stuck_order:o1") == 1
    rec.refresh_from_db()
    assert rec.status == Status.RESOLVED and rec.status_reason.startswith("cleared")
    assert exc.clear("stuck_order:o1") == 0  # nothing active left
    rec = exc.raise_exception(Kind.STUCK_ORDER, "stuck_order:o1", "Order o1 stuck again")
    assert rec.status == Status.OPEN and rec.times_reopened == 1 and rec.count == 2


def test_ignored_exception_stays_ignored_but_counts(db):
    rec = exc.raise_exception(Kind.STOCK_DRIFT, "stock_drift:web:X", "drift")
    with pytest.raises(ValueError):
        exc.ignore(rec)
    exc.ignore(rec, reason="known display-only SKU")
    rec = exc.raise_exception(Kind.STOCK_DRIFT, "stock_drift:web:X", "drift")
    assert rec.status == Status.IGNORED and rec.count == 2


def test_raise_many_is_bulk_and_merges(db, django_assert_max_num_queries):
    problems = [exc.Problem(Kind.UNKNOWN_SKU, f"unknown_sku:web:S{i}", f"S{i}", sku=f"S{i}") for i in range(1500)]
    # batched (SQLite caps bind params per query: the queue's grouping/assignee/snooze columns make each INSERT
    # batch smaller; plus one hourly-occurrence upsert per 1,000 keys), never per row
    with django_assert_max_num_queries(48):
        assert exc.raise_many(problems) == 1500
    exc.resolve(ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:S7"))
    exc.raise_many(problems[:10])
    assert ExceptionRecord.objects.count() == 1500
    s7 = ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:S7")
    assert s7.count == 2 and s7.status == Status.OPEN and s7.times_reopened == 1
    exc.raise_many([exc.Problem(Kind.UNKNOWN_SKU, "unknown_sku:web:S7", "S7 again", context={"attempt": 3})])
    s7.refresh_from_db()
    assert (s7.title, s7.context, s7.count) == ("S7 again", {"attempt": 3}, 3)


def test_raise_many_counts_repeated_keys_in_one_call(db):
    p = exc.Problem(Kind.UNKNOWN_SKU, "unknown_sku:web:R1", "R1", sku="R1")
    exc.raise_many([p, p, p, exc.Problem(Kind.UNKNOWN_SKU, "unknown_sku:web:R2", "R2")])
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:R1").count == 3
    exc.raise_many([p, p])
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:R1").count == 5
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:R2").count == 1


def test_raise_many_merges_a_key_another_worker_created_meanwhile(db, monkeypatch):
    """Two workers raising the same new key at once: the second one's INSERT hits the unique key
    (PostgreSQL raises IntegrityError once the first commits). It must merge, not fail — a push batch
    that already committed would otherwise skip its clears."""
    exc.raise_exception(Kind.STOCK_DRIFT, "stock_drift:web:Z", "other worker")  # committed by the other worker ...
    real_select = ExceptionRecord.objects.select_for_update
    calls = []

    def not_yet_visible(*args, **kwargs):  # ... after our SELECT ran: the first read does not see it
        calls.append(1)
        return ExceptionRecord.objects.none() if len(calls) == 1 else real_select(*args, **kwargs)

    monkeypatch.setattr(ExceptionRecord.objects, "select_for_update", not_yet_visible)
    p = exc.Problem(Kind.STOCK_DRIFT, "stock_drift:web:Z", "ours", context={"n": 1})
    assert exc.raise_many([p, p, exc.Problem(Kind.STOCK_DRIFT, "stock_drift:web:Y", "y")]) == 2
    z = ExceptionRecord.objects.get(dedupe_key="stock_drift:web:Z")
    assert z.count == 3 and z.title == "ours" and z.context == {"n": 1}
    assert ExceptionRecord.objects.get(dedupe_key="stock_drift:web:Y").count == 1


def test_unknown_kind_rejected(db):
    with pytest.raises(ValueError):
        exc.raise_exception("nonsense", "k", "t")


# --- webhooks ------------------------------------------------------------------------------------
def test_webhook_signature_roundtrip_and_tamper():
    body = b'{"a": 1}'
    header = signatures.sign("secret", body)
    assert signatures.verify_hmac("secret", body, {"X-Hub-Signature": header})
    assert signatures.verify_hmac("secret", body, {"HTTP_X_HUB_SIGNATURE": header})  # Django META style
    assert not signatures.verify_hmac("secret", b'{"a": 2}', {"X-Hub-Signature": header})
    assert not signatures.verify_hmac("other", body, {"X-Hub-Signature": header})
    assert not signatures.verify_hmac("secret", body, {})
    assert not signatures.verify_hmac("", body, {"X-Hub-Signature": header})


def test_webhook_signature_replay_window():
    body = b"{}"
    old = signatures.sign("secret", body, timestamp=int(time.time()) - 3600)
    assert not signatures.verify_hmac("secret", body, {"X-Hub-Signature": old})


def test_every_celery_setting_is_one_celery_reads(settings):
    """A CELERY_* setting Celery does not know is dead configuration that reads as if it did something."""
    from celery.app.defaults import NAMESPACES, flatten

    known = {name for name, _ in flatten(NAMESPACES)}
    ours = {k[len("CELERY_") :].lower() for k in dir(settings) if k.startswith("CELERY_")}
    assert ours - known == set()
