"""Impact preview of a change that moves stock (channel stock rules, SKU mappings): the available-to-sell
quantities before and after, computed with the change applied inside a transaction that is rolled back
unless the person confirmed what the preview showed ("12 SKUs on uk-web drop to 0").

Set-based: two ATS computations (:mod:`integration_hub.inventory.ats`, one query each per channel set or
pair chunk) whatever the number of SKUs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from integration_hub.catalog.models import BundleComponent, Item
from integration_hub.core.models import Channel
from integration_hub.inventory import ats

SAMPLE = 20  # changed SKUs listed on the preview


@dataclass
class ChannelImpact:
    key: str
    to_zero: int = 0
    down: int = 0
    up: int = 0
    units_before: int = 0
    units_after: int = 0

    def lines(self) -> list[str]:
        out = []
        if self.to_zero:
            out.append(f"{self.to_zero} SKU{'s' if self.to_zero != 1 else ''} on {self.key} drop to 0")
        if self.down:
            out.append(f"{self.down} SKU{'s' if self.down != 1 else ''} on {self.key} go down")
        if self.up:
            out.append(f"{self.up} SKU{'s' if self.up != 1 else ''} on {self.key} go up")
        return out


@dataclass
class Impact:
    channels: list[ChannelImpact] = field(default_factory=list)
    sample: list[tuple[str, str, int, int]] = field(default_factory=list)  # channel key, SKU, before, after
    changed: int = 0

    @property
    def moves(self) -> bool:
        return self.changed > 0

    def lines(self) -> list[str]:
        return [line for c in self.channels for line in c.lines()]


def _levels(channel_ids: list[int] | None, item_ids: set[int] | None) -> dict[tuple[int, int], int]:
    if item_ids is None:
        return {(a.channel_id, a.item_id): a.quantity for a in ats.compute(channel_ids)}
    chans = channel_ids if channel_ids is not None else list(Channel.objects.values_list("pk", flat=True))
    return {k: a.quantity for k, a in ats.for_pairs([(c, i) for c in chans for i in item_ids]).items()}


def affected_items(item_ids: set[int]) -> set[int]:
    """The items and the bundles that contain them (a component's ATS bounds its bundles')."""
    bundles = set(BundleComponent.objects.filter(component_id__in=item_ids).values_list("bundle_id", flat=True))
    return set(item_ids) | bundles


def diff(before: dict, after: dict) -> Impact:
    impact = Impact()
    per: dict[int, ChannelImpact] = {}
    keys = dict(Channel.objects.values_list("pk", "key"))
    changed = []
    for pair in sorted(set(before) | set(after)):
        b, a = before.get(pair, 0), after.get(pair, 0)
        ch = per.setdefault(pair[0], ChannelImpact(keys.get(pair[0], str(pair[0]))))
        ch.units_before += b
        ch.units_after += a
        if a == b:
            continue
        impact.changed += 1
        if a == 0:
            ch.to_zero += 1
        elif a < b:
            ch.down += 1
        else:
            ch.up += 1
        if len(changed) < SAMPLE:
            changed.append((pair, b, a))
    skus = dict(Item.objects.filter(pk__in={p[1] for p, _, _ in changed}).values_list("pk", "sku"))
    impact.sample = [(keys.get(p[0], ""), skus.get(p[1], ""), b, a) for p, b, a in changed]
    impact.channels = [c for c in per.values() if c.to_zero or c.down or c.up]
    return impact


def apply_with_preview(apply: Callable, *, channel_ids: list[int] | None, item_ids: set[int] | None, confirmed: bool):
    """Run ``apply()`` (the save) and measure its effect on ATS. When it moves stock and ``confirmed`` is
    false, everything it wrote is rolled back. Returns ``(apply's result, Impact, saved)``."""
    items = affected_items(item_ids) if item_ids is not None else None
    before = _levels(channel_ids, items)
    with transaction.atomic():
        result = apply()
        impact = diff(before, _levels(channel_ids, items))
        if impact.moves and not confirmed:
            transaction.set_rollback(True)
            return result, impact, False
    return result, impact, True


def confirm_token(data) -> str:
    """A token for exactly this posted change: the confirmation saves only the change the preview showed."""
    parts = sorted((k, tuple(data.getlist(k))) for k in data if k not in ("csrfmiddlewaretoken", "confirm"))
    return hmac.new(settings.SECRET_KEY.encode(), repr(parts).encode(), hashlib.sha256).hexdigest()[:32]


def is_confirmed(data) -> bool:
    return hmac.compare_digest(data.get("confirm", ""), confirm_token(data))


# --- deletes (console and API): what moves when a mapping or a channel rule goes --------------------------------
def delete_scope(obj) -> dict:
    """The ATS a delete can move: a channel rule its channel; a mapping its item on its channel (every channel
    for an all-channel mapping)."""
    from integration_hub.catalog.models import SkuMapping

    if isinstance(obj, SkuMapping):
        return {"channel_ids": [obj.channel_id] if obj.channel_id else None, "item_ids": {obj.item_id}}
    return {"channel_ids": [obj.channel_id], "item_ids": None}


def preview_delete(obj, *, confirmed: bool, after: Callable | None = None):
    """Delete ``obj`` with its impact measured; unless ``confirmed`` the delete is rolled back (a preview).
    ``after(obj)`` runs once the delete is kept (re-queue pushes). Returns ``(Impact, deleted)``."""

    def apply():
        obj.delete()

    scope = delete_scope(obj)
    if confirmed:
        _, impact, saved = apply_with_preview(apply, **scope, confirmed=True)
    else:  # always a preview first, even when nothing moves: a delete has its own confirmation step
        _, impact, saved = _preview_only(apply, scope)
    if saved and after is not None:
        after(obj)
    return impact, saved


def _preview_only(apply, scope):
    items = affected_items(scope["item_ids"]) if scope["item_ids"] is not None else None
    before = _levels(scope["channel_ids"], items)
    with transaction.atomic():
        apply()
        impact = diff(before, _levels(scope["channel_ids"], items))
        transaction.set_rollback(True)
    return None, impact, False


def delete_token(label: str, pk, state: dict) -> str:
    """Confirms exactly this delete of this row as it was previewed (a row edited meanwhile needs a new preview)."""
    return hmac.new(
        settings.SECRET_KEY.encode(), repr(("delete", label, str(pk), sorted(state.items()))).encode(), hashlib.sha256
    ).hexdigest()[:32]


def token_matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given, token)


def as_dict(impact: Impact) -> dict:
    """The preview for the API (and tests)."""
    return {
        "changed": impact.changed,
        "lines": impact.lines(),
        "channels": [
            {
                "channel": c.key,
                "to_zero": c.to_zero,
                "down": c.down,
                "up": c.up,
                "units_before": c.units_before,
                "units_after": c.units_after,
            }
            for c in impact.channels
        ],
        "sample": [{"channel": ch, "sku": sku, "before": b, "after": a} for ch, sku, b, a in impact.sample],
    }
