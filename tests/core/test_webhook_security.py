"""Inbound webhook security (issue 11, items 1, 3, 4, 5): no input makes a verifier raise or a secret show,
no shared default secret, order notifications are hints re-read from the storefront, signed requests are
accepted once, and rows stamped in the future cannot freeze a SKU."""

from __future__ import annotations

import json
import logging
import operator
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connectors.base import StockChange
from exceptions_app.models import ExceptionRecord
from connectors import signatures
from connectors.signatures import HEADER, sign

SECRET = "wair-hook-secret-7c1f"
HEX = "0123456789abcdef"


@pytest.fixture
def master(db):
    """A WAIR master with its own webhook secret, location DC1 (dc1) and items A, B."""
    from connectors.registry import clear_cache
    from integration_hub.catalog.models import Item
    from integration_hub.core.models import Connection, Location

    clear_cache()
    conn = Connection(name="wair", system_type="wair", base_url="http://127.0.0.1:9/wair")
    conn.set_webhook_secret(SECRET)
    conn.save()
    Location.objects.create(code="dc1", name="DC1", connection=conn, external_id="DC1")
    for sku in ("A", "B"):
        Item.objects.create(sku=sku, name=sku)
    yield conn
    clear_cache()


def level(sku="A", loc="dc1"):
    from integration_hub.inventory.models import StockLevel

    row = StockLevel.objects.filter(item__sku=sku, location__code=loc, state="available").first()
    return row.quantity if row else None


def stock_body(*rows) -> bytes:
    return json.dumps(
        {
            "type": "stock.changed",
            "changes": [
                {"skuId": sku, "locationId": "DC1", "state": "available", "quantity": q, **extra}
                for sku, q, *more in rows
                for extra in [more[0] if more else {}]
            ],
        }
    ).encode()


def post_stock(client, body: bytes, header: str | None = None, name="wair"):
    extra = {"HTTP_X_HUB_SIGNATURE": header} if header is not None else {}
    return client.post(f"/hooks/stock/{name}/", data=body, content_type="application/json", **extra)


# --- 1. no header or body makes a verifier raise; no secret in an error report --------------------------------
def test_non_ascii_signature_is_a_401_not_a_500(master, client):
    body = stock_body(("A", 4242))
    r = post_stock(client, body, f"t={int(time.time())},v1=é")
    assert r.status_code == 401 and level() is None
    r = post_stock(client, body, f"t={int(time.time())},v1={'é' * 64}")
    assert r.status_code == 401 and level() is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "v1=" + "a" * 64,
        "t=" + str(int(time.time())),
        f"t={int(time.time())},v1={'A' * 64}",  # upper-case hex is not what sign() makes
        f"t={int(time.time())},v1={'a' * 63}",
        f"t={int(time.time())},v1={'a' * 65}",
        f"t={int(time.time())},v1={'g' * 64}",
        f"t=١٧٩٦١٨٦٥٤٩,v1={'a' * 64}",  # Arabic-Indic digits: int() accepts them, the format does not
        f"t={'9' * 100_000},v1={'a' * 64}",  # huge
        ",".join([f"t={int(time.time())}"] * 500 + ["v1=" + "a" * 64] * 500),  # repeated parts
        f"t={int(time.time())},t={int(time.time())},v1={'a' * 64}",
        f"v1={'a' * 64},t={int(time.time())}",
        f" t={int(time.time())} , v1={'a' * 64}",
        "t=1\x00,v1=" + "a" * 64,
        "\ud800",
        "t=-5,v1=" + "a" * 64,
    ],
)
def test_malformed_signature_headers_are_refused(master, client, header):
    body = stock_body(("A", 5))
    assert post_stock(client, body, header).status_code == 401
    assert level() is None


def test_a_valid_signature_with_extra_parts_or_duplicates_is_refused(master, client):
    body = stock_body(("A", 5))
    good = sign(SECRET, body)
    for header in (good + ",v0=abc", good + "," + good.split(",")[1], "t=0," + good, good.upper()):
        assert post_stock(client, body, header).status_code == 401
    assert post_stock(client, body, good).status_code == 200 and level() == 5


