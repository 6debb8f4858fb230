"""Catalogue audit: every SKU a storefront sells vs the hub's SKU mappings.

Per storefront connection: ``Storefront.list_skus()`` once, then set-based SQL (:func:`lookup`): per batch of
storefront SKUs one query for their mappings and one that joins them (and the cores the configured transforms
would have to turn into them) to the item master on the normalised SKU — the item master never comes into
Python, only the matches do; a fixed number of queries whatever the size of the catalogue.
For each channel, a storefront SKU with no active mapping (channel-specific or global) becomes:

* ``sku_mismatch`` (key ``sku_mismatch:<channel>:<storefront sku>``) when an unmapped master item
  matches. The admin-configured :class:`~integration_hub.catalog.models.IdentifierTransform` rows that
  apply to the channel are tried first (channel-specific, then the connection's, then global ones;
  active only): a master item matches when applying the transform to its SKU gives the storefront SKU
  (``match: "configured_transform"``, ``configured_transform: {id, name}``). Otherwise an unmapped
  master item with the same :func:`~integration_hub.catalog.transforms.normalise` key matches — i.e. a
  transform from :func:`~integration_hub.catalog.transforms.candidate_specs` (or at least the loose
  comparison) would. ``context`` carries ``suggested_item_sku`` / ``suggested_item_id`` and
  ``transform`` (the TransformSpec fields, or None when only the loose key matches) so the console can
  create the mapping (re-using the configured IdentifierTransform, or creating one) in one click
  (``action: "map_sku"``);
* ``unknown_sku`` (key ``unknown_sku:<channel>:<storefront sku>``) otherwise.

Problems are written with ``raise_many``; records this audit owns for SKUs that are now mapped (or,
for sku_mismatch, gone from the storefront) are cleared.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from django import db
from django.db.models import Q

from exceptions_app.models import ACTIVE_STATUSES, ExceptionRecord
from exceptions_app import kinds
from exceptions_app.services import Problem, raise_many
from exceptions_app.services import _set_status  # same status bookkeeping as clear()
from integration_hub.core.models import Channel

from .models import IdentifierTransform, Item, SkuMapping
from .transforms import TransformError, TransformSpec, apply, candidate_specs, describe, normalise_sql

log = logging.getLogger(__name__)

BATCH = 2000  # storefront SKUs per lookup (2 queries); with their transform cores, well within SQL parameter limits


@dataclass
class AuditResult:
    connection: str
    storefront_skus: int = 0
    channels: int = 0
    mapped: int = 0
    mismatches: int = 0
    unknown: int = 0
    cleared: int = 0
    per_channel: dict = field(default_factory=dict)


def find_transform(master_sku: str, storefront_sku: str, specs: list[TransformSpec]) -> TransformSpec | None:
    for spec in specs:
        try:
            if apply(master_sku, spec) == storefront_sku:
                return spec
        except TransformError:
            continue
    return None


def configured_transforms(connection, channels) -> dict[int, list[tuple[IdentifierTransform, TransformSpec]]]:
    """{channel id: [(transform, spec)]} of the active IdentifierTransforms that apply to each channel:
    the channel's own first, then those of its storefront connection, then global ones. One query."""
    chan_ids = [c.pk for c in channels]
    rows = list(
        IdentifierTransform.objects.filter(active=True)
        .filter(
            Q(channel__in=chan_ids)
            | Q(channel__isnull=True, connection=connection)
            | Q(channel__isnull=True, connection__isnull=True)
        )
        .order_by("name")
    )
    out = {}
    for ch_id in chan_ids:
        mine = [t for t in rows if t.channel_id == ch_id]
        conn = [t for t in rows if t.channel_id is None and t.connection_id is not None]
        anywhere = [t for t in rows if t.channel_id is None and t.connection_id is None]
        out[ch_id] = [(t, TransformSpec.from_model(t)) for t in mine + conn + anywhere]
    return out


def strip_affixes(sf_sku: str, spec: TransformSpec) -> str | None:
    """What a master SKU must loosely equal (same :func:`normalise` key) for ``spec`` to turn it into ``sf_sku``:
    the storefront SKU without the transform's prefix/suffix (compared case-insensitively, as the transform may
    change case); None when they do not fit. A transform only adds affixes, pads/strips zeros and changes case,
    all of which the key ignores, so applying it to those few candidates confirms the match."""
    folded = sf_sku.upper()
    if (spec.prefix and not folded.startswith(spec.prefix.upper())) or (
        spec.suffix and not folded.endswith(spec.suffix.upper())
    ):
        return None
    core = sf_sku[len(spec.prefix) : len(sf_sku) - len(spec.suffix)]
    return core if core.strip() else None


