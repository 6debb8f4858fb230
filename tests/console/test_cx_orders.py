"""CX on the order pages: customer, address, prices and totals; tracking as a link; partial search over
number, e-mail and name; fixed query counts."""

from __future__ import annotations

import pytest

from integration_hub.orders.models import Order, OrderLine, OrderState

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _jane(w):
    o = f.orders(w, 1, state=OrderState.STOREFRONT_NOTIFIED, start=100233)[0]
    Order.objects.filter(pk=o.pk).update(
        order_number="UK-100233",
        customer_email="jane.doe@example.com",
        currency="GBP",
        total_cents=2599,
        shipping_address={
            "first_name": "Jane",
            "last_name": "Doe",
            "street": "1 High St",
            "postal_code": "AB1 2CD",
            "city": "Leeds",
            "country": "GB",
        },
        tracking=[
            {"carrier": "dhl", "tracking_number": "TN1", "tracking_url": "https://track.example/TN1", "lines": []},
            {"carrier": "ups", "tracking_number": "TN2", "tracking_url": "javascript:alert(1)", "lines": []},
        ],
    )
    OrderLine.objects.filter(order=o).update(unit_price_cents=1250, quantity=2)
    return o


def test_order_page_shows_customer_prices_totals_and_tracking_links(w, role_client):
    o = _jane(w)
    html = role_client("cx").get(f"/orders/{o.pk}/").content.decode()
    assert "Jane Doe" in html and 'href="mailto:jane.doe@example.com"' in html
    assert "1 High St" in html and "AB1 2CD Leeds" in html
    assert "12.50 GBP" in html and "25.00 GBP" in html and "25.99 GBP" in html
    assert '<a href="https://track.example/TN1"' in html
    assert "javascript:" not in html and "TN2" in html


@pytest.mark.parametrize("q", ["jane.doe", "100233", "#UK-100233", "uk-100233", "Jane", "jane doe", "DOE"])
def test_partial_search_over_number_email_and_name(w, role_client, q):
    _jane(w)
    f.orders(w, 3, start=1)
    html = role_client("cx").get("/orders/", {"q": q}).content.decode()
    assert "UK-100233" in html and "WEB-1<" not in html and "1 row" in html


def test_search_runs_fixed_queries(w, role_client):
    client = role_client("cx")
    _jane(w)
    small = f.count_queries(client, "/orders/?q=jane")
    f.orders(w, 40, start=5000)
    assert f.count_queries(client, "/orders/?q=jane") == small