@hsettings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    header=st.one_of(
        st.text(max_size=300),
        st.builds(lambda t, v: f"t={t},v1={v}", st.one_of(st.integers(), st.text(max_size=20)), st.text(max_size=80)),
        st.builds(
            lambda t, v: f"t={t},v1={v}",
            st.integers(min_value=0, max_value=10**13),
            st.text(alphabet=HEX + "ABCDEFé", min_size=60, max_size=68),
        ),
        st.lists(
            st.sampled_from(["t=1", f"t={int(time.time())}", "v1=" + "a" * 64, "v1=é", "=", ",", "t", "v1"]),
            max_size=50,
        ).map(",".join),
    ),
    body=st.binary(max_size=300),
)
@example(header=f"t={int(time.time())},v1=é", body=b"{}")
@example(header="x" * 1_000_000, body=b"{}")
def test_fuzzed_signature_headers_never_500_and_never_verify(master, client, header, body):
    r = post_stock(client, body, header)
    assert r.status_code == 401, (header[:80], r.status_code)
    for verify in (
        lambda: signatures.verify_hmac(SECRET, body, {HEADER: header}),
        lambda: signatures.verify_static_header(SECRET, {"Authorization": header}),
    ):
        assert verify() is False


@hsettings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(max_size=200))
@example(value="\ud800")
@example(value="é" * 5000)
def test_fuzzed_static_authorization_header_never_raises(ct_conn, value):
    from connectors.registry import get_connector

    connector = get_connector(ct_conn)
    assert connector.verify_webhook(b"{}", {"Authorization": value}) is (
        value in ("ct-hook-secret", "Bearer ct-hook-secret")
    )


@pytest.fixture
def ct_conn(db):
    from connectors.registry import clear_cache
    from integration_hub.core.models import Connection

    clear_cache()
    conn = Connection(
        name="ct",
        system_type="commercetools",
        base_url="http://127.0.0.1:9/commercetools",
        options={"project_key": "p"},
    )
    conn.set_webhook_secret("ct-hook-secret")
    conn.save()
    yield conn
    clear_cache()


def test_static_header_accepts_the_secret_as_sent_over_http(ct_conn, client):
    """A non-ASCII secret still verifies: WSGI hands the header over as latin-1 text of the sent UTF-8 bytes."""
    ct_conn.set_webhook_secret("clé-secrète")
    ct_conn.save()
    body = json.dumps(
        {"notificationType": "Message", "type": "CustomerCreated", "resource": {"typeId": "customer", "id": "c"}}
    )
    sent = "clé-secrète".encode().decode("latin-1")
    r = client.post("/hooks/orders/ct/", data=body, content_type="application/json", HTTP_AUTHORIZATION=sent)
    assert r.status_code == 200, r.content
    assert (
        client.post(
            "/hooks/orders/ct/", data=body, content_type="application/json", HTTP_AUTHORIZATION="clé-secrète"
        ).status_code
        == 401
    )  # not the bytes a sender would send


def _error_report(connector, body: bytes, request) -> str:
    """Django's error report (as mailed to ADMINS / logged) of an exception raised inside a verifier."""
    from django.views.debug import ExceptionReporter

    try:
        connector.verify_webhook(body, request.headers)
    except TypeError:
        return ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    raise AssertionError("the verifier did not raise")


def test_no_secret_or_expected_digest_in_an_error_report(master, monkeypatch):
    """Should anything inside a verifier ever raise, Django's error report (500 e-mail, logged report) masks
    the secret and the expected digest in every frame (``sensitive_variables``)."""
    from django.test import RequestFactory

    from connectors.registry import get_connector

    body = stock_body(("A", 1))
    header = sign("not-the-secret", body)

    # a comparison that raises from C (as compare_digest did on a non-ASCII str): no frame of its own
    monkeypatch.setattr(signatures.hmac, "compare_digest", operator.truediv)
    request = RequestFactory().post(
        "/hooks/stock/wair/", data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE=header
    )
    html = _error_report(get_connector(master), body, request)
    expected = sign(SECRET, body, timestamp=int(header.split(",")[0][2:])).split("v1=")[1]
    assert "unsupported operand" in html and "verify_hmac" in html and "verify_webhook" in html  # about the verifier
    assert SECRET not in html and expected not in html


# --- 3. no shared default secret ------------------------------------------------------------------------------
def test_a_connection_without_a_secret_refuses_every_webhook(master, client, caplog):
    from integration_hub.core.models import Connection

    Connection.objects.filter(pk=master.pk).update(webhook_secret_encrypted="")
    master.refresh_from_db()
    assert master.get_webhook_secret() == "" and not master.has_webhook_secret
    body = stock_body(("A", 4242))
    with caplog.at_level(logging.WARNING, logger="connectors.signatures"):
        for secret in ("dev-webhook-secret", "", SECRET):
            assert post_stock(client, body, sign(secret, body)).status_code == 401
    assert level() is None
    assert "webhook for connection wair refused: it has no webhook secret" in caplog.text
    with pytest.raises(KeyError):
        from django.conf import settings

        settings.HUB["WEBHOOK_SECRET"]