def lookup(skus: list[str], cores: set[str], chan_ids: list[int]) -> tuple[dict, dict]:
    """Set-based lookup of a batch of storefront SKUs: two queries, whatever the size of the item master.

    * ``mapped``: {storefront sku: {channel id, None for global}} of its active mappings on ``chan_ids``;
    * ``candidates``: {value: {item id: (master sku, {channel ids, None for global, of the item's active
      mappings})}} for each storefront SKU and transform core: the active master items with the same normalised
      SKU, in SKU order. The values are staged inline (a ``VALUES`` list) and joined to the item master in the
      database, which computes both sides' key with :func:`normalise_sql`; only matches come back."""
    mapped, candidates = defaultdict(set), defaultdict(dict)
    for sf_sku, ch_id in SkuMapping.objects.filter(
        Q(channel__isnull=True) | Q(channel__in=chan_ids), active=True, storefront_sku__in=skus
    ).values_list("storefront_sku", "channel_id"):
        mapped[sf_sku].add(ch_id)
    values = sorted(set(skus) | cores)
    if not values:
        return mapped, candidates
    qn = db.connection.ops.quote_name
    channel_list = ", ".join(["%s"] * len(chan_ids))
    sql = (
        f"WITH v (value) AS (VALUES {', '.join(['(%s)'] * len(values))}), "
        f"s AS MATERIALIZED (SELECT value, {normalise_sql('value')} AS sku_key FROM v) "  # a column SQLite can index
        f"SELECT s.value, i.id, i.sku, m.id, m.channel_id FROM s "
        f"JOIN {qn(Item._meta.db_table)} i ON {normalise_sql('i.sku')} = s.sku_key "
        f"LEFT JOIN {qn(SkuMapping._meta.db_table)} m ON m.item_id = i.id AND m.active = %s "
        f"AND (m.channel_id IS NULL OR m.channel_id IN ({channel_list})) "
        f"WHERE i.active = %s ORDER BY i.sku, i.id"
    )
    with db.connection.cursor() as cur:
        cur.execute(sql, [*values, True, *chan_ids, True])
        for value, item_id, item_sku, mapping_id, ch_id in cur.fetchall():
            _, on = candidates[value].setdefault(item_id, (item_sku, set()))
            if mapping_id is not None:
                on.add(ch_id)
    return mapped, candidates


