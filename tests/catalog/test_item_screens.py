"""Items page and item import screen / API (issue 17): role-checked, CSRF on the POST, fixed query count per page."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from exceptions_app.services import raise_exception
from integration_hub.catalog.models import Item, SkuMapping
from integration_hub.core.models import Channel, Location
from integration_hub.inventory.models import StockLevel
from tests.support import factories

CSV = b"sku,name,barcode\nNEW-1,New one,5012345678900\nBAD 1,Bad,5012345678901\n"


def _upload(name="items.csv", data=CSV):
    return SimpleUploadedFile(name, data, content_type="text/csv")


@pytest.mark.parametrize("role,status", [("admin", 200), ("ops", 403), ("cx", 403), ("finance", 403)])
def test_import_screen_is_for_admins(role_client, role, status):
    c = role_client(role)
    assert c.get("/items/import/").status_code == status
    r = c.post("/items/import/", {"file": _upload(), "format": "html"})
    assert r.status_code == status
    assert Item.objects.filter(sku="NEW-1").exists() == (status == 200)


def test_import_screen_shows_rows_and_needs_csrf(make_user):
    admin = make_user("admin")
    c = Client(enforce_csrf_checks=True)
    c.force_login(admin)
    assert c.post("/items/import/", {"file": _upload(), "format": "html"}).status_code == 403
    assert not Item.objects.exists()
    page = c.get("/items/import/")
    token = page.cookies["csrftoken"].value
    r = c.post("/items/import/", {"file": _upload(), "format": "html", "csrfmiddlewaretoken": token})
    assert r.status_code == 200
    body = r.content.decode()
    assert "check digit 1, expected 0" in body and "contains a space" in body
    assert Item.objects.filter(sku="NEW-1").exists()
    r = c.post("/items/import/", {"file": _upload(), "format": "csv", "dry_run": "on", "csrfmiddlewaretoken": token})
    assert r["Content-Type"].startswith("text/csv") and b"3," in r.content


def test_api_import(role_client):
    c = role_client("admin")
    r = c.post("/api/items/import/", {"file": _upload(), "dry_run": "true"})
    assert r.status_code == 200 and r.json()["created"] == 1 and r.json()["rejected"] == 1 and not Item.objects.exists()
    assert r.json()["errors"][0]["line"] == 3
    r = c.post("/api/items/import/", {"file": _upload()})
    assert r.json()["created"] == 1 and Item.objects.filter(sku="NEW-1").exists()
    assert role_client("ops").post("/api/items/import/", {"file": _upload()}).status_code == 403


def test_items_page_fixed_queries_and_filters(role_client):
    conn = factories.connection("commercetools", "ct", base_url="https://api.example.com")
    wh = factories.connection("archean", "wh", base_url="https://wh.example.com")
    ch = Channel.objects.create(key="web", name="Web", connection=conn)
    loc = Location.objects.create(code="dc1", name="DC1", connection=wh, external_id="DC1")

    def make(n):
        for i in range(n):
            it = Item.objects.create(
                sku=f"S-{len(Item.objects.all()):04d}", name="x", attributes={"size": "M" if i % 2 else "L"}
            )
            SkuMapping.objects.create(item=it, channel=ch, storefront_sku=f"SF-{it.sku}")
            StockLevel.objects.create(item=it, location=loc, quantity=i)

    make(5)
    c = role_client("ops")
    c.get("/items/")
    with CaptureQueriesContext(connection) as few:
        assert c.get("/items/").status_code == 200
    make(20)
    with CaptureQueriesContext(connection) as many:
        r = c.get("/items/")
    assert len(many.captured_queries) == len(few.captured_queries)
    assert "SF-S-0000" in r.content.decode() and "dc1 available" in r.content.decode()
    raise_exception("master_data_drift", "master_data_drift:wh:S-0003:barcode", "S-0003 barcode differs", sku="S-0003")
    r = c.get("/items/?exception=master_data_drift")
    assert "S-0003" in r.content.decode() and "S-0004" not in r.content.decode()
    r = c.get("/items/?attribute=size&value=L")
    assert "S-0000" in r.content.decode() and "S-0001" not in r.content.decode()
    assert role_client("cx").get("/items/").status_code == 403