def test_secret_from_an_unset_environment_variable_refuses(master, client, monkeypatch):
    from integration_hub.core.models import Connection

    monkeypatch.delenv("HUB_CONN_WAIR_HOOK", raising=False)
    Connection.objects.filter(pk=master.pk).update(webhook_secret_env="HUB_CONN_WAIR_HOOK")
    body = stock_body(("A", 3))
    assert post_stock(client, body, sign(SECRET, body)).status_code == 401
    monkeypatch.setenv("HUB_CONN_WAIR_HOOK", "from-env")
    assert post_stock(client, body, sign("from-env", body)).status_code == 200 and level() == 3


def test_a_rotated_secret_takes_effect_at_once(master, client):
    from integration_hub.core.models import Connection

    body = stock_body(("A", 1))
    assert post_stock(client, body, sign(SECRET, body)).status_code == 200  # the connector is now cached
    conn = Connection.objects.get(pk=master.pk)
    conn.set_webhook_secret("rotated-secret")
    conn.save()
    body = stock_body(("A", 2))
    assert post_stock(client, body, sign(SECRET, body)).status_code == 401
    assert post_stock(client, body, sign("rotated-secret", body)).status_code == 200 and level() == 2


def test_dashboard_warns_of_enabled_webhook_connections_without_a_secret(db, role_client):
    from integration_hub.core.models import Connection

    Connection.objects.create(name="bare-master", system_type="clarus", base_url="http://127.0.0.1:9/c")
    Connection.objects.create(name="bare-shop", system_type="sfcc", base_url="http://127.0.0.1:9/s")
    Connection.objects.create(name="off-master", system_type="archean", base_url="http://127.0.0.1:9/a", enabled=False)
    Connection.objects.create(name="planner", system_type="inventory_planner", base_url="http://127.0.0.1:9/ip")
    ok = Connection(name="has-secret", system_type="wair", base_url="http://127.0.0.1:9/w")
    ok.set_webhook_secret("s")
    ok.save()
    client = role_client("ops")
    html = client.get("/dashboard/").content.decode()
    start = html.index('data-testid="webhook-secret-missing"')
    warning = html[start : html.index("</ul>", start)]
    assert "2 enabled connections" in warning and "bare-master" in warning and "bare-shop" in warning
    assert "off-master" not in warning and "planner" not in warning and "has-secret" not in warning
    Connection.objects.filter(name__startswith="bare-").update(enabled=False)
    assert 'data-testid="webhook-secret-missing"' not in client.get("/dashboard/").content.decode()


def test_dashboard_warning_for_clarus_follows_its_identification_headers_not_a_secret(db, role_client):
    """Clarus signs nothing: its webhooks are accepted by the identification headers named in the options
    (connectors/clarus.py verify_webhook), so a webhook secret neither helps nor is needed there."""
    from integration_hub.core.models import Connection

    ident = {
        "subdomain": "demo",
        "webhook_domain": "https://demo.claruswms.co.uk",
        "webhook_api_domain": "https://clarus-api.com",
        "webhook_automation_ids": ["41"],
    }
    Connection.objects.create(name="clarus-ready", system_type="clarus", base_url="http://127.0.0.1:9/c", options=ident)
    useless = Connection(
        name="clarus-secret-only", system_type="clarus", base_url="http://127.0.0.1:9/c2", options={"subdomain": "demo"}
    )
    useless.set_webhook_secret("never-compared")
    useless.save()
    html = role_client("ops").get("/dashboard/").content.decode()
    start = html.index('data-testid="webhook-secret-missing"')
    warning = html[start : html.index("</ul>", start)]
    assert "clarus-secret-only" in warning and "clarus-ready" not in warning and "identification headers" in warning


# --- 4. order notifications are hints: only what the storefront's API says is captured -----------------------
@pytest.fixture
def eager_celery():
    from integration_hub.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def _drain():
    from integration_hub.orders import processing

    for _ in range(20):
        if not any(processing.process_due().values()):
            return


