"""Bad input is a 400 (or 404) with a clear message and loses nothing else — never a 500: deeply nested JSON
on every inbound body, non-numeric ids, a second stock rule for a channel, connections without the options
their system needs."""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from connectors import errors
from exceptions_app.models import ExceptionRecord
from integration_hub.core.models import Connection
from connectors.signatures import HEADER, sign
from integration_hub.inventory.models import ChannelStockRule, StockLevel
from integration_hub.reconciliation.models import Report
from tests.support import factories as f

DEEP = 1_000


@pytest.fixture
def w(db):
    w = f.console_world()
    w.storefront.options = {"project_key": "demo"}
    w.storefront.set_webhook_secret("ct-hook-secret")
    w.storefront.save()
    w.master.set_webhook_secret("wair-hook-secret")
    w.master.save()
    return w


@pytest.fixture
def api(make_user):
    def as_role(role):
        c = APIClient(raise_request_exception=False)
        c.force_authenticate(make_user(role))
        return c

    return as_role


def nested(depth: int) -> bytes:
    return ('{"changes": ' + "[" * depth + "]" * depth + "}").encode()


# --- deeply nested JSON --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/hooks/stock/wair/", "/hooks/dispatch/wair/"])
def test_signed_webhook_nested_a_thousand_deep_is_a_400(w, client, path):
    client.raise_request_exception = False
    body = nested(DEEP)
    r = client.post(path, data=body, content_type="application/json", headers={HEADER: sign("wair-hook-secret", body)})
    assert r.status_code == 400, r.content
    assert r.json()["error"] == "malformed JSON: JSON nested deeper than 64 levels"
    assert ExceptionRecord.objects.filter(kind="bad_payload", connection=w.master).exists()


def test_order_webhook_nested_a_thousand_deep_is_a_400(w, client):
    client.raise_request_exception = False
    body = ('{"notificationType": "Message", "resource": ' + "[" * DEEP + "]" * DEEP + "}").encode()
    r = client.post(
        "/hooks/orders/ct/", data=body, content_type="application/json", HTTP_AUTHORIZATION="ct-hook-secret"
    )
    assert r.status_code == 400 and "nested deeper than 64" in r.json()["error"]


def test_nesting_within_the_bound_still_parses(w, client):
    from integration_hub.core import jsonsafe

    assert jsonsafe.loads(b'{"a": [[{"b": "]]]}}}[[[["}]]}') == {"a": [[{"b": "]]]}}}[[[["}]]}  # brackets in strings
    assert jsonsafe.loads("[" * 64 + "]" * 64) == json.loads("[" * 64 + "]" * 64)
    with pytest.raises(ValueError, match="nested deeper than 64"):
        jsonsafe.loads("[" * 65 + "]" * 65)
    started = time.monotonic()
    with pytest.raises(ValueError):  # an unterminated string of escaped quotes: linear time (quadratic took minutes)
        jsonsafe.loads("[" * 100 + '"' + '\\"' * 50_000)
    assert time.monotonic() - started < 5
    body = json.dumps(
        {"type": "stock.changed", "changes": [{"skuId": w.items[0].sku, "locationId": "WH1", "quantity": 7}]}
    ).encode()
    r = client.post(
        "/hooks/stock/wair/",
        data=body,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", body)},
    )
    assert r.status_code == 200, r.content


def test_api_body_nested_a_thousand_deep_is_a_400(w, api):
    c = api("admin")
    r = c.post("/api/channel-rules/", data=nested(DEEP), content_type="application/json")
    assert r.status_code == 400
    assert r.json() == {"detail": "JSON parse error - JSON nested deeper than 64 levels"}
    r = c.post("/api/channel-rules/", data=b"{nope", content_type="application/json")
    assert r.status_code == 400 and r.json()["detail"].startswith("JSON parse error")


# --- look-ups ------------------------------------------------------------------------------------------------
def test_report_csv_with_a_non_numeric_id_is_a_404(w, api):
    c = api("finance")
    assert c.get("/api/reports/null,null/csv/").status_code == 404
    assert c.get("/api/reports/abc/").status_code == 404
    assert c.get("/api/reports/1.5/rows/").status_code == 404
    assert c.get("/api/orders/99999999999999999999999/").status_code == 404
    running = Report.objects.create(
        kind="stock_drift", run_date=timezone.localdate(), status=Report.Status.RUNNING, started_at=timezone.now()
    )
    assert c.get(f"/api/reports/{running.pk}/csv/").status_code == 404
    assert c.get(f"/api/reports/{running.pk}/").status_code == 200


