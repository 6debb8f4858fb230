"""Catalogue audit: storefront SKUs vs mappings -> unknown_sku / sku_mismatch with the matching transform."""

from __future__ import annotations

import pytest

from exceptions_app.models import ExceptionRecord
from integration_hub.catalog.audit import audit_skus
from integration_hub.catalog.models import Item, SkuMapping
from integration_hub.core.models import Channel
from tests.support.fakes import install_fakes
from tests.support import factories


@pytest.fixture
def shop(db):
    conn = factories.connection("commercetools", "shop", base_url="http://127.0.0.1:9/ct")
    web = Channel.objects.create(key="web", name="web", connection=conn, external_id="sc-web")
    app = Channel.objects.create(key="app", name="app", connection=conn, external_id="sc-app")
    for sku in ("123", "00456", "ab-7", "mapped", "only-web"):
        Item.objects.create(sku=sku)
    SkuMapping.objects.create(item=Item.objects.get(sku="mapped"), storefront_sku="MAPPED")
    SkuMapping.objects.create(item=Item.objects.get(sku="only-web"), channel=web, storefront_sku="ONLY-WEB")
    return conn, web, app


def records():
    return {r.dedupe_key: r for r in ExceptionRecord.objects.all()}


def test_audit_classifies_storefront_skus(shop, django_assert_max_num_queries):
    conn, web, app = shop
    storefront = ["MAPPED", "ONLY-WEB", "00000123", "456", "AB-7", "ghost"]
    with django_assert_max_num_queries(10):
        res = audit_skus(conn, storefront)
    recs = records()
    assert res.per_channel["web"] == {"mapped": 2, "mismatch": 3, "unknown": 1}
    # ONLY-WEB is mapped on web only: on app its item is free, so upper-casing suggests it
    assert res.per_channel["app"] == {"mapped": 1, "mismatch": 4, "unknown": 1}
    pad = recs["sku_mismatch:web:00000123"]
    assert pad.context["suggested_item_sku"] == "123" and pad.context["transform"]["pad_to_length"] == 8
    assert pad.context["action"] == "map_sku" and pad.context["suggested_item_id"] == Item.objects.get(sku="123").pk
    assert recs["sku_mismatch:web:456"].context["transform"]["strip_leading_zeros"] is True
    assert recs["sku_mismatch:web:AB-7"].context["transform"]["case"] == "upper"
    assert recs["unknown_sku:web:ghost"].kind == "unknown_sku" and recs["unknown_sku:web:ghost"].channel == web
    assert recs["sku_mismatch:app:ONLY-WEB"].context["suggested_item_sku"] == "only-web"
    assert "unknown_sku:web:MAPPED" not in recs


def test_audit_reruns_merge_and_clear_fixed_skus(shop):
    conn, web, app = shop
    audit_skus(conn, ["00000123", "ghost"])
    audit_skus(conn, ["00000123", "ghost"])
    assert records()["sku_mismatch:web:00000123"].count == 2
    SkuMapping.objects.create(item=Item.objects.get(sku="123"), storefront_sku="00000123")  # the one-click fix
    res = audit_skus(conn, ["00000123"])
    recs = records()
    assert recs["sku_mismatch:web:00000123"].status == "resolved"
    assert recs["sku_mismatch:app:00000123"].status == "resolved"
    assert recs["unknown_sku:web:ghost"].status == "open"  # not on the storefront any more, but may come from orders
    assert res.cleared == 2


def test_loose_match_without_exact_transform(shop):
    conn, web, app = shop
    Item.objects.create(sku="0042x")
    audit_skus(conn, ["42X"])  # strip zeros *and* upper: one of the candidate specs
    rec = records()["sku_mismatch:web:42X"]
    assert rec.context["suggested_item_sku"] == "0042x" and rec.context["match"] == "transform"
    Item.objects.create(sku="  099y")
    audit_skus(conn, ["99Y "])
    assert records()["sku_mismatch:web:99Y"].context["suggested_item_sku"] == "  099y"


def test_audit_task_over_fake_connector(shop, monkeypatch):
    from integration_hub.catalog.tasks import audit_catalogue

    class Fake:
        def list_skus(self):
            return iter(["MAPPED", "nope"])

    install_fakes(monkeypatch).install(Fake())
    out = audit_catalogue()
    assert out[0]["connection"] == "shop" and out[0]["unknown"] == 2


def test_beat_jobs_are_registered(db):
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    call_command("setup_beat")
    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {
        "inventory.sweep_pending",
        "inventory.poll_masters",
        "inventory.drift_check",
        "catalog.audit_catalogue",
    } <= names


def test_audit_one_channel_only(shop, monkeypatch):
    from integration_hub.catalog.audit import audit_channel

    class Fake:
        def list_skus(self):
            return ["ghost"]

    conn, web, app = shop
    install_fakes(monkeypatch).install(Fake())
    res = audit_channel(app)
    assert list(res.per_channel) == ["app"] and set(records()) == {"unknown_sku:app:ghost"}