def test_a_forged_order_created_message_never_reaches_the_warehouse(
    db, sandbox, client, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    import copy
    import uuid

    from integration_hub.orders import claims
    from integration_hub.orders.models import Order
    from tests.support.factories import sandbox_order_world
    from tests.support.sandbox import control

    monkeypatch.setattr(claims, "kick", lambda delay=0: None)
    ct, _wh, _channel = sandbox_order_world(sandbox)
    [real] = control(
        sandbox,
        "commercetools",
        "create_orders",
        {
            "orders": [
                {
                    "channel": "uk-web",
                    "order_number": "REAL-1",
                    "lines": [{"sku": "SKU-1", "quantity": 1}],
                    "shipping_method": "standard",
                }
            ]
        },
    )["ids"]
    emu = sandbox.emulators["commercetools"]
    template = emu._message(emu.orders[real], "demo")
    forged_id = str(uuid.uuid4())
    forged = copy.deepcopy(template)
    forged["resource"]["id"] = forged["order"]["id"] = forged_id
    forged["order"]["orderNumber"] = "FORGED-1"
    # and a "real" order whose message body was tampered with: 50 units to another address
    tampered = copy.deepcopy(template)
    tampered["order"]["lineItems"][0]["quantity"] = 50
    tampered["order"]["shippingAddress"]["streetName"] = "Somewhere Else"

    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            f"/hooks/orders/{ct.name}/",
            data=json.dumps([forged, tampered]),
            content_type="application/json",
            HTTP_AUTHORIZATION="ct-hook-secret",
        )
    assert r.status_code == 200
    _drain()
    assert not Order.objects.filter(external_id=forged_id).exists()
    rec = ExceptionRecord.objects.get(dedupe_key=f"bad_payload:{ct.name}:order-notification:{forged_id}")
    assert forged_id in rec.title and rec.context["order_id"] == forged_id
    order = Order.objects.get(external_id=real)  # captured as commercetools has it, not as the message said
    assert [(ln.storefront_sku, ln.quantity) for ln in order.lines.all()] == [("SKU-1", 1)]
    assert "Somewhere Else" not in json.dumps(order.shipping_address)
    sent = control(sandbox, "wair", "state")["orders"]
    assert list(sent) == [order.idempotency_key]
    assert "FORGED-1" not in json.dumps(sent) and all(
        ln["quantity"] == 1 for ln in sent[order.idempotency_key]["request"]["lines"]
    )
    assert r.json() == {"to_fetch": 2, "to_refresh": 0}  # the webhook itself only queued the two reads


def test_order_hints_split_ids_and_re_reads_and_never_take_an_order(db):
    from connectors.base import OrderChanged
    from integration_hub.orders.notifications import split_hints
    from tests.orders.conftest import make_so

    so = make_so("ct-embedded")
    assert split_hints(["a", so, OrderChanged("b", "ReturnInfoAdded"), "a", "b", OrderChanged("b"), ""]) == (
        ["a", "ct-embedded"],
        ["b"],
    )


# --- 5. replay and time travel ----------------------------------------------------------------------------------
def test_a_replayed_signed_batch_is_refused_and_changes_nothing(master, client):
    first, second = stock_body(("A", 10)), stock_body(("A", 20))
    captured = sign(SECRET, first)
    assert post_stock(client, first, captured).status_code == 200 and level() == 10
    assert post_stock(client, second, sign(SECRET, second)).status_code == 200 and level() == 20
    r = post_stock(client, first, captured)  # the attacker replays the captured request inside the window
    assert r.status_code == 401 and level() == 20
    # the sender re-signing the same body later is a new request, not a replay
    assert (
        post_stock(client, first, sign(SECRET, first, timestamp=int(time.time()) + 1)).status_code == 200
        and level() == 10
    )


def test_replay_cache_is_per_connection_and_pruned_after_the_window(master):
    from integration_hub.core.models import Connection, WebhookSignature

    other = Connection.objects.create(name="clarus", system_type="clarus", base_url="http://127.0.0.1:9/c")
    now = time.time()
    sig = signatures.Signature(int(now), "a" * 64)
    assert WebhookSignature.claim(master, sig, now) and not WebhookSignature.claim(master, sig, now)
    assert WebhookSignature.claim(other, sig, now)  # same digest, another connection
    later = now + signatures.TOLERANCE + 5  # that signature is outside the window now: its rows go
    assert WebhookSignature.claim(master, signatures.Signature(int(later), "b" * 64), later)
    assert list(WebhookSignature.objects.values_list("digest", flat=True)) == ["b" * 64]


