"""ATS rules, computed set-based, checked against hand-worked numbers and the naive per-pair spec."""

from __future__ import annotations

import pytest

from integration_hub.inventory import ats


def q(channel, item):
    """ATS of one pair through the set-based query (None when the pair is not pushable)."""
    a = ats.for_pairs([(channel.pk, item.pk)]).get((channel.pk, item.pk))
    return None if a is None else a.quantity


def both(world, key, sku):
    ch, it = world.channels[key], world.items[sku]
    set_based, naive = q(ch, it), ats.naive_for_pair(ch.pk, it.pk)
    assert set_based == naive, f"{key}/{sku}: set-based {set_based} != naive {naive}"
    whole = ats.for_channel(ch.pk).get(it.pk)
    assert (whole.quantity if whole else None) == set_based  # channel mode agrees with pair mode
    return set_based


def test_segregated_counts_only_own_locations(world):
    world.channel("web", locations=["dc1", "dc2"])
    world.channel("outlet", locations=["shop1"])
    world.item("A")
    world.stock("A", "dc1", 5)
    world.stock("A", "dc2", 7)
    world.stock("A", "shop1", 100)
    assert both(world, "web", "A") == 12
    assert both(world, "outlet", "A") == 100


def test_shared_pool_uses_pool_locations(world):
    world.pool("eu", ["dc1", "dc2"])
    world.channel("de", pool="eu")
    world.channel("fr", pool="eu")
    world.channel("solo", locations=["dc3"])
    world.item("A")
    world.stock("A", "dc1", 3)
    world.stock("A", "dc2", 4)
    world.stock("A", "dc3", 50)
    assert both(world, "de", "A") == 7
    assert both(world, "fr", "A") == 7
    assert both(world, "solo", "A") == 50


def test_only_available_counts_and_reserved_state_subtracts(world):
    world.channel("web", locations=["dc1"])
    world.item("A")
    world.stock("A", "dc1", 20)
    for state in ("inspection", "damaged", "in_transit"):
        world.stock("A", "dc1", 1000, state=state)
    assert both(world, "web", "A") == 20
    world.stock("A", "dc1", 6, state="reserved")
    assert both(world, "web", "A") == 14
    world.stock("A", "dc2", 50, state="reserved")  # reserved elsewhere: not ours
    assert both(world, "web", "A") == 14


def test_safety_buffer_and_per_sku_override(world):
    world.channel("web", locations=["dc1"], buffer=3)
    world.item("A")
    world.item("B", buffer=0)  # override removes the buffer
    world.item("C", buffer=8)
    for sku in "ABC":
        world.stock(sku, "dc1", 10)
    assert both(world, "web", "A") == 7
    assert both(world, "web", "B") == 10
    assert both(world, "web", "C") == 2


def test_channel_specific_mapping_wins_over_global(world):
    from integration_hub.catalog.models import SkuMapping

    world.channel("web", locations=["dc1"], buffer=1)
    world.channel("b2b", locations=["dc1"], buffer=1)
    a = world.item("A", buffer=5)  # global mapping with buffer 5
    SkuMapping.objects.create(item=a, channel=world.channels["b2b"], storefront_sku="B2B-A", safety_buffer=None)
    world.stock("A", "dc1", 10)
    assert both(world, "web", "A") == 5
    assert both(world, "b2b", "A") == 9  # its own mapping: channel buffer
    assert ats.for_channel(world.channels["b2b"].pk)[a.pk].storefront_sku == "B2B-A"


def test_hub_reservations_on_overlapping_channels(world):
    world.pool("eu", ["dc1", "dc2"])
    world.channel("de", pool="eu")
    world.channel("fr", pool="eu")
    world.channel("dc1only", locations=["dc1"])
    world.channel("far", locations=["dc9"])
    world.item("A")
    world.stock("A", "dc1", 10)
    world.stock("A", "dc2", 10)
    world.stock("A", "dc9", 10)
    world.reserve("A", "fr", 4)
    world.reserve("A", "dc1only", 1)
    world.reserve("A", "de", 100, released=True)  # released: no longer held
    assert both(world, "de", "A") == 15  # fr and dc1only overlap
    assert both(world, "fr", "A") == 15
    assert both(world, "dc1only", "A") == 5  # overlaps the pool through dc1
    assert both(world, "far", "A") == 10