def audit_skus(connection, storefront_skus, channels=None, *, partial: bool = False) -> AuditResult:
    """Audit ``storefront_skus`` (what ``list_skus`` returned) for every active channel of ``connection``
    (or only ``channels``). ``partial``: the SKUs are some of the storefront's (a commercetools Message named
    them), so a record for a SKU not among them is not "gone from the storefront". A fixed number of queries per
    :data:`BATCH` storefront SKUs; the item master and
    the mappings stay in the database."""
    skus = {s.strip() for s in storefront_skus if isinstance(s, str) and s.strip()}
    out = AuditResult(connection.name, storefront_skus=len(skus))
    qs = Channel.objects.filter(connection=connection, active=True)
    if channels is not None:
        qs = qs.filter(pk__in=[getattr(c, "pk", c) for c in channels])
    channels = list(qs)
    out.channels = len(channels)
    if not channels:
        return out
    chan_ids = [c.pk for c in channels]
    configured = configured_transforms(connection, channels)
    by_id = {t.pk: spec for pairs in configured.values() for t, spec in pairs}
    cores: dict[tuple[str, int], str] = {}  # (storefront sku, transform id) -> what the master SKU must loosely equal
    mapped, candidates = {}, {}
    ordered = sorted(skus)
    for start in range(0, len(ordered), BATCH):
        batch = ordered[start : start + BATCH]
        batch_cores = {
            (s, t_id): core
            for s in batch
            for t_id, spec in by_id.items()
            if (core := strip_affixes(s, spec)) is not None
        }
        cores.update(batch_cores)
        found_mapped, found_candidates = lookup(batch, set(batch_cores.values()), chan_ids)
        mapped.update(found_mapped)
        candidates.update(found_candidates)
    specs = candidate_specs()

    problems: list[Problem] = []
    resolved: set[tuple[str, str]] = set()  # (channel key, storefront sku) now mapped
    for ch in channels:
        here = {None, ch.pk}

        def unmapped(value):  # candidate (item id, master sku) pairs not mapped on this channel (nor globally)
            return [(item_id, sku) for item_id, (sku, on) in candidates.get(value, {}).items() if not on & here]

        present_mapped = {s for s in skus if mapped.get(s, set()) & here}
        out.mapped += len(present_mapped)
        resolved.update((ch.key, s) for s in present_mapped)
        stats = {"mapped": len(present_mapped), "mismatch": 0, "unknown": 0}
        for sf_sku in sorted(skus - present_mapped):
            found = next(
                (
                    (t, spec, cand)
                    for t, spec in configured[ch.pk]
                    if (sf_sku, t.pk) in cores
                    for cand in unmapped(cores[sf_sku, t.pk])
                    if find_transform(cand[1], sf_sku, [spec]) is not None
                ),
                None,
            )
            if found is not None:
                t, spec, best = found
                stats["mismatch"] += 1
                problems.append(
                    Problem(
                        kind="sku_mismatch",
                        key=kinds.key("sku_mismatch", ch.key, sf_sku),
                        severity="warning",
                        title=f"{sf_sku} on {ch.key} looks like master item {best[1]} (transform {t.name!r})",
                        message=f"The storefront SKU {sf_sku!r} has no mapping on {ch.key}; the configured transform "
                        f"{t.name!r} ({describe(spec)}) turns master item {best[1]!r} into it. Map it to stop the "
                        f"channel showing stale stock.",
                        connection_id=connection.pk,
                        channel_id=ch.pk,
                        sku=sf_sku,
                        context={
                            "storefront_sku": sf_sku,
                            "channel": ch.key,
                            "suggested_item_sku": best[1],
                            "suggested_item_id": best[0],
                            "transform": asdict(spec),
                            "suggested_transform": asdict(spec),
                            "transform_label": f"{t.name}: {describe(spec)}",
                            "match": "configured_transform",
                            "configured_transform": {"id": t.pk, "name": t.name},
                            "other_candidates": [],
                            "action": "map_sku",
                        },
                    )
                )
                continue
            near = unmapped(sf_sku)
            if near:
                best, spec = near[0], None
                for cand in near:
                    spec = find_transform(cand[1], sf_sku, specs)
                    if spec is not None:
                        best = cand
                        break
                stats["mismatch"] += 1
                problems.append(
                    Problem(
                        kind="sku_mismatch",
                        key=kinds.key("sku_mismatch", ch.key, sf_sku),
                        severity="warning",
                        title=f"{sf_sku} on {ch.key} looks like master item {best[1]} ({describe(spec)})",
                        message=f"The storefront SKU {sf_sku!r} has no mapping on {ch.key}; master item {best[1]!r} matches "
                        f"with {describe(spec)}. Map it to stop the channel showing stale stock.",
                        connection_id=connection.pk,
                        channel_id=ch.pk,
                        sku=sf_sku,
                        context={
                            "storefront_sku": sf_sku,
                            "channel": ch.key,
                            "suggested_item_sku": best[1],
                            "suggested_item_id": best[0],
                            "transform": asdict(spec) if spec else None,
                            "suggested_transform": asdict(spec) if spec else None,
                            "transform_label": describe(spec),
                            "match": "transform" if spec else "normalised",
                            "other_candidates": [c[1] for c in near if c != best][:5],
                            "action": "map_sku",
                        },
                    )
                )
            else:
                stats["unknown"] += 1
                problems.append(
                    Problem(
                        kind="unknown_sku",
                        key=kinds.key("unknown_sku", ch.key, sf_sku),
                        severity="warning",
                        title=f"{sf_sku} is sold on {ch.key} but maps to no master item",
                        message="No SKU mapping and no master item that a known transform would match; its stock is never pushed.",
                        connection_id=connection.pk,
                        channel_id=ch.pk,
                        sku=sf_sku,
                        context={"storefront_sku": sf_sku, "channel": ch.key, "action": "map_sku"},
                    )
                )
        out.mismatches += stats["mismatch"]
        out.unknown += stats["unknown"]
        out.per_channel[ch.key] = stats
    raise_many(problems)

    # clear what this audit raised before and no longer applies
    raised = {p.key for p in problems}
    prefix_q = Q()
    for ch in channels:
        prefix_q |= Q(dedupe_key__startswith=f"sku_mismatch:{ch.key}:") | Q(
            dedupe_key__startswith=f"unknown_sku:{ch.key}:"
        )
    stale_ids = []
    for rec_id, key, kind in ExceptionRecord.objects.filter(
        prefix_q, status__in=ACTIVE_STATUSES, kind__in=["sku_mismatch", "unknown_sku"]
    ).values_list("id", "dedupe_key", "kind"):
        if key in raised:
            continue
        _, ch_key, sf_sku = key.split(":", 2)
        if (ch_key, sf_sku) in resolved or (
            kind == "sku_mismatch"
            and ((not partial and sf_sku not in skus) or kinds.key("unknown_sku", ch_key, sf_sku) in raised)
        ):
            stale_ids.append(rec_id)
    for start in range(0, len(stale_ids), 1000):
        out.cleared += _set_status(
            ExceptionRecord.objects.filter(id__in=stale_ids[start : start + 1000]),
            "resolved",
            None,
            "catalogue audit: SKU now mapped",
        )
    return out


def audit_connection(connection) -> AuditResult:
    from connectors.registry import get_connector

    return audit_skus(connection, get_connector(connection).list_skus())


def audit_channel(channel) -> AuditResult:
    """Audit one channel (reads the storefront's SKU list once)."""
    from connectors.registry import get_connector

    return audit_skus(channel.connection, get_connector(channel.connection).list_skus(), channels=[channel])


def audit_all() -> list[AuditResult]:
    from integration_hub.core.models import STOREFRONT_SYSTEMS, Connection

    return [
        audit_connection(c) for c in Connection.objects.filter(enabled=True, system_type__in=list(STOREFRONT_SYSTEMS))
    ]