def test_audit_task_records_unreadable_storefront(shop, monkeypatch):
    from connectors import errors
    from integration_hub.catalog.tasks import audit_catalogue

    class Down:
        def list_skus(self):
            raise errors.TimeoutError_("read timed out")

    install_fakes(monkeypatch).install(Down())
    assert "timed out" in audit_catalogue()[0]["error"]
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:shop:catalogue_audit")
    assert rec.status == "open"

    class Up:
        def list_skus(self):
            return []

    install_fakes(monkeypatch).install(Up())
    audit_catalogue()
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_configured_transforms_are_tried_first_and_reported(shop, django_assert_max_num_queries):
    """Admin-configured IdentifierTransform rows (channel's, then connection's, then global; active only)
    match by applying them — also where the loose key cannot (a prefix)."""
    from integration_hub.catalog.models import IdentifierTransform

    conn, web, app = shop
    other = factories.connection("sfcc", "other", base_url="http://127.0.0.1:9/sfcc")
    Item.objects.create(sku="0777")
    uk = IdentifierTransform.objects.create(name="uk prefix", connection=conn, prefix="UK-", strip_leading_zeros=True)
    IdentifierTransform.objects.create(name="app suffix", channel=app, suffix="-A", case="upper")
    IdentifierTransform.objects.create(name="elsewhere", connection=other, prefix="X-")
    IdentifierTransform.objects.create(name="off", connection=conn, prefix="OFF-", active=False)
    with django_assert_max_num_queries(11):
        audit_skus(conn, ["UK-777", "AB-7-A", "X-123", "OFF-123", "uk-777"])
    recs = records()
    rec = recs["sku_mismatch:web:UK-777"]
    assert rec.context["match"] == "configured_transform" and rec.context["suggested_item_sku"] == "0777"
    assert rec.context["configured_transform"] == {"id": uk.pk, "name": "uk prefix"}
    assert rec.context["transform"]["prefix"] == "UK-" and "uk prefix" in rec.title
    assert recs["sku_mismatch:app:AB-7-A"].context["configured_transform"]["name"] == "app suffix"
    assert "unknown_sku:web:AB-7-A" in recs  # the app-only transform does not apply to web
    assert "unknown_sku:web:X-123" in recs  # another connection's transform does not apply here
    assert "unknown_sku:web:OFF-123" in recs  # inactive transforms are not tried
    assert "unknown_sku:web:uk-777" in recs  # applying the transform must give the SKU exactly


def test_configured_transform_suggestion_reuses_the_transform_in_triage(shop):
    from exceptions_app import triage
    from integration_hub.catalog.models import IdentifierTransform

    conn, web, app = shop
    t = IdentifierTransform.objects.create(name="uk prefix", connection=conn, prefix="UK-")
    audit_skus(conn, ["UK-123"])
    suggestion = triage.suggest(ExceptionRecord.objects.get(dedupe_key="sku_mismatch:web:UK-123"))
    assert suggestion.item.sku == "123" and suggestion.spec.prefix == "UK-" and suggestion.transform == t


def storefront_of(n: int, tag: str, conn) -> list[str]:
    """``n`` master items ``<tag>00000…``: 3 in 10 sold under a near-miss SKU (zeros stripped, upper case), a
    configured transform's prefix, or an unknown SKU; the rest mapped globally under their own SKU."""
    from integration_hub.catalog.models import IdentifierTransform

    items = Item.objects.bulk_create([Item(sku=f"{tag}{i:05d}") for i in range(n)])
    IdentifierTransform.objects.create(name=f"{tag} prefix", connection=conn, prefix="Q-")
    SkuMapping.objects.bulk_create(
        [SkuMapping(item=it, storefront_sku=it.sku) for i, it in enumerate(items) if i % 10 > 2]
    )
    kinds = {0: lambda s: s.upper(), 1: lambda s: f"Q-{s}", 2: lambda s: f"ghost-{s}"}
    return [kinds.get(i % 10, lambda s: s)(it.sku) for i, it in enumerate(items)]


