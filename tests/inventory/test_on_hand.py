"""The maintained on-hand table (inventory/on_hand.py) equals a fresh aggregate of the stock rows after any
interleaving of every kind of write: ORM saves and deletes, the stock apply's multi-row upsert, multi-row
updates, locations joining and leaving rules and pools, rule mode changes, rules, items and locations deleted.
Runs on whichever engine the suite runs on (SQLite embedded, PostgreSQL in CI: its statement-level triggers)."""

from __future__ import annotations

import io

import pytest
from django.db import transaction
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_hub.inventory import ats, on_hand
from integration_hub.inventory.models import ChannelOnHand, ChannelStockRule, StockLevel
from tests.support import factories as f

pytestmark = pytest.mark.django_db

LOCS, ITEMS, CHANNELS = 4, 3, 3
STATES = ["available", "reserved", "damaged"]

loc = st.integers(0, LOCS - 1)
itm = st.integers(0, ITEMS - 1)
chan = st.integers(0, CHANNELS - 1)
qty = st.integers(-5, 30)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("set"), itm, loc, st.sampled_from(STATES), qty),
        st.tuples(
            st.just("apply"), st.lists(st.tuples(itm, loc, st.sampled_from(STATES), qty), min_size=1, max_size=6)
        ),
        st.tuples(st.just("delete"), itm, loc),
        st.tuples(st.just("bump_all"), st.integers(-3, 3)),
        st.tuples(st.just("move"), itm, loc, loc),
        st.tuples(st.just("rule_add"), chan, loc),
        st.tuples(st.just("rule_remove"), chan, loc),
        st.tuples(st.just("pool_add"), loc),
        st.tuples(st.just("pool_remove"), loc),
        st.tuples(st.just("toggle_mode"), chan),
        st.tuples(st.just("drop_rule"), chan),
        st.tuples(st.just("drop_item"), itm),
        st.tuples(st.just("drop_location"), loc),
        st.tuples(st.just("new_item"), itm),
        st.tuples(st.just("new_rule"), chan, loc),
    ),
    min_size=1,
    max_size=25,
)


class Rollback(Exception):
    pass


def build():
    storefront = f.connection("commercetools", "ct-oh", base_url="http://127.0.0.1:1/ct", options={})
    master = f.connection("wair", "wair-oh", base_url="http://127.0.0.1:1/wair", options={})
    locs = [f.location(master, f"oh{i}") for i in range(LOCS)]
    pool = f.pool("oh-pool", locs[:2])
    items = [f.item(f"OH{i}", signals=False) for i in range(ITEMS)]
    for it in items:
        f.mapping(it, f"SF-OH-{it.pk}", signals=False)
    channels = [f.channel(storefront, f"oh{k}") for k in range(CHANNELS)]
    f.stock_rule(channels[0], locations=[locs[0], locs[2]])
    f.stock_rule(channels[1], pool=pool)
    f.stock_rule(channels[2], locations=[locs[1], locs[3]])
    # every item stocked everywhere to start with (a negative figure and reserved rows among them), so that
    # every step below moves something
    StockLevel.objects.bulk_create(
        [
            StockLevel(item=it, location=lc, quantity=(n * 7 + k * 3) % 13 - 2)
            for n, it in enumerate(items)
            for k, lc in enumerate(locs)
        ]
        + [StockLevel(item=it, location=locs[n % LOCS], state="reserved", quantity=n + 1) for n, it in enumerate(items)]
    )
    assert on_hand.verify() == []
    return locs, pool, items, channels


