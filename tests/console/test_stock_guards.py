"""Guard rails on changes that move stock: one safety-buffer bound everywhere (console forms, the API, the CSV
import: 1,000,000) and an impact preview with a confirmation step before a change that moves ATS is saved."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from integration_hub.catalog.models import SkuMapping
from integration_hub.core.models import AuditEntry
from integration_hub.inventory.models import ChannelStockRule, PendingPush

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _confirm(html: str) -> str:
    return re.search(r'name="confirm" value="([0-9a-f]+)"', html).group(1)


def test_huge_safety_buffer_is_refused_on_the_rule_form(w, role_client):
    client = role_client("admin")
    r = client.post(
        f"/rules/channel-rules/{w.rule.pk}/",
        {"channel": w.channel.pk, "mode": "segregated", "locations": [w.location.pk], "safety_buffer": "99999999999"},
    )
    assert r.status_code == 400 and "at most 1,000,000" in r.content.decode()
    w.rule.refresh_from_db()
    assert w.rule.safety_buffer == 0


def test_huge_safety_buffer_is_refused_on_the_mapping_form_and_the_api(w, client, make_user):
    user = make_user("admin")
    client.force_login(user)
    r = client.post(
        "/rules/sku-mappings/new/",
        {
            "item_sku": w.items[0].sku,
            "channel": w.channel.pk,
            "storefront_sku": "A1",
            "active": "on",
            "safety_buffer": "1000001",
        },
    )
    assert r.status_code == 400 and "at most 1,000,000" in r.content.decode()
    api = APIClient()
    api.force_authenticate(user)
    r = api.patch(f"/api/channel-rules/{w.rule.pk}/", {"safety_buffer": 99999999999}, format="json")
    assert r.status_code == 400 and "safety_buffer" in r.json()
    m = f.mappings(w, w.items[:1])[0]
    r = api.patch(f"/api/sku-mappings/{m.pk}/", {"safety_buffer": 1_000_001}, format="json")
    assert r.status_code == 400
    assert ChannelStockRule.objects.get().safety_buffer == 0 and SkuMapping.objects.get().safety_buffer is None


def test_rule_change_that_moves_stock_previews_then_saves_on_confirmation(w, role_client):
    client = role_client("admin")
    f.stock(w, w.items, 10)
    f.mappings(w, w.items)
    audits = AuditEntry.objects.count()
    data = {"channel": w.channel.pk, "mode": "segregated", "locations": [w.location.pk], "safety_buffer": "10"}
    r = client.post(f"/rules/channel-rules/{w.rule.pk}/", data)
    html = r.content.decode()
    assert r.status_code == 200 and "3 SKUs on web drop to 0" in html and "Confirm and save" in html
    # nothing saved, audited or queued yet
    w.rule.refresh_from_db()
    assert w.rule.safety_buffer == 0 and AuditEntry.objects.count() == audits and not PendingPush.objects.exists()
    # a different value than the one previewed is previewed again, not saved
    r = client.post(f"/rules/channel-rules/{w.rule.pk}/", {**data, "safety_buffer": "4", "confirm": _confirm(html)})
    assert r.status_code == 200 and "3 SKUs on web go down" in r.content.decode()
    w.rule.refresh_from_db()
    assert w.rule.safety_buffer == 0
    r = client.post(f"/rules/channel-rules/{w.rule.pk}/", {**data, "confirm": _confirm(html)})
    assert r.status_code == 302
    w.rule.refresh_from_db()
    assert w.rule.safety_buffer == 10 and PendingPush.objects.count() == 3


def test_change_that_moves_no_stock_saves_at_once(w, role_client):
    client = role_client("admin")
    f.mappings(w, w.items)  # no stock anywhere: a buffer moves nothing
    r = client.post(
        f"/rules/channel-rules/{w.rule.pk}/",
        {"channel": w.channel.pk, "mode": "segregated", "locations": [w.location.pk], "safety_buffer": "5"},
    )
    assert r.status_code == 302
    w.rule.refresh_from_db()
    assert w.rule.safety_buffer == 5


def test_new_mapping_that_puts_stock_on_sale_is_previewed(w, role_client):
    client = role_client("ops")
    f.stock(w, w.items[:1], 7)
    data = {"item_sku": w.items[0].sku, "channel": w.channel.pk, "storefront_sku": "S-1", "active": "on"}
    r = client.post("/rules/sku-mappings/new/", data)
    html = r.content.decode()
    assert r.status_code == 200 and "1 SKU on web go up" in html and not SkuMapping.objects.exists()
    assert client.post("/rules/sku-mappings/new/", {**data, "confirm": _confirm(html)}).status_code == 302
    assert SkuMapping.objects.get().storefront_sku == "S-1"
