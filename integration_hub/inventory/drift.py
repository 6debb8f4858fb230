"""Full drift check: what the hub says a channel should show (ATS) vs what the storefront shows.

Per channel: ATS for the whole channel in one query, the storefront read back with
``Storefront.get_stock`` in chunks, ``ChannelStock.observed_quantity`` written in bulk. A pair whose
storefront quantity differs from ATS (a missing storefront entry counts as 0) raises ``stock_drift``
with both numbers; pairs that agree clear it. A storefront entry that keeps the hub's ledger (commercetools,
see :mod:`connectors.commercetools`) agrees when its ledger is the hub's (ATS + the channel's captured
units) and it holds no unexplained increase: it may then show *less* than ATS (``availableQuantity``: its
own orders not captured yet, its cart reservations), never more. Pairs that still have a pending push are in flight and
are not judged. A drifted pair gets its ``confirmed_quantity`` reset to what the storefront really
shows and a SWEEP push is queued, so the repair is not skipped as "already confirmed".

Pairs the hub no longer pushes (mapping removed or deactivated, channel inactive or without a rule) but
whose storefront SKU was last confirmed or seen with a positive quantity are checked too, against 0: a
storefront still selling them is drift, and the queued push withdraws it (see :mod:`.push`).

:func:`sweep` is the light version that runs as part of normal operation (beat, every two minutes): per
channel it reads back at most ``limit`` pairs, least recently observed first, so pairs the storefront
changed by itself (its own order decrements, a hold released before the delayed push ran) are found and
repaired within one sweep when a channel has no more than ``limit`` pairs, and within
``pairs / limit`` sweeps otherwise. Pairs with a push in flight are not judged (they are being written).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exceptions_app import kinds
from exceptions_app.services import Problem, clear, raise_many
from integration_hub.core.models import Channel

from . import ats, outbox
from .models import ChannelStock, PendingPush
from .sql import upsert

log = logging.getLogger(__name__)

READ_CHUNK = 100


@dataclass
class DriftResult:
    channel: str
    checked: int = 0
    drifted: int = 0
    in_flight: int = 0
    agreed: int = 0


def check_channel(channel: Channel, item_ids=None, expected=None) -> DriftResult:
    """Check every pair of ``channel`` (or only ``item_ids``; ``expected``: its ATS if already computed)."""
    from connectors.registry import get_connector

    out = DriftResult(channel.key)
    if expected is None:
        expected = ats.for_channel(channel.pk)  # {} for an inactive channel or one without a rule
    if item_ids is not None:
        wanted = set(item_ids)
        expected = {i: a for i, a in expected.items() if i in wanted}
    by_sku = {a.storefront_sku: a for a in expected.values()}
    # no longer pushed, last known positive: the storefront must show 0 now
    for item_id, sku in (
        ChannelStock.objects.filter(channel=channel)
        .filter(Q(confirmed_quantity__gt=0) | Q(observed_quantity__gt=0))
        .exclude(storefront_sku="")
        .values_list("item_id", "storefront_sku")
        .iterator(chunk_size=5000)
    ):
        if item_ids is not None and item_id not in wanted:
            continue
        if item_id not in expected and sku not in by_sku:  # a SKU another item sells under is judged with it
            by_sku[sku] = ats.Ats(channel.pk, item_id, sku, 0)
    if not by_sku:
        return out
    connector = get_connector(channel.connection)
    skus = sorted(by_sku)
    observed = {}
    for start in range(0, len(skus), READ_CHUNK):
        for s in connector.get_stock(skus[start : start + READ_CHUNK], channel.external_id):
            observed[s.sku] = s
    in_flight = set(PendingPush.objects.filter(channel=channel).values_list("item_id", flat=True))
    captured = ats.captured_units([channel.pk])  # the ledger offsets (see push): only read for ledger-kept entries
    now = timezone.now()
    seen_rows, drift_rows, problems, agree_keys, repush = [], [], [], [], []
    for sku, a in by_sku.items():
        out.checked += 1
        obs = observed.get(sku)
        obs_qty = obs.quantity if obs is not None else None
        row = (
            channel.pk,
            a.item_id,
            sku,
            obs_qty,
            now,
            obs_qty,
            obs.version if obs is not None else None,
            ((obs.ref or "") if obs is not None else "")[:200],
        )
        key = kinds.key("stock_drift", channel.key, sku)
        if a.item_id in in_flight:
            out.in_flight += 1
            seen_rows.append(row)
            continue
        ledger = obs.ledger if obs is not None else None
        if ledger is not None:
            # a storefront that decrements on its own orders (ct): it may show less than ATS (its orders the hub
            # has not captured yet, cart reservations); it is in step when its ledger is the hub's and it holds
            # nothing the hub did not leave there
            expected_ledger = a.quantity + captured.get((channel.pk, sku), 0)
            in_step = ledger == expected_ledger and not obs.unexplained_increase
        else:
            in_step = (obs_qty or 0) == a.quantity
        if in_step:
            out.agreed += 1
            # a withdrawn pair the storefront shows at 0: record 0 as confirmed, so it leaves the check
            (seen_rows if a.item_id in expected else drift_rows).append(row)
            agree_keys.append(key)
            continue
        out.drifted += 1
        # what the storefront really shows is "confirmed" now — for a ledger entry nothing is: the repair push
        # must not be skipped because its figure happens to equal ATS
        drift_rows.append(row if ledger is None else row[:5] + (None,) + row[6:])
        repush.append((channel.pk, a.item_id))
        problems.append(
            Problem(
                kind="stock_drift",
                key=key,
                severity="warning",
                channel_id=channel.pk,
                connection_id=channel.connection_id,
                sku=sku,
                title=f"{sku} on {channel.key}: storefront shows {obs_qty if obs_qty is not None else 'nothing'}, hub ATS is {a.quantity}",
                message="The storefront quantity differs from the available-to-sell the hub computes from the master. "
                "A repair push has been queued.",
                context={
                    "storefront_sku": sku,
                    "channel": channel.key,
                    "master_ats": a.quantity,
                    "storefront_quantity": obs_qty,
                    "storefront_missing": obs is None,
                    "action": "repush_stock",
                    **(
                        {
                            "storefront_ledger": ledger,
                            "hub_ledger": expected_ledger,
                            "unexplained_increase": obs.unexplained_increase,
                        }
                        if ledger is not None
                        else {}
                    ),
                },
            )
        )
    with transaction.atomic():
        cols = [
            "channel_id",
            "item_id",
            "storefront_sku",
            "observed_quantity",
            "observed_at",
            "confirmed_quantity",
            "storefront_version",
            "storefront_ref",
        ]
        upsert(
            ChannelStock,
            cols,
            ["channel_id", "item_id"],
            ["storefront_sku", "observed_quantity", "observed_at"],
            seen_rows,
        )
        # drifted: the storefront really shows obs_qty, so that is what is "confirmed" now
        upsert(ChannelStock, cols, ["channel_id", "item_id"], cols[2:], drift_rows)
        if repush:
            outbox.enqueue_pairs(repush, priority=PendingPush.Priority.SWEEP, reason="drift repair")
    if problems:
        raise_many(problems)
    if agree_keys:
        clear(agree_keys, reason="storefront agrees with hub ATS")
    return out


def channels_to_check(channel_ids=None):
    """Active channels with a rule, plus any channel (inactive, rule deleted) where a storefront SKU was
    last confirmed or seen positive — those must be seen to reach 0. Storefront connection enabled."""
    withdrawn = ChannelStock.objects.filter(Q(confirmed_quantity__gt=0) | Q(observed_quantity__gt=0)).values(
        "channel_id"
    )
    qs = (
        Channel.objects.filter(Q(active=True, stock_rule__isnull=False) | Q(pk__in=withdrawn), connection__enabled=True)
        .select_related("connection")
        .order_by("pk")
    )
    if channel_ids:
        qs = qs.filter(pk__in=[int(c) for c in channel_ids])
    return qs


SWEEP_PAIRS_PER_CHANNEL = 500


def sweep_channel(channel: Channel, limit: int = SWEEP_PAIRS_PER_CHANNEL) -> DriftResult:
    """Read back (and repair) at most ``limit`` pairs of ``channel``: those never observed, then the least
    recently observed. Two queries to choose them, then :func:`check_channel` on that slice."""
    expected = ats.for_channel(channel.pk)
    seen = dict(ChannelStock.objects.filter(channel=channel).values_list("item_id", "observed_at"))
    withdrawn = set(
        ChannelStock.objects.filter(channel=channel)
        .filter(Q(confirmed_quantity__gt=0) | Q(observed_quantity__gt=0))
        .exclude(item_id__in=list(expected))
        .values_list("item_id", flat=True)
    )
    floor = timezone.now().replace(year=1970)
    order = sorted(set(expected) | withdrawn, key=lambda i: (seen.get(i) is not None, seen.get(i) or floor, i))
    return check_channel(channel, item_ids=order[: max(1, int(limit))], expected=expected)


def check_all(channel_ids=None) -> list[DriftResult]:
    return [check_channel(ch) for ch in channels_to_check(channel_ids)]
