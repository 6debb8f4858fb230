"""CX in the exception queue: the order number on every order exception (search by it too), plain-language
problem text with the technical detail one click away, and "escalate to ops" with a note."""

from __future__ import annotations

import pytest

from exceptions_app import kinds
from exceptions_app import services as exc
from exceptions_app.models import ExceptionRecord
from integration_hub.orders.models import Order
from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _stuck(w):
    o = f.orders(w, 1, start=100233)[0]
    Order.objects.filter(pk=o.pk).update(order_number="UK-100233", customer_email="jane.doe@example.com")
    exc.raise_exception(
        "stuck_order",
        kinds.key("stuck_order", o.idempotency_key),
        f"Order {o} not acknowledged",
        message="HTTP 504 from POST /orders: <html>gateway timeout</html>",
        order_ref=o.idempotency_key,
        context={"order_id": o.pk, "action": "retry_order"},
        channel=w.channel,
    )
    return o


def test_queue_shows_and_finds_the_order_number(w, role_client):
    _stuck(w)
    client = role_client("cx")
    for q in ("UK-100233", "#UK-100233", "100233", "jane.doe"):
        html = client.get("/exceptions/", {"q": q}).content.decode()
        assert "<strong>UK-100233</strong>" in html, q


def test_queue_query_count_is_fixed(w, role_client):
    client = role_client("ops")
    _stuck(w)
    small = f.count_queries(client, "/exceptions/")
    for o in f.orders(w, 20, start=7000):
        exc.raise_exception(
            "stuck_order", kinds.key("stuck_order", o.idempotency_key), "x", order_ref=o.idempotency_key
        )
    assert f.count_queries(client, "/exceptions/") == small


def test_detail_speaks_plainly_and_keeps_the_technical_detail_one_click_away(w, role_client):
    _stuck(w)
    rec = ExceptionRecord.objects.get()
    html = role_client("cx").get(f"/exceptions/{rec.pk}/").content.decode()
    plain = html.split('id="plain-text">')[1].split("</p>")[0]
    assert "has not reached the warehouse yet" in plain and "HTTP" not in plain
    details = html.split('<details id="technical-detail"')[1].split("</details>")[0]
    assert "<summary>Technical detail</summary>" in details and "HTTP 504" in details and rec.dedupe_key in details


def test_cx_escalates_an_order_to_ops_with_a_note(w, role_client):
    o = _stuck(w)
    client = role_client("cx")
    page = client.get(f"/orders/{o.pk}/").content.decode()
    assert "Escalate to ops" in page
    assert (
        client.post(f"/orders/{o.pk}/escalate/", {"note": ""}, follow=True).content.decode().count("Say what ops") == 1
    )
    r = client.post(f"/orders/{o.pk}/escalate/", {"note": "customer called twice, wants it by Friday"}, follow=True)
    assert "escalated to ops" in r.content.decode()
    rec = ExceptionRecord.objects.get(kind="escalated")
    assert rec.order_ref == o.idempotency_key and rec.context["note"] == "customer called twice, wants it by Friday"
    assert "user-cx" in rec.title and rec.is_active
    ops = role_client("ops")
    assert "UK-100233" in ops.get("/exceptions/", {"kind": "escalated"}).content.decode()
    assert client.post(f"/orders/{o.pk}/escalate/", {"note": "again"}).status_code == 302
    rec.refresh_from_db()
    assert rec.count == 2 and rec.context["note"] == "again"
