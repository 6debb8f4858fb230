"""Mappings that cannot work are refused with the reason; a channel mapping over an all-channel one warns;
a duplicate says so once, in words (not the database constraint's name)."""

from __future__ import annotations

import pytest

from integration_hub.catalog.models import IdentifierTransform, SkuMapping

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


def _post(client, data, pk=None):
    return client.post(f"/rules/sku-mappings/{pk}/" if pk else "/rules/sku-mappings/new/", {"active": "on", **data})


@pytest.mark.parametrize(
    "sku, why", [("AB 12", "a space"), ("AB\n12", "a line break"), ("<b>12</b>", "markup"), ('12"', "markup or quote")]
)
def test_skus_with_spaces_or_markup_are_refused(w, role_client, sku, why):
    r = _post(role_client("ops"), {"item_sku": w.items[0].sku, "storefront_sku": sku})
    assert r.status_code == 400 and why in r.content.decode()
    assert not SkuMapping.objects.exists()


def test_transform_that_does_not_produce_the_storefront_sku_is_refused(w, role_client):
    t = IdentifierTransform.objects.create(name="strip zeros", strip_leading_zeros=True)
    client = role_client("ops")
    r = _post(client, {"item_sku": w.items[0].sku, "storefront_sku": "WRONG", "transform": t.pk})
    html = r.content.decode()
    assert (
        r.status_code == 400
        and "turns 00001000 into &#x27;1000&#x27;, not the storefront SKU &#x27;WRONG&#x27;" in html
    )
    assert _post(client, {"item_sku": w.items[0].sku, "storefront_sku": "1000", "transform": t.pk}).status_code == 302


def test_duplicate_all_channel_mapping_says_so_once_without_the_constraint_name(w, role_client):
    client = role_client("ops")
    f.mappings(w, w.items[:1], channel=False)
    r = _post(client, {"item_sku": w.items[1].sku, "storefront_sku": w.items[0].sku.lstrip("0")})
    html = r.content.decode()
    assert r.status_code == 400 and html.count("is already mapped on every channel") == 1
    assert "uniq_mapping" not in html and "Constraint" not in html


def test_channel_mapping_over_an_all_channel_one_warns(w, role_client):
    client = role_client("ops")
    f.mappings(w, w.items[:1], channel=False)
    r = _post(client, {"item_sku": w.items[0].sku, "channel": w.channel.pk, "storefront_sku": "OTHER-1"})
    assert r.status_code == 302
    html = client.get(r["Location"]).content.decode()
    assert "On web this mapping overrides the all-channel mapping 00001000 → 1000." in html
