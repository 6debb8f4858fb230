"""Deleting a mapping or a channel rule shows what moves first ("3 SKUs on web drop to 0") and deletes only
once that preview is confirmed — in the console (a confirmation page) and the API (``?confirm=true``, else
409 with the preview)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from integration_hub.catalog.models import SkuMapping
from integration_hub.core.models import AuditEntry
from integration_hub.inventory.models import ChannelStockRule, PendingPush
from tests.support import factories as f


@pytest.fixture
def w(db):
    w = f.console_world()
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    return w


def test_console_mapping_delete_previews_then_deletes(w, role_client):
    m = SkuMapping.objects.get(item=w.items[0])
    client = role_client("admin")
    r = client.post(f"/rules/sku-mappings/{m.pk}/delete/")
    assert r.status_code == 200
    body = r.content.decode()
    assert "1 SKU on web drop to 0" in body and "Confirm and delete" in body
    assert SkuMapping.objects.filter(pk=m.pk).exists()  # nothing deleted by the preview
    assert not AuditEntry.objects.filter(action="delete").exists()
    assert client.post(f"/rules/sku-mappings/{m.pk}/delete/", {"confirm": "forged"}).status_code == 200
    assert SkuMapping.objects.filter(pk=m.pk).exists()
    token = r.context["confirm"]
    r = client.post(f"/rules/sku-mappings/{m.pk}/delete/", {"confirm": token})
    assert r.status_code == 302
    assert not SkuMapping.objects.filter(pk=m.pk).exists()
    assert AuditEntry.objects.filter(action="delete", object_id=str(m.pk)).count() == 1
    assert PendingPush.objects.filter(item=w.items[0], channel=w.channel).exists()


def test_console_preview_token_is_for_the_row_as_previewed(w, role_client):
    m = SkuMapping.objects.get(item=w.items[0])
    client = role_client("admin")
    token = client.post(f"/rules/sku-mappings/{m.pk}/delete/").context["confirm"]
    SkuMapping.objects.filter(pk=m.pk).update(safety_buffer=2)  # edited since the preview
    r = client.post(f"/rules/sku-mappings/{m.pk}/delete/", {"confirm": token})
    assert r.status_code == 200 and "Confirm and delete" in r.content.decode()
    assert SkuMapping.objects.filter(pk=m.pk).exists()


def test_console_channel_rule_delete_preview(w, role_client):
    client = role_client("admin")
    r = client.post(f"/rules/channel-rules/{w.rule.pk}/delete/")
    assert "3 SKUs on web drop to 0" in r.content.decode()
    assert ChannelStockRule.objects.filter(pk=w.rule.pk).exists()
    client.post(f"/rules/channel-rules/{w.rule.pk}/delete/", {"confirm": r.context["confirm"]})
    assert not ChannelStockRule.objects.filter(pk=w.rule.pk).exists()


def test_console_delete_needs_role_and_csrf(w, role_client, make_user):
    m = SkuMapping.objects.get(item=w.items[0])
    assert role_client("ops").post(f"/rules/sku-mappings/{m.pk}/delete/").status_code == 403
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("admin", "admin2"))
    assert strict.post(f"/rules/sku-mappings/{m.pk}/delete/").status_code == 403
    assert SkuMapping.objects.filter(pk=m.pk).exists()


def test_api_delete_needs_confirm_and_returns_the_preview(w, make_user):
    api = APIClient()
    api.force_authenticate(make_user("admin"))
    m = SkuMapping.objects.get(item=w.items[1])
    r = api.delete(f"/api/sku-mappings/{m.pk}/")
    assert r.status_code == 409
    data = r.json()
    assert data["impact"]["changed"] == 1 and data["impact"]["lines"] == ["1 SKU on web drop to 0"]
    assert data["impact"]["sample"] == [{"channel": "web", "sku": w.items[1].sku, "before": 5, "after": 0}]
    assert "confirm=true" in data["detail"]
    assert SkuMapping.objects.filter(pk=m.pk).exists()
    assert api.delete(f"/api/sku-mappings/{m.pk}/?confirm=true").status_code == 204
    assert not SkuMapping.objects.filter(pk=m.pk).exists()
    r = api.delete(f"/api/channel-rules/{w.rule.pk}/")
    assert r.status_code == 409 and r.json()["impact"]["channels"][0]["to_zero"] == 2
    assert api.delete(f"/api/channel-rules/{w.rule.pk}/?confirm=1").status_code == 204
    assert not ChannelStockRule.objects.exists()
