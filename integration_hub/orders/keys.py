"""The order flow's keys: the idempotency key ``<channel key>-<external id>`` (unique: a webhook delivered twice
and an overlapping poll give one row), the ``bad_payload`` exception keys, and the dedupe lookups by
(channel, storefront id) that capture and the orphan check run.
"""

from __future__ import annotations

from collections import defaultdict

from exceptions_app import kinds
from integration_hub.core.models import Channel

from .bulkops import chunks
from .models import Order


def order_key(channel: Channel, external_id: str) -> str:
    return f"{channel.key}-{external_id}"[:100]


def bad_key(conn_name: str, source: str, ref: str) -> str:
    return kinds.key("bad_payload", conn_name, source, ref)


def order_problem_key(order: Order) -> str:
    return bad_key(order.channel.connection.name, "order", order.idempotency_key)


def known_pairs(pairs) -> set[tuple[int, str]]:
    """Which (channel id, external id) pairs already have an Order (the dedupe key of capture)."""
    by_channel: dict[int, list[str]] = defaultdict(list)
    for channel_id, external_id in pairs:
        by_channel[channel_id].append(external_id)
    known = set()
    for channel_id, ids in by_channel.items():
        for chunk in chunks(ids):
            known.update(
                Order.objects.filter(channel_id=channel_id, external_id__in=chunk).values_list(
                    "channel_id", "external_id"
                )
            )
    return known


def orders_for(pairs, qs=None) -> dict[tuple[int, str], Order]:
    """(channel id, external id) → Order for the pairs that exist."""
    by_channel: dict[int, list[str]] = defaultdict(list)
    for channel_id, external_id in pairs:
        by_channel[channel_id].append(external_id)
    qs = qs if qs is not None else Order.objects.all()
    out = {}
    for channel_id, ids in by_channel.items():
        for chunk in chunks(ids):
            out.update(
                {(o.channel_id, o.external_id): o for o in qs.filter(channel_id=channel_id, external_id__in=chunk)}
            )
    return out