# --- unique rows ---------------------------------------------------------------------------------------------
def test_a_second_stock_rule_for_a_channel_is_a_400(w, api):
    other = f.channel(w.storefront, "app", name="App", external_id="app-sc", warehouse=w.master)
    rule = ChannelStockRule.objects.create(channel=other)
    rule.locations.add(w.location)
    c = api("admin")
    r = c.put(
        f"/api/channel-rules/{rule.pk}/", {"channel": "web", "mode": "segregated", "locations": ["wh1"]}, format="json"
    )
    assert r.status_code == 400 and r.json() == {"channel": ["This channel already has a stock rule: edit that one."]}
    r = c.post("/api/channel-rules/", {"channel": "web", "mode": "segregated", "locations": ["wh1"]}, format="json")
    assert r.status_code == 400 and "already has a stock rule" in r.json()["channel"][0]
    rule.refresh_from_db()
    assert rule.channel == other
    r = c.put(
        f"/api/channel-rules/{rule.pk}/",
        {"channel": "app", "mode": "segregated", "locations": ["wh1"], "safety_buffer": 2},
        format="json",
    )
    assert r.status_code == 200, r.content  # the rule's own channel is not a clash


def test_a_unique_row_saved_meanwhile_is_a_400_not_an_integrity_error(w, api, monkeypatch):
    """The serializer checks uniqueness first; a row written between that check and the save (another
    request) makes the database refuse it: still a 400."""
    from integration_hub.api import serializers as s

    other = f.channel(w.storefront, "app", name="App", external_id="app-sc", warehouse=w.master)
    rule = ChannelStockRule.objects.create(channel=other)
    rule.locations.add(w.location)
    from rest_framework.validators import UniqueValidator

    monkeypatch.setattr(UniqueValidator, "__call__", lambda self, value, field: None)  # the check, raced
    c = api("admin")
    r = c.put(
        f"/api/channel-rules/{rule.pk}/", {"channel": "web", "mode": "segregated", "locations": ["wh1"]}, format="json"
    )
    assert r.status_code == 400 and "saved meanwhile" in r.json()["detail"]
    rule.refresh_from_db()
    assert rule.channel == other and list(rule.locations.values_list("code", flat=True)) == ["wh1"]
    monkeypatch.setattr(s.ShippingMapSerializer, "validate", lambda self, attrs: attrs)  # the clash check, raced
    first = {"channel": "web", "storefront_method": "std", "warehouse_method": "DPD"}
    assert c.post("/api/shipping-methods/", first, format="json").status_code == 201
    r = c.post("/api/shipping-methods/", {**first, "warehouse_method": "UPS"}, format="json")
    assert r.status_code == 400 and "saved meanwhile" in r.json()["detail"]


# --- connection options --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "system, options, client_id, problem",
    [
        ("commercetools", {}, "c", "options.project_key is required for commercetools"),
        ("commercetools", {"project_key": "  "}, "c", "options.project_key is required (non-empty text)"),
        (
            "commercetools",
            {"project_key": "p", "write_concurrency": "four"},
            "c",
            "options.write_concurrency must be a whole number above 0",
        ),
        (
            "commercetools",
            {"project_key": "p", "orders_start": "yesterday"},
            "c",
            "options.orders_start must be an ISO-8601 date-time",
        ),
        ("commercetools", ["project_key"], "c", "options must be a JSON object"),
        ("sfcc", {}, "c", "options.site_id is required for sfcc"),
        ("sfcc", {"site_id": "RefArch", "batch_size": 0}, "c", "options.batch_size must be a whole number above 0"),
        ("inventory_planner", {}, "", "options.account is required for inventory_planner"),
        ("wair", {"page_size": "abc"}, "", "options.page_size must be a whole number above 0"),
        ("clarus", {"subdomain": "demo", "page_size": -1}, "", "options.page_size must be a whole number above 0"),
        ("clarus", {"warehouse_id": "DC1"}, "c", "options.subdomain is required for clarus"),
        ("clarus", {"subdomain": " "}, "c", "options.subdomain is required (non-empty text)"),
        ("archean", {"page_size": None}, "", "options.page_size must be a whole number above 0"),
    ],
)
def test_connection_options_are_checked_at_save_and_at_use(db, system, options, client_id, problem):
    from connectors.registry import get_connector

    conn = Connection(
        name="c1", system_type=system, base_url="https://api.example.com", client_id=client_id, options=options
    )
    with pytest.raises(ValidationError) as saved:
        conn.full_clean()
    assert problem in " ".join(saved.value.message_dict["options"])
    conn.save()  # written around the check (a migration, a shell): the connector refuses it clearly
    with pytest.raises(errors.ConfigurationError, match=problem.split(" must")[0].split(" is")[0]) as used:
        get_connector(conn, fresh=True)
    assert isinstance(used.value, errors.PermanentError) and used.value.kind == "configuration"


@pytest.mark.parametrize(
    "system, options, client_id",
    [
        ("commercetools", {"project_key": "demo", "orders_poll_lag_seconds": 2}, "hub-demo"),
        ("sfcc", {"site_id": "RefArch", "organization_id": "f_ecom_demo"}, "hub-demo"),
        ("wair", {}, ""),
        ("clarus", {"subdomain": "demo", "warehouse_id": "DC1"}, "hub-demo"),
        ("archean", {"tenant": "demo", "page_size": "500"}, ""),
        ("inventory_planner", {}, "demo-account"),
        ("inventory_planner", {"account": "demo-account"}, ""),
    ],
)
def test_usable_options_pass(db, system, options, client_id):
    conn = Connection(
        name="c1", system_type=system, base_url="https://api.example.com", client_id=client_id, options=options
    )
    conn.full_clean()


