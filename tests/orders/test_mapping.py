"""SKU resolution: mappings (channel first), transforms (most specific first, confirmed by re-applying), ambiguity."""

from __future__ import annotations

from integration_hub.catalog.models import IdentifierTransform, Item, SkuMapping
from integration_hub.orders import mapping
from tests.support import factories


def test_mapping_then_transform_then_unknown(world):
    IdentifierTransform.objects.create(name="uk prefix", channel=world.channel, prefix="UK-", case="upper")
    Item.objects.create(sku="abc1")
    res = mapping.resolve_skus(world.channel, ["SKU-1", "UK-ABC1", "UK-ZZZ", "abc1", ""])
    assert res["SKU-1"].item.sku == "SKU-1" and res["SKU-1"].how == "mapping:global"
    assert res["UK-ABC1"].item.sku == "abc1" and res["UK-ABC1"].how == "transform:uk prefix"
    assert res["UK-ZZZ"].item is None and res["UK-ZZZ"].how == "unknown"
    assert res["abc1"].item is None  # no identity fallback: an unmapped SKU is never guessed
    assert "" not in res


def test_zero_padding_transform_and_ambiguity(world):
    # storefront pads master ids to 8 digits
    IdentifierTransform.objects.create(name="pad8", connection=world.ct, pad_to_length=8)
    res = mapping.resolve_skus(world.channel, ["00000123"])
    assert res["00000123"].item.sku == "000123"
    # two items that both pad to the same storefront SKU: ambiguous, resolves to nothing
    Item.objects.create(sku="0000123")
    res = mapping.resolve_skus(world.channel, ["00000123"])
    assert res["00000123"].item is None and res["00000123"].how == "ambiguous"


def test_transform_for_another_connection_is_ignored(world):

    other = factories.connection("sfcc", "sfcc", base_url="http://127.0.0.1:9/sfcc")
    IdentifierTransform.objects.create(name="other", connection=other, strip_leading_zeros=True)
    assert mapping.resolve_skus(world.channel, ["123"])["123"].item is None
    IdentifierTransform.objects.create(name="mine", connection=world.ct, strip_leading_zeros=True)
    assert mapping.resolve_skus(world.channel, ["123"])["123"].item.sku == "000123"


def test_inactive_mapping_is_ignored_and_channel_mapping_wins(world):
    SkuMapping.objects.filter(storefront_sku="SKU-2").update(active=False)
    assert mapping.resolve_skus(world.channel, ["SKU-2"])["SKU-2"].item is None
    SkuMapping.objects.create(item=world.items["SKU-3"], channel=world.channel, storefront_sku="SKU-2")
    r = mapping.resolve_skus(world.channel, ["SKU-2"])["SKU-2"]
    assert r.item.sku == "SKU-3" and r.how == "mapping:channel"


def test_queries_fixed_per_batch(world, django_assert_max_num_queries):
    IdentifierTransform.objects.create(name="pad8", connection=world.ct, pad_to_length=8)
    # one mapping query, one transform query, item lookups in chunks of 2,000 candidate ids (~20 per SKU)
    with django_assert_max_num_queries(6):
        res = mapping.resolve_skus(world.channel, [f"SKU-{i}" for i in range(300)] + [f"{i:08d}" for i in range(200)])
    assert res["00000123"].item.sku == "000123" and res["SKU-1"].item.sku == "SKU-1"