def test_a_request_that_fails_frees_its_signature_for_the_senders_retry(master, client, monkeypatch):
    from integration_hub.inventory import views

    body = stock_body(("A", 7))
    header = sign(SECRET, body)
    real = views.apply_stock_changes

    def down(*a, **kw):
        raise RuntimeError("database went away")

    monkeypatch.setattr(views, "apply_stock_changes", down)
    with pytest.raises(RuntimeError):
        post_stock(client, body, header)
    monkeypatch.setattr(views, "apply_stock_changes", real)
    assert post_stock(client, body, header).status_code == 200 and level() == 7
    assert post_stock(client, body, header).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_across_connections_to_the_database_are_accepted_once(live_server):
    """Each request thread of the live server has its own database connection, as separate processes and
    hosts would: the unique constraint lets exactly one of them in."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from connectors.registry import clear_cache
    from integration_hub.catalog.models import Item
    from integration_hub.core.models import Connection, Location

    clear_cache()
    conn = Connection(name="wair", system_type="wair", base_url="http://127.0.0.1:9/wair")
    conn.set_webhook_secret(SECRET)
    conn.save()
    Location.objects.create(code="dc1", name="DC1", connection=conn, external_id="DC1")
    Item.objects.create(sku="A", name="A")
    body = stock_body(("A", 11))
    header = sign(SECRET, body)

    def post(_):
        return requests.post(
            f"{live_server.url}/hooks/stock/wair/",
            data=body,
            timeout=30,
            headers={HEADER: header, "Content-Type": "application/json"},
        ).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(post, range(6)))
    assert codes == [200] + [401] * 5 and level() == 11
    clear_cache()


def test_a_row_dated_in_the_future_is_rejected_and_cannot_freeze_the_sku(master):
    from integration_hub.inventory.services import apply_stock_changes

    now = datetime.now(UTC)
    res = apply_stock_changes(
        master,
        [
            StockChange("A", "DC1", 5, changed_at=datetime(2102, 1, 1, tzinfo=UTC)),
            StockChange("B", "DC1", 3, changed_at=now),
        ],
    )
    assert (res.applied, res.rejected) == (1, 1) and level("A") is None and level("B") == 3
    rec = ExceptionRecord.objects.get(dedupe_key="bad_payload:wair:stock:A@DC1")
    assert "future" in rec.message and rec.sku == "A"
    # the real change that follows is applied (it would have been "stale" against 2102)
    assert apply_stock_changes(master, [StockChange("A", "DC1", 7, changed_at=now)]).applied == 1 and level("A") == 7
    # a little ahead (clock skew within the tolerance) is fine
    assert (
        apply_stock_changes(master, [StockChange("A", "DC1", 8, changed_at=now + timedelta(seconds=60))]).applied == 1
    )


def test_a_level_already_frozen_by_a_future_time_accepts_real_changes(master):
    from integration_hub.inventory.models import StockLevel
    from integration_hub.inventory.services import apply_stock_changes

    now = datetime.now(UTC)
    apply_stock_changes(master, [StockChange("A", "DC1", 4242, changed_at=now)])
    StockLevel.objects.filter(item__sku="A").update(source_updated_at=datetime(2102, 1, 1, tzinfo=UTC))
    res = apply_stock_changes(master, [StockChange("A", "DC1", 0, changed_at=now)])
    assert res.applied == 1 and res.stale == 0 and level("A") == 0
    assert StockLevel.objects.get(item__sku="A").source_updated_at < now + timedelta(seconds=1)


def test_future_tolerance_is_a_setting(master, settings):
    from integration_hub.inventory.services import apply_stock_changes

    settings.HUB = {**settings.HUB, "FUTURE_TOLERANCE_SECONDS": 3600}
    ahead = datetime.now(UTC) + timedelta(minutes=30)
    assert apply_stock_changes(master, [StockChange("A", "DC1", 1, changed_at=ahead)]).applied == 1
    settings.HUB = {**settings.HUB, "FUTURE_TOLERANCE_SECONDS": 60}
    assert apply_stock_changes(master, [StockChange("B", "DC1", 1, changed_at=ahead)]).rejected == 1


def test_a_future_dated_row_in_a_signed_webhook_is_rejected_with_the_rest_applied(master, client):
    body = stock_body(("A", 9, {"changedAt": "2102-01-01T00:00:00Z"}), ("B", 6))
    r = post_stock(client, body, sign(SECRET, body))
    assert r.status_code == 200 and r.json()["applied"] == 1 and r.json()["rejected"] == 1
    assert level("A") is None and level("B") == 6
