"""Issue 17: "Take the master's value" on a master_data_drift exception — the commercetools Products API update
(emulated: versioned, 409 on a stale version, unknown actions refused, staged vs current), the service (write,
re-read, resolve only when confirmed), Clarus not writable, and the console button (roles, CSRF, audit)."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth.models import Group, User
from django.test import Client

from connectors.registry import get_connector
from exceptions_app.models import ExceptionRecord
from integration_hub.catalog import item_import, item_outbox, master_fix
from integration_hub.catalog.tasks import audit_master_data
from integration_hub.core.models import AuditEntry
from tests.pairs.conftest import pair  # noqa: F401  (the fixture)


@pytest.fixture
def world(pair):  # noqa: F811
    sf, wh = pair.connection("commercetools"), pair.connection("clarus")
    pair.topology(sf, wh, list_id="sc-web")
    sf.options = {**sf.options, "barcode_attribute": "ean", "weight_attribute": "weight_g"}
    sf.save()
    item_import.import_items(
        "sku,barcode,weight,weight_unit,name\nA,5012345678900,250,g,Item A\nB,96385074,1,kg,Item B\n"
    )
    item_outbox.drain_all()  # Clarus has A and B
    pair.control(
        "commercetools", "set_variant", {"sku": "SF-A", "attributes": {"ean": "4006381333931", "weight_g": 250}}
    )
    pair.control("commercetools", "set_variant", {"sku": "SF-B", "attributes": {"weight_g": 900}})
    pair.control("clarus", "set_product", {"code": "A", "barcode": "4006381333931"})
    audit_master_data()
    return pair, sf, wh


def _rec(key):
    return ExceptionRecord.objects.get(dedupe_key=key)


def _ct(pr, method, path, **kw):
    from tests.support.factories import SECRETS

    tok = requests.post(
        f"{pr.sandbox.url}/commercetools/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("hub-demo", SECRETS["commercetools"]),
        timeout=5,
    ).json()["access_token"]
    return requests.request(
        method,
        f"{pr.sandbox.url}/commercetools/hubtest/{path}",
        headers={"Authorization": f"Bearer {tok}"},
        timeout=5,
        **kw,
    )


def _projection(pr, sku, staged=False):
    body = _ct(
        pr, "GET", "product-projections", params={"where": f'masterVariant(sku="{sku}")', "staged": str(staged).lower()}
    ).json()
    return body["results"][0]


# --- the emulated Products API update --------------------------------------------------------------------------------
def test_emulator_product_update_is_versioned_and_refuses_what_ct_refuses(world):
    pr, sf, wh = world
    p = _projection(pr, "SF-B")
    stale = _ct(
        pr,
        "POST",
        f"products/{p['id']}",
        json={
            "version": p["version"] - 1,
            "actions": [{"action": "setAttribute", "sku": "SF-B", "name": "weight_g", "value": 1000, "staged": False}],
        },
    )
    assert stale.status_code == 409 and stale.json()["errors"][0]["code"] == "ConcurrentModification"
    assert stale.json()["errors"][0]["currentVersion"] == p["version"]
    unknown = _ct(
        pr,
        "POST",
        f"products/{p['id']}",
        json={
            "version": p["version"],
            "actions": [
                {"action": "setAttribute", "sku": "SF-B", "name": "weight_g", "value": 1000, "staged": False},
                {"action": "changeSlugz"},
            ],
        },
    )
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "InvalidOperation"
    assert set(unknown.json()) >= {"statusCode", "message", "errors"}
    bad_name = _ct(
        pr,
        "POST",
        f"products/{p['id']}",
        json={"version": p["version"], "actions": [{"action": "changeName", "name": "x"}]},
    )
    assert bad_name.status_code == 400 and bad_name.json()["errors"][0]["code"] == "InvalidInput"
    no_variant = _ct(
        pr,
        "POST",
        f"products/{p['id']}",
        json={
            "version": p["version"],
            "actions": [{"action": "setAttribute", "sku": "NOPE", "name": "weight_g", "value": 1}],
        },
    )
    assert no_variant.status_code == 400 and no_variant.json()["errors"][0]["code"] == "InvalidOperation"
    assert _projection(pr, "SF-B")["version"] == p["version"]  # nothing of a refused request applied
    # staged (the default): only the staged projection changes
    ok = _ct(
        pr,
        "POST",
        f"products/{p['id']}",
        json={
            "version": p["version"],
            "actions": [{"action": "setAttribute", "sku": "SF-B", "name": "weight_g", "value": 950}],
        },
    )
    assert (
        ok.status_code == 200
        and ok.json()["version"] == p["version"] + 1
        and ok.json()["masterData"]["hasStagedChanges"] is True
    )
    cur, stg = _projection(pr, "SF-B"), _projection(pr, "SF-B", staged=True)
    assert {a["name"]: a["value"] for a in cur["masterVariant"]["attributes"]}["weight_g"] == 900
    assert {a["name"]: a["value"] for a in stg["masterVariant"]["attributes"]}["weight_g"] == 950
    # staged false: current and staged
    ok = _ct(
        pr,
        "POST",
        f"products/{p['id']}",
        json={
            "version": p["version"] + 1,
            "actions": [
                {"action": "setAttribute", "sku": "SF-B", "name": "weight_g", "value": 1000, "staged": False},
                {"action": "changeName", "name": {"en": "Item B"}, "staged": False},
            ],
        },
    )
    assert ok.status_code == 200
    cur = _projection(pr, "SF-B")
    assert {a["name"]: a["value"] for a in cur["masterVariant"]["attributes"]}["weight_g"] == 1000 and cur["name"] == {
        "en": "Item B"
    }


# --- the service ---------------------------------------------------------------------------------------------------------
def test_take_the_masters_value_on_commercetools_resolves_and_the_next_audit_agrees(world, django_user_model):
    pr, sf, wh = world
    user = django_user_model.objects.create_user("ops-x")
    weight, barcode = (
        _rec("master_data_drift:commercetools:B:weight"),
        _rec("master_data_drift:commercetools:A:barcode"),
    )
    name = _rec("master_data_drift:commercetools:A:name")  # the seeded product is called "P-SF-A"
    for rec in (weight, barcode, name):
        out = master_fix.take_master_value(rec, user=user)
        assert out.resolved, out.message
        rec.refresh_from_db()
        assert rec.status == "resolved" and "confirmed by a re-read" in rec.status_reason
    attrs = {a["name"]: a["value"] for a in _projection(pr, "SF-B")["masterVariant"]["attributes"]}
    assert attrs["weight_g"] == 1000  # 1 kg in grams
    assert _projection(pr, "SF-A")["name"]["en"] == "Item A"
    entry = AuditEntry.objects.filter(object_id=str(weight.pk), after__written=1000).get()
    assert entry.actor == user and entry.after["resolved"] is True
    audit_master_data()
    for key in ("B:weight", "A:barcode", "A:name"):
        assert _rec(f"master_data_drift:commercetools:{key}").status == "resolved"


def test_a_409_rereads_the_product_and_retries_once(world, monkeypatch):
    pr, sf, wh = world
    connector = get_connector(sf)
    real_post, posts = connector.client.post, []

    def post(path, **kw):
        if not posts:  # someone edits the product between our read and our write
            pr.control(
                "commercetools", "set_variant", {"sku": "SF-B", "attributes": {"weight_g": 900, "colour": "red"}}
            )
        posts.append(kw["json"]["version"])
        return real_post(path, **kw)

    monkeypatch.setattr(connector.client, "post", post)
    out = master_fix.take_master_value(_rec("master_data_drift:commercetools:B:weight"), connector=connector)
    assert out.resolved and len(posts) == 2 and posts[1] == posts[0] + 1
    attrs = {a["name"]: a["value"] for a in _projection(pr, "SF-B")["masterVariant"]["attributes"]}
    assert attrs == {"weight_g": 1000, "colour": "red"}  # the other edit kept


def test_a_reread_that_still_differs_leaves_it_open_with_the_reason(world, monkeypatch):
    pr, sf, wh = world
    connector = get_connector(sf)
    monkeypatch.setattr(type(connector), "catalogue_records", lambda self, skus: {"SF-B": {"weight_g": 900}})
    rec = _rec("master_data_drift:commercetools:B:weight")
    out = master_fix.take_master_value(rec, connector=connector)
    rec.refresh_from_db()
    assert not out.resolved and rec.status == "open" and "still reads 900" in rec.status_reason


def test_a_refused_write_leaves_it_open_with_the_error(world):
    pr, sf, wh = world
    pr.control(
        "commercetools", "faults", {"conflict_rate": 1.0}
    )  # every versioned write answers 409: one retry, then give up
    try:
        rec = _rec("master_data_drift:commercetools:B:weight")
        out = master_fix.take_master_value(rec)
    finally:
        pr.control("commercetools", "faults", {"conflict_rate": 0.0})
    rec.refresh_from_db()
    assert not out.resolved and rec.status == "open" and "refused the write" in rec.status_reason
    attrs = {a["name"]: a["value"] for a in _projection(pr, "SF-B")["masterVariant"]["attributes"]}
    assert attrs["weight_g"] == 900


def test_clarus_is_not_writable(world):
    rec = _rec("master_data_drift:clarus:A:barcode")
    assert master_fix.writable_reason(rec).startswith("not writable")
    with pytest.raises(master_fix.NotWritable):
        master_fix.take_master_value(rec)
    rec.refresh_from_db()
    assert rec.status == "open"


# --- the console button -----------------------------------------------------------------------------------------------------
def _client(role, csrf=False):
    u = User.objects.create_user(f"{role}-user", password="x")
    u.groups.add(Group.objects.get(name=role))
    c = Client(enforce_csrf_checks=csrf)
    c.force_login(u)
    return c


def test_the_button_for_ops_roles_csrf_and_not_writable_text(world):
    rec = _rec("master_data_drift:commercetools:B:weight")
    ops = _client("ops")
    page = ops.get(f"/exceptions/{rec.pk}/").content.decode()
    assert "Take the master&#x27;s value" in page or "Take the master's value" in page
    clarus_page = ops.get(f"/exceptions/{_rec('master_data_drift:clarus:A:barcode').pk}/").content.decode()
    assert 'id="not-writable"' in clarus_page and "Not writable" in clarus_page
    url = f"/exceptions/{rec.pk}/take-master-value/"
    assert _client("cx").post(url).status_code == 403
    assert _client("finance").post(url).status_code == 403
    assert _client("admin", csrf=True).post(url).status_code == 403  # no CSRF token
    assert ops.get(url).status_code == 405
    rec.refresh_from_db()
    assert rec.status == "open"
    r = ops.post(url)
    assert r.status_code == 302 and r["Location"] == f"/exceptions/{rec.pk}/"
    rec.refresh_from_db()
    assert rec.status == "resolved" and rec.status_changed_by.username == "ops-user"


def test_the_queue_row_button_writes_and_returns_to_the_queue(world, django_assert_max_num_queries):
    rec = _rec("master_data_drift:commercetools:B:weight")
    ops = _client("ops")
    page = ops.get("/exceptions/?q=kind%3Amaster_data_drift&status=open").content.decode()
    assert f'formaction="/exceptions/{rec.pk}/take-master-value/"' in page
    clarus = _rec("master_data_drift:clarus:A:barcode")
    assert f'formaction="/exceptions/{clarus.pk}/take-master-value/"' not in page  # not writable: no button
    assert "formaction" not in _client("cx").get("/exceptions/?q=kind%3Amaster_data_drift").content.decode()
    r = ops.post(f"/exceptions/{rec.pk}/take-master-value/", {"next": "/exceptions/?q=kind%3Amaster_data_drift"})
    assert r.status_code == 302 and r["Location"] == "/exceptions/?q=kind%3Amaster_data_drift"
    assert (
        ops.post(f"/exceptions/{rec.pk}/take-master-value/", {"next": "https://evil.example/"})["Location"]
        == f"/exceptions/{rec.pk}/"
    )
    rec.refresh_from_db()
    assert rec.status == "resolved"
