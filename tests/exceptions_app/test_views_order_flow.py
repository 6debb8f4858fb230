"""The console's fixes against the real order flow (integration_hub.orders: its phase modules and actions)."""

from __future__ import annotations

import pytest

from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.orders import claims, validate
from integration_hub.orders.models import Order, OrderLine, OrderState, ShippingMethodMap
from tests.support import factories as f

ADDRESS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "street": "1 High St",
    "postal_code": "N1 1AA",
    "city": "London",
    "country": "GB",
}


@pytest.fixture
def held(db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    w = f.console_world()
    ShippingMethodMap.objects.create(channel=w.channel, storefront_method="std", warehouse_method="DPD-NEXT")
    order = Order.objects.create(
        channel=w.channel,
        external_id="o-1",
        order_number="WEB-1",
        idempotency_key="web-o-1",
        state=OrderState.CAPTURED,
        shipping_method="std",
        shipping_address=ADDRESS,
    )
    sf_sku = w.items[0].sku.lstrip("0")
    OrderLine.objects.create(order=order, line_id="L1", storefront_sku=sf_sku, quantity=1)
    validate.validate(order)
    order.refresh_from_db()
    return w, order, sf_sku


def test_mapping_an_unknown_sku_releases_the_held_order(held, role_client, monkeypatch):
    monkeypatch.setattr(claims, "kick", lambda *a, **k: None)  # no broker needed: we check the state
    w, order, sf_sku = held
    assert order.state == OrderState.HELD
    rec = ExceptionRecord.objects.get(kind=Kind.UNKNOWN_SKU, sku=sf_sku)
    client = role_client("ops")
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert w.items[0].sku in html  # suggested master SKU (leading zeros stripped on the storefront)
    r = client.post(f"/exceptions/{rec.pk}/map-sku/", {"mode": "suggested"}, follow=True)
    assert "1 held order(s) revalidated" in r.content.decode()
    order.refresh_from_db()
    rec.refresh_from_db()
    assert order.state == OrderState.VALIDATED and order.warehouse_shipping_method == "DPD-NEXT"
    assert rec.status == Status.RESOLVED


def test_cancel_from_the_console_uses_the_order_flow(held, role_client):
    w, order, sf_sku = held
    client = role_client("cx")
    r = client.post(f"/orders/{order.pk}/", {"action": "cancel", "reason": ""})
    assert r.status_code == 400
    client.post(f"/orders/{order.pk}/", {"action": "cancel", "reason": "customer changed their mind"})
    order.refresh_from_db()
    assert order.state == OrderState.CANCELLED
    t = order.transitions.order_by("-at", "-id").first()
    assert "customer changed their mind" in t.cause and t.actor.username == "user-cx"