def run_step(step, locs, pool, items, channels):
    from integration_hub.inventory.services import _upsert_levels

    kind, *a = step
    if kind == "set":
        i, l, state, q = a
        if items[i] and locs[l]:
            StockLevel.objects.update_or_create(item=items[i], location=locs[l], state=state, defaults={"quantity": q})
    elif kind == "apply":  # the stock apply's own multi-row INSERT … ON CONFLICT DO UPDATE
        rows = {(items[i].pk, locs[l].pk, s): q for i, l, s, q in a[0] if items[i] and locs[l]}
        _upsert_levels([(k, q, None) for k, q in rows.items()])
    elif kind == "delete":
        i, l = a
        StockLevel.objects.filter(item=items[i], location=locs[l]).delete()
    elif kind == "bump_all":
        StockLevel.objects.update(quantity=F("quantity") + a[0])
    elif kind == "move":
        i, src, dst = a
        row = StockLevel.objects.filter(item=items[i], location=locs[src]).first()
        if row and locs[dst] and not StockLevel.objects.filter(item=row.item, location=locs[dst], state=row.state):
            StockLevel.objects.filter(pk=row.pk).update(location=locs[dst])
    elif kind in ("rule_add", "rule_remove"):
        c, l = a
        rule = ChannelStockRule.objects.filter(channel=channels[c]).first()
        if rule and locs[l]:
            (rule.locations.add if kind == "rule_add" else rule.locations.remove)(locs[l])
    elif kind in ("pool_add", "pool_remove") and locs[a[0]]:
        (pool.locations.add if kind == "pool_add" else pool.locations.remove)(locs[a[0]])
    elif kind == "toggle_mode":
        rule = ChannelStockRule.objects.filter(channel=channels[a[0]]).first()
        if rule:
            rule.mode, rule.pool = ("segregated", None) if rule.mode == "shared" else ("shared", pool)
            rule.save()
    elif kind == "drop_rule":
        ChannelStockRule.objects.filter(channel=channels[a[0]]).delete()
    elif kind == "drop_item" and items[a[0]]:
        items[a[0]].delete()
        items[a[0]] = None
    elif kind == "drop_location" and locs[a[0]]:
        locs[a[0]].delete()
        locs[a[0]] = None
    elif kind == "new_item" and items[a[0]] is None:  # a new item gets its (zero) row on every ruled channel
        from integration_hub.catalog.models import Item

        it = f.item(f"OHN{Item.objects.count()}-{a[0]}", signals=False)
        f.mapping(it, f"SF-OH-{it.pk}", signals=False)
        items[a[0]] = it
        if locs[a[0] % LOCS]:
            StockLevel.objects.create(item=it, location=locs[a[0] % LOCS], quantity=3)
    elif kind == "new_rule" and locs[a[1]] and not ChannelStockRule.objects.filter(channel=channels[a[0]]).exists():
        f.stock_rule(channels[a[0]], locations=[locs[a[1]]])


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=steps)
def test_on_hand_equals_a_fresh_aggregate_after_any_interleaving(script):
    try:
        with transaction.atomic():
            locs, pool, items, channels = build()
            for step in script:
                run_step(step, locs, pool, items, channels)
                assert on_hand.verify() == [], f"after {step}"
            # and the ATS that reads it agrees with the per-pair spec, which reads the stock rows
            for ch in channels:
                for it in items:
                    if it is not None:
                        got = ats.for_pairs([(ch.pk, it.pk)]).get((ch.pk, it.pk))
                        assert (got.quantity if got else None) == ats.naive_for_pair(ch.pk, it.pk)
            raise Rollback
    except Rollback:
        pass


def test_verify_reports_a_damaged_row_and_rebuild_repairs_it(world):
    world.channel("web", locations=["dc1"])
    world.item("A")
    world.stock("A", "dc1", 9)
    row = ChannelOnHand.objects.get(channel=world.channels["web"], item=world.items["A"])
    assert row.quantity == 9
    ChannelOnHand.objects.filter(pk=row.pk).update(quantity=2)  # what no trigger would ever write
    assert on_hand.verify() == [(world.channels["web"].pk, world.items["A"].pk, 2, 9)]
    on_hand.rebuild([world.channels["web"].pk])
    assert on_hand.verify() == []
    assert ChannelOnHand.objects.get(channel=world.channels["web"], item=world.items["A"]).quantity == 9