def test_floor_at_zero(world):
    world.channel("web", locations=["dc1"], buffer=5)
    world.item("A")
    world.stock("A", "dc1", 3)
    assert both(world, "web", "A") == 0
    world.item("B", buffer=0)
    world.stock("B", "dc1", 2)
    world.reserve("B", "web", 9)
    assert both(world, "web", "B") == 0


def test_bundles_min_over_components(world):
    world.channel("web", locations=["dc1"])
    world.item("shirt", mapped=False)
    world.item("sock")
    world.item("kit", bundle_of={"shirt": 1, "sock": 3})
    world.stock("shirt", "dc1", 10)
    world.stock("sock", "dc1", 17)
    assert both(world, "web", "kit") == 5  # socks: 17 // 3
    world.stock("sock", "dc1", 40)
    assert both(world, "web", "kit") == 10  # shirts limit now
    assert both(world, "web", "sock") == 40
    assert q(world.channels["web"], world.items["shirt"]) is None  # unmapped component is never pushed itself
    world.reserve("shirt", "web", 4)
    assert both(world, "web", "kit") == 6
    world.reserve("kit", "web", 2)  # a held kit holds its components
    assert both(world, "web", "kit") == 4  # shirt 10-4-2=4; socks 40-6=34 -> 11
    assert both(world, "web", "sock") == 34


def test_bundle_buffer_and_missing_component_stock(world):
    world.channel("web", locations=["dc1"], buffer=2)
    world.item("a", mapped=False)
    world.item("b", mapped=False)
    world.item("kit", bundle_of={"a": 2, "b": 1})
    world.stock("a", "dc1", 21)
    world.stock("b", "dc1", 30)
    assert both(world, "web", "kit") == 9  # component ATS a = 21-2 = 19 -> floor(19/2) = 9; b = 28
    world.item("kit2", bundle_of={"a": 1, "b": 1}, buffer=0)
    assert both(world, "web", "kit2") == 19  # the channel buffer is held once, at component level
    world.item("kit4", bundle_of={"a": 1, "b": 1}, buffer=5)
    assert both(world, "web", "kit4") == 14  # an explicit bundle buffer holds bundles back on top
    from integration_hub.catalog.models import SkuMapping

    SkuMapping.objects.create(
        item=world.items["a"], channel=world.channels["web"], storefront_sku="A-WEB", safety_buffer=15
    )
    assert both(world, "web", "kit2") == 6  # the component's own per-SKU buffer counts too: 21-15
    world.item("c", mapped=False)
    world.item("kit3", bundle_of={"a": 1, "c": 1})  # c has no stock rows at all
    assert both(world, "web", "kit3") == 0


def test_a_bundle_sells_its_kits_never_its_own_stock_rows(world):
    """A bundle's figure comes from its components only: stock rows filed under the bundle item itself do not count,
    and a bundle without components sells nothing (in both the pair and the whole-channel statement)."""
    from tests.support import factories as f

    world.channel("web", locations=["dc1"])
    world.item("a")
    world.item("kit", bundle_of={"a": 2})
    world.stock("a", "dc1", 9)
    world.stock("kit", "dc1", 50)
    assert both(world, "web", "kit") == 4
    empty = f.item("empty-kit", is_bundle=True)
    f.mapping(empty, "SF-EMPTY", signals=False)
    world.items["empty-kit"] = empty
    world.stock("empty-kit", "dc1", 30)
    assert both(world, "web", "empty-kit") == 0


def test_unmapped_items_and_ruleless_channels_are_not_pushed(world):
    from integration_hub.core.models import Channel

    world.channel("web", locations=["dc1"])
    world.item("mapped")
    world.item("unmapped", mapped=False)
    world.stock("mapped", "dc1", 1)
    world.stock("unmapped", "dc1", 1)
    bare = Channel.objects.create(key="bare", name="bare", connection=world.storefront, external_id="x")
    result = ats.for_channel(world.channels["web"].pk)
    assert set(result) == {world.items["mapped"].pk}
    assert ats.for_channel(bare.pk) == {}
    world.channels["web"].active = False
    world.channels["web"].save()
    assert ats.for_channel(world.channels["web"].pk) == {}