def test_admin_refuses_a_commercetools_connection_without_project_key(db, client, make_user):
    admin = make_user("admin")
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    form = {
        "name": "ct2",
        "system_type": "commercetools",
        "base_url": "https://api.europe-west1.gcp.commercetools.com",
        "auth_url": "",
        "client_id": "x",
        "secret_env": "",
        "webhook_secret_env": "",
        "options": "{}",
        "rate_limit_per_second": "10",
        "rate_limit_burst": "10",
        "timeout_seconds": "10",
        "max_retries": "5",
        "enabled": "on",
        "secret": "",
        "webhook_secret": "",
    }
    r = client.post("/admin/core/connection/add/", form)
    assert r.status_code == 200 and "options.project_key is required for commercetools" in r.content.decode()
    assert not Connection.objects.filter(name="ct2").exists()
    r = client.post("/admin/core/connection/add/", {**form, "options": '{"project_key": "shop"}'})
    assert r.status_code == 302 and Connection.objects.filter(name="ct2").exists()


def test_webhook_for_a_connection_without_project_key_is_a_clear_503_and_a_record(w, client):
    client.raise_request_exception = False
    Connection.objects.filter(pk=w.storefront.pk).update(options={})
    r = client.post(
        "/hooks/orders/ct/", data=b"{}", content_type="application/json", HTTP_AUTHORIZATION="ct-hook-secret"
    )
    assert r.status_code == 503 and r.json() == {"error": "connection ct is misconfigured in the hub: retry later"}
    rec = ExceptionRecord.objects.get(connection=w.storefront, context__reason="configuration")
    assert (
        "options.project_key is required for commercetools" in rec.message and rec.context["action"] == "fix_connection"
    )
    Connection.objects.filter(pk=w.master.pk).update(options={"page_size": "many"})
    body = b'{"changes": []}'
    r = client.post(
        "/hooks/stock/wair/",
        data=body,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", body)},
    )
    assert r.status_code == 503
    r = client.post(
        "/hooks/dispatch/wair/",
        data=body,
        content_type="application/json",
        headers={HEADER: sign("wair-hook-secret", body)},
    )
    assert r.status_code == 503
    assert ExceptionRecord.objects.filter(connection=w.master, context__reason="configuration").count() == 2


def test_webhooks_to_a_clarus_connection_without_its_subdomain_are_a_503_not_a_500(db, client):
    """Found by probing the production path: Clarus's connector cannot be built without options.subdomain,
    and the options check did not know it, so any webhook to such a connection raised (500)."""
    client.raise_request_exception = False
    Connection.objects.create(name="clarus", system_type="clarus", base_url="https://api.example.com", options={})
    for path in ("/hooks/stock/clarus/", "/hooks/dispatch/clarus/"):
        r = client.post(path, data=b"{}", content_type="application/json")
        assert r.status_code == 503, (path, r.status_code)
    rec = ExceptionRecord.objects.filter(context__reason="configuration").first()
    assert rec is not None and "options.subdomain is required for clarus" in rec.message


def test_stock_push_to_a_connection_without_project_key_becomes_an_exception_record(w):
    from integration_hub.inventory.models import PendingPush
    from integration_hub.inventory.push import push_batch

    Connection.objects.filter(pk=w.storefront.pk).update(options={})
    f.mappings(w, w.items[:1])
    StockLevel.objects.create(item=w.items[0], location=w.location, state="available", quantity=5)
    f.pushes(w, w.items[:1])
    push_batch()
    rec = ExceptionRecord.objects.get(connection=w.storefront)
    assert "ConfigurationError" in rec.title and "options.project_key is required" in rec.message
    assert PendingPush.objects.filter(item=w.items[0]).exists()  # kept for after the fix, nothing lost


@pytest.mark.parametrize(
    "value, status",
    [
        ("2776-03-11T09:55:43+21:54", 200),  # a legal ISO offset PostgreSQL cannot store (±15:59): converted to UTC
        ("1822-06-10T18:02:50.5+18:43", 200),
        ("9999-12-31T23:00:00-05:00", 400),  # past the representable range once in UTC
    ],
)
def test_date_time_filters_with_any_offset_never_500(api, value, status):
    """Found by the API fuzz run on PostgreSQL: 'time zone displacement out of range'."""
    r = api("ops").get("/api/orders/", {"created_at__gte": value})
    assert r.status_code == status, r.content[:300]


@pytest.mark.parametrize("path", ["/api/sku-mappings/a%0Ab/", "/api/orders/x%0A/", "/api/nothing%0Ahere/"])
def test_unknown_api_urls_answer_a_json_404_even_with_line_breaks(api, path):
    """Found by the API fuzz run: an id containing a line break fell through to Django's HTML 404."""
    r = api("ops").patch(path, {}, format="json")
    assert r.status_code == 404 and r["Content-Type"].startswith("application/json"), (r.status_code, r.content[:200])
