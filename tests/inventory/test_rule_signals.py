"""Whoever edits which locations feed a channel (admin, console, API, shell), the channel's SKUs are re-queued."""

from integration_hub.inventory.models import PendingPush


def pending(channel):
    return set(PendingPush.objects.filter(channel=channel).values_list("item__sku", flat=True))


def test_pool_location_added_requeues_channels_on_the_pool(world):
    world.pool("uk", ["dc1"])
    uk = world.channel("uk", pool="uk")
    eu = world.channel("eu", locations=["eu1"])
    world.item("A"), world.item("B")
    PendingPush.objects.all().delete()
    world.pool("uk", ["dc1", "dc2"])  # admin adds a location to the shared pool
    assert pending(uk) == {"A", "B"}
    assert pending(eu) == set()


def test_segregated_location_removed_requeues_that_channel(world):
    uk = world.channel("uk", locations=["dc1", "dc2"])
    eu = world.channel("eu", locations=["eu1"])
    world.item("A")
    PendingPush.objects.all().delete()
    uk.stock_rule.locations.remove(world.location("dc2"))
    assert pending(uk) == {"A"} and pending(eu) == set()


def test_reverse_edit_from_the_location_side(world):
    uk = world.channel("uk", locations=["dc1"])
    world.item("A")
    PendingPush.objects.all().delete()
    world.location("dc9").segregated_rules.add(uk.stock_rule)
    assert pending(uk) == {"A"}


def test_buffer_change_requeues(world):
    uk = world.channel("uk", locations=["dc1"])
    world.item("A")
    PendingPush.objects.all().delete()
    rule = uk.stock_rule
    rule.safety_buffer = 5
    rule.save()
    assert pending(uk) == {"A"}