def test_whole_channel_is_one_query(world, django_assert_num_queries):
    world.pool("eu", ["dc1", "dc2"])
    world.channel("de", pool="eu", buffer=1)
    world.channel("fr", pool="eu")
    world.item("c1", mapped=False)
    for n in range(30):
        world.item(f"S{n}")
        world.stock(f"S{n}", "dc1", n)
        world.stock("c1", "dc1", 9) if n == 0 else None
    world.item("kit", bundle_of={"c1": 2, "S5": 1})
    with django_assert_num_queries(1):
        rows = ats.compute()
    assert len(rows) == 62
    pairs = [(r.channel_id, r.item_id) for r in rows]
    with django_assert_num_queries(1):
        assert len(ats.for_pairs(pairs)) == 62


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_topologies_match_naive_spec(world, seed):
    import random

    rnd = random.Random(seed)
    locs = [f"l{i}" for i in range(5)]
    world.pool("p", rnd.sample(locs, 3))
    world.channel("c0", pool="p", buffer=rnd.randint(0, 3))
    world.channel("c1", pool="p", buffer=rnd.randint(0, 3))
    world.channel("c2", locations=rnd.sample(locs, 2), buffer=rnd.randint(0, 3))
    for n in range(12):
        world.item(f"i{n}", mapped=rnd.random() < 0.8, buffer=rnd.choice([None, None, 0, 2]))
        for loc in locs:
            for state in ("available", "reserved", "damaged"):
                if rnd.random() < 0.4:
                    world.stock(f"i{n}", loc, rnd.randint(0, 20), state=state)
        if rnd.random() < 0.3:
            world.reserve(f"i{n}", f"c{rnd.randint(0, 2)}", rnd.randint(1, 5))
    world.item("k1", bundle_of={"i0": 2, "i1": 1})
    world.item("k2", bundle_of={"i2": 3})
    world.reserve("k1", "c0", 1)
    for key in ("c0", "c1", "c2"):
        for sku in list(world.items):
            ch, it = world.channels[key], world.items[sku]
            assert q(ch, it) == ats.naive_for_pair(ch.pk, it.pk), (key, sku)


@pytest.mark.parametrize("seed", [4, 5])
def test_channel_mode_picks_the_same_mapping_as_pair_mode(world, seed):
    """Whole-channel recompute (anti-joins) and pair mode (ROW_NUMBER) choose the same winning mapping when an item
    has several: a channel-specific one beats the global one, the lowest id wins among equals, inactive ones never
    count — storefront SKU and buffer both come from the winner; bundles read their components' own buffers."""
    import random

    from integration_hub.catalog.models import SkuMapping

    rnd = random.Random(seed)
    world.pool("p", ["l0", "l1"])
    world.channel("c0", pool="p", buffer=1)
    world.channel("c1", locations=["l1", "l2"], buffer=2)
    for n in range(10):
        world.item(f"i{n}", buffer=rnd.choice([None, 0, 3]))
        for loc in ("l0", "l1", "l2"):
            world.stock(f"i{n}", loc, rnd.randint(0, 12))
        it = world.items[f"i{n}"]
        for k in range(rnd.randint(0, 3)):  # competing mappings: channel-specific, some inactive, some global
            channel = world.channels[rnd.choice(["c0", "c1"])] if rnd.random() < 0.7 else None
            SkuMapping.objects.create(
                item=it,
                channel=channel,
                storefront_sku=f"X{n}-{k}",
                safety_buffer=rnd.choice([None, 0, 1, 5]),
                active=rnd.random() < 0.8,
            )
    world.item("k1", bundle_of={"i0": 2, "i1": 1})
    for key in ("c0", "c1"):
        ch = world.channels[key]
        whole = ats.for_channel(ch.pk)
        pairs = ats.for_pairs([(ch.pk, it.pk) for it in world.items.values()])
        assert {i: (a.storefront_sku, a.quantity) for i, a in whole.items()} == {
            i: (a.storefront_sku, a.quantity) for (_, i), a in pairs.items()
        }
        for sku, it in world.items.items():
            assert (whole[it.pk].quantity if it.pk in whole else None) == ats.naive_for_pair(ch.pk, it.pk), (key, sku)