def test_audit_query_count_does_not_grow_with_the_catalogue(db):
    """Principle 6: 50 or 500 storefront SKUs (and a bigger item master the second time), same queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for n in (50, 500):
        conn = factories.connection("commercetools", f"shop{n}", base_url="http://127.0.0.1:9/ct")
        Channel.objects.create(key=f"web{n}", name="web", connection=conn, external_id=f"sc-web{n}")
        Channel.objects.create(key=f"app{n}", name="app", connection=conn, external_id=f"sc-app{n}")
        storefront = storefront_of(n, f"c{n}-", conn)
        audit_skus(conn, storefront)  # first run: raise_many's inserts are batched by the backend's parameter limit
        with CaptureQueriesContext(connection) as ctx:  # the daily re-run
            res = audit_skus(conn, storefront)
        counts[n] = len(ctx.captured_queries)
        assert res.mapped == 2 * (n * 7 // 10) and res.mismatches == 2 * (2 * n // 10) and res.unknown == 2 * (n // 10)
        rec = ExceptionRecord.objects.get(dedupe_key=f"sku_mismatch:web{n}:Q-c{n}-00001")
        assert rec.context["match"] == "configured_transform" and rec.context["suggested_item_sku"] == f"c{n}-00001"
        assert ExceptionRecord.objects.get(dedupe_key=f"sku_mismatch:app{n}:C{n}-00000").context["match"] == "transform"
    # channels, transforms, mappings, item join; raise_many (savepoint, existing, reopen, count, hourly occurrence
    # upsert for the queue's trend, release); stale records
    assert counts == {50: 11, 500: 11}


def test_audit_batches_storefront_skus_with_the_same_outcome(shop, monkeypatch, django_assert_num_queries):
    """Big storefronts are looked up BATCH SKUs at a time (two queries each); the outcome does not change."""
    import integration_hub.catalog.audit as audit
    from integration_hub.catalog.models import IdentifierTransform

    conn, web, app = shop
    IdentifierTransform.objects.create(name="uk prefix", connection=conn, prefix="UK-", strip_leading_zeros=True)
    storefront = ["MAPPED", "ONLY-WEB", "00000123", "456", "AB-7", "ghost", "UK-456"]
    audit_skus(conn, storefront)
    whole = {k: (r.kind, r.context) for k, r in records().items()}
    ExceptionRecord.objects.all().delete()
    monkeypatch.setattr(audit, "BATCH", 2)
    with django_assert_num_queries(10 + 2 * 3):  # 7 SKUs: 4 batches instead of 1 (10: with the occurrence upsert)
        res = audit_skus(conn, storefront)
    assert {k: (r.kind, r.context) for k, r in records().items()} == whole
    assert res.per_channel["web"] == {"mapped": 2, "mismatch": 4, "unknown": 1}
    assert whole["sku_mismatch:web:UK-456"][1]["configured_transform"]["name"] == "uk prefix"


def test_items_mapped_elsewhere_are_not_suggested(shop):
    conn, web, app = shop
    audit_skus(conn, ["Mapped", "Only-Web"])  # "mapped" is mapped globally, "only-web" on web only
    recs = records()
    assert "unknown_sku:web:Mapped" in recs and "unknown_sku:app:Mapped" in recs
    assert "unknown_sku:web:Only-Web" in recs
    assert recs["sku_mismatch:app:Only-Web"].context["suggested_item_sku"] == "only-web"


@pytest.mark.parametrize("raw", ["000ab12", "AB12", "  0042x ", "0", "000", "", " ", "a0b", "00-7", "x00"])
def test_normalise_sql_agrees_with_normalise(db, raw):
    from django.db import connection

    from integration_hub.catalog.transforms import normalise, normalise_sql

    with connection.cursor() as cur:
        cur.execute(f"SELECT {normalise_sql('%s')}", [raw])
        assert cur.fetchone()[0] == normalise(raw)


def test_audit_does_not_load_the_item_master_into_python(db):
    """20,000 master items, 200 storefront SKUs: only the matches come back from the database, no Item object
    is built (the item master stays in SQL however big it is)."""
    from unittest import mock

    from django.db.backends.utils import CursorWrapper
    from django.db.models.signals import post_init

    conn = factories.connection("commercetools", "big", base_url="http://127.0.0.1:9/ct")
    Channel.objects.create(key="big", name="big", connection=conn, external_id="sc-big")
    Item.objects.bulk_create([Item(sku=f"{i:07d}") for i in range(20_000)], batch_size=2000)
    storefront = [str(i) for i in range(0, 20_000, 100)]  # leading zeros stripped: 200 near-misses
    fetched, built = [0], []

    def counting(name):
        def fetch(self, *args):
            rows = getattr(self.cursor, name)(*args)
            fetched[0] += (rows is not None) if name == "fetchone" else len(rows)
            return rows

        return fetch

    def iterate(self):
        for row in self.cursor:
            fetched[0] += 1
            yield row

    def on_init(sender, **kw):
        built.append(sender)

    post_init.connect(on_init, sender=Item)
    try:
        with mock.patch.multiple(
            CursorWrapper,
            create=True,
            fetchone=counting("fetchone"),
            fetchmany=counting("fetchmany"),
            fetchall=counting("fetchall"),
            __iter__=iterate,
        ):
            res = audit_skus(conn, storefront)
    finally:
        post_init.disconnect(on_init, sender=Item)
    assert res.mismatches == 200 and res.unknown == 0
    assert built == []
    assert fetched[0] < 1000, fetched[
        0
    ]  # 200 matches, 200 new records' ids and the records read back, not 20,000 items
    rec = ExceptionRecord.objects.get(dedupe_key="sku_mismatch:big:100")
    assert rec.context["suggested_item_sku"] == "0000100" and rec.context["transform"]["pad_to_length"] is None