def test_every_item_has_a_row_on_every_ruled_channel_and_verify_reports_one_missing(world):
    from integration_hub.catalog.models import Item

    world.item("A")
    world.stock("A", "dc1", 4)
    world.channel("web", locations=["dc1"])  # the rule after the item: its channel's rows for every item
    world.item("B")  # the item after the rule: its rows on every ruled channel, 0 without stock
    web, a, b = world.channels["web"], world.items["A"], world.items["B"]
    assert dict(ChannelOnHand.objects.filter(channel=web).values_list("item_id", "quantity")) == {
        it.pk: (4 if it.pk == a.pk else 0) for it in Item.objects.all()
    }
    assert ats.for_channel(web.pk)[b.pk].quantity == 0  # an unstocked mapped item is pushed as 0, not left out
    ChannelOnHand.objects.filter(channel=web, item=b).delete()  # what no trigger would ever do
    assert on_hand.verify() == [(web.pk, b.pk, None, 0)]
    on_hand.rebuild([web.pk])
    assert on_hand.verify() == []


def test_the_apply_rewriting_changed_and_unchanged_figures_keeps_the_table_exact(world):
    """The stock apply rewrites a whole batch, unchanged figures included (one multi-row upsert)."""
    from integration_hub.inventory.services import _upsert_levels

    world.channel("web", locations=["dc1"])
    for sku in ("A", "B"):
        world.item(sku)
        world.stock(sku, "dc1", 5)
    a, b, dc1 = world.items["A"].pk, world.items["B"].pk, world.locations["dc1"].pk
    _upsert_levels([((a, dc1, "available"), 5, None), ((b, dc1, "available"), 8, None)])
    got = dict(ChannelOnHand.objects.values_list("item_id", "quantity"))
    assert got == {a: 5, b: 8}
    assert on_hand.verify() == []


def test_a_negative_available_figure_counts_as_nothing(world):
    world.channel("web", locations=["dc1", "dc2"])
    world.item("A")
    world.stock("A", "dc1", -4)
    world.stock("A", "dc2", 6)
    world.stock("A", "dc2", 2, state="reserved")
    assert ChannelOnHand.objects.get(item=world.items["A"]).quantity == 4
    assert on_hand.verify() == []


@pytest.mark.parametrize("path", ["pool", "rule"])
def test_a_location_leaving_a_pool_or_a_rule_takes_its_stock_off_the_channel(world, path):
    world.pool("eu", ["dc1", "dc2"])
    world.channel("de", pool="eu")
    world.channel("web", locations=["dc1", "dc3"])
    world.item("A")
    world.stock("A", "dc1", 5)
    world.stock("A", "dc2", 7)
    world.stock("A", "dc3", 11)
    de, web, a = world.channels["de"], world.channels["web"], world.items["A"]
    assert dict(ChannelOnHand.objects.filter(item=a).values_list("channel_id", "quantity")) == {de.pk: 12, web.pk: 16}
    if path == "pool":
        de.stock_rule.pool.locations.remove(world.locations["dc1"])
        expected = {de.pk: 7, web.pk: 16}
    else:
        web.stock_rule.locations.remove(world.locations["dc1"])
        expected = {de.pk: 12, web.pk: 11}
    assert dict(ChannelOnHand.objects.filter(item=a).values_list("channel_id", "quantity")) == expected
    assert on_hand.verify() == []


def test_the_stock_command_checks_and_repairs_the_figures(world):
    from django.core.management import CommandError, call_command

    world.channel("web", locations=["dc1"])
    world.item("A")
    world.stock("A", "dc1", 9)
    out = io.StringIO()
    call_command("stock", "onhand", stdout=out)
    assert "agree" in out.getvalue()
    ChannelOnHand.objects.update(quantity=1)
    with pytest.raises(CommandError, match="1 on-hand figures disagree"):
        call_command("stock", "onhand", stdout=io.StringIO())
    out = io.StringIO()
    call_command("stock", "onhand", "--repair", stdout=out)
    assert "stored 1, stock rows say 9" in out.getvalue() and "rebuilt" in out.getvalue()
    assert on_hand.verify() == []
