"""**Capture** (webhook or poll): one Order per (channel, storefront id) — the idempotency key
``<channel key>-<external id>`` is unique, so a webhook delivered twice and an overlapping poll give one row. Lines
are stored, SKUs mapped, bundles exploded to component lines and stock reserved (:mod:`.lines`) in the same
transaction. A polled batch also carries what happened storefront-side: fulfilments (:mod:`.fulfilments`), returns
(:mod:`.returns`) and cancellations (:mod:`.cancel`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field, fields

from django.db import IntegrityError, transaction

from connectors.base import StorefrontOrder
from exceptions_app.services import raise_many
from integration_hub.core.models import Channel, Connection

from . import claims, keys, mapping
from .bulkops import chunks
from .cancel import apply_storefront_cancellations
from .fulfilments import record_storefront_side
from .lines import map_lines
from .models import Order, OrderLine, OrderState as S
from .problems import unknown_channel
from .rejected import order_problems
from .returns import record_storefront_returns
from .state import log_created

log = logging.getLogger(__name__)


@dataclass
class CaptureResult:
    created: list = field(default_factory=list)  # Order rows
    existing: int = 0
    rejected: int = 0
    returns: int = 0  # return rows recorded or changed (planning.ReturnLine)

    def as_dict(self) -> dict:
        return {
            "created": len(self.created),
            "existing": self.existing,
            "rejected": self.rejected,
            "returns": self.returns,
        }


def _addr(a) -> dict:
    """An address's fields (plain strings: a shallow copy, not ``asdict``'s recursive one)."""
    return {f.name: getattr(a, f.name) for f in fields(a)} if a is not None else {}


def _new_order(channel: Channel, so: StorefrontOrder) -> Order:
    return Order(
        channel=channel,
        external_id=so.external_id,
        order_number=so.order_number or "",
        state=S.CAPTURED,
        storefront_version=so.version,
        placed_at=so.placed_at,
        currency=so.currency or "",
        total_cents=so.total_cents,
        customer_email=so.customer_email or "",
        shipping_address=_addr(so.shipping_address),
        billing_address=_addr(so.billing_address),
        shipping_method=so.shipping_method or "",
        gift_message=so.gift_message or "",
        delivery_notes=so.delivery_notes or "",
        custom_fields=dict(so.custom_fields or {}),
        promotion_codes=list(so.promotion_codes or []),
        raw=so.raw or {},
        warehouse_id=channel.warehouse_id,
        idempotency_key=keys.order_key(channel, so.external_id),
    )


# orders another capture inserted first are skipped by the insert itself (ON CONFLICT DO NOTHING); what still
# collides (e.g. a concurrent capture of the same lines) is retried, each attempt re-reading what the others took
CAPTURE_ATTEMPTS = 6


def capture_pairs(pairs: list[tuple[Channel, StorefrontOrder]], source: str) -> CaptureResult:
    """Insert the orders not yet known (by idempotency key) with their lines, map them and reserve stock.
    Runs in one transaction; retried when a concurrent capture inserted the same order first."""
    by_pair: dict[tuple[int, str], tuple[Channel, StorefrontOrder]] = {}
    for channel, so in pairs:
        if so.capturable:  # not placed / not released for export: never captured (the storefront decides)
            by_pair.setdefault((channel.pk, so.external_id), (channel, so))
    result = CaptureResult()
    if not by_pair:
        return result
    for attempt in range(CAPTURE_ATTEMPTS):
        try:
            with transaction.atomic():
                known = keys.known_pairs(by_pair)
                new = [_new_order(ch, so) for k, (ch, so) in by_pair.items() if k not in known]
                by_key = {o.idempotency_key: by_pair[(o.channel_id, o.external_id)] for o in new}
                result = CaptureResult(existing=len(known))
                if not new:
                    return result
                # ON CONFLICT DO NOTHING: an order a concurrent capture inserted meanwhile (a catch-up poll overlapping a
                # webhook burst) is left to it instead of failing the whole batch; the rows this insert wrote carry its
                # token, which finds them and is cleared again before commit (nobody else ever sees it)
                token = uuid.uuid4().hex
                for o in new:
                    o.claim_token = token
                Order.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
                ids = {}
                for chunk in chunks([o.idempotency_key for o in new]):
                    ids.update(
                        Order.objects.filter(idempotency_key__in=chunk, claim_token=token).values_list(
                            "idempotency_key", "pk"
                        )
                    )
                Order.objects.filter(claim_token=token).update(claim_token="")
                taken = len(new) - len(ids)
                new = [o for o in new if o.idempotency_key in ids]
                for o in new:
                    o.pk = o.id = ids[o.idempotency_key]
                    o.claim_token = ""
                result.existing += taken
                if not new:
                    return result
                # SKUs resolved before the insert (one lookup per channel), so lines are written once
                skus_by_channel: dict[int, tuple[Channel, set[str]]] = {}
                for o in new:
                    ch, so = by_key[o.idempotency_key]
                    skus_by_channel.setdefault(ch.pk, (ch, set()))[1].update(ln.sku for ln in so.lines if ln.sku)
                resolved = {cid: mapping.resolve_skus(ch, skus) for cid, (ch, skus) in skus_by_channel.items()}
                lines = []
                for o in new:
                    ch, so = by_key[o.idempotency_key]
                    for ln in so.lines:
                        r = resolved[ch.pk].get(ln.sku or "")
                        lines.append(
                            OrderLine(
                                order_id=o.pk,
                                line_id=str(ln.line_id)[:100],
                                storefront_sku=(ln.sku or "")[:100],
                                item=r.item if r else None,
                                quantity=max(int(ln.quantity or 0), 0),
                                unit_price_cents=ln.unit_price_cents,
                                custom_fields=dict(ln.custom_fields or {}),
                            )
                        )
                OrderLine.objects.bulk_create(lines, batch_size=500)
                log_created(new, f"captured from {source}")
                preloaded = None
                if all(ln.pk for ln in lines):
                    orders_by_pk = {o.pk: o for o in new}
                    for ln in lines:
                        ln.order = orders_by_pk[ln.order_id]
                    preloaded = lines
                map_lines([o.pk for o in new], preloaded)
                result.created = new
                claims.kick()
                return result
        except IntegrityError:
            if attempt == CAPTURE_ATTEMPTS - 1:
                raise
            log.info("concurrent capture of the same orders; retrying")
            time.sleep(0.05 * (attempt + 1))  # let the other capture commit: the next attempt reads what it took
    return result


def resolve_channel(connection: Connection, channel_ref: str, channels: list[Channel] | None = None) -> Channel | None:
    """The hub channel a storefront order belongs to: by supply channel / store key, else the connection's
    only active channel."""
    channels = channels if channels is not None else list(Channel.objects.filter(connection=connection, active=True))
    for ch in channels:
        if channel_ref and ch.external_id == channel_ref:
            return ch
    for ch in channels:
        if channel_ref and ch.key == channel_ref:
            return ch
    return channels[0] if len(channels) == 1 else None


def capture(channel: Channel, storefront_order: StorefrontOrder, source: str = "api") -> tuple[Order, bool]:
    """One storefront order → (Order, created). Deduplicated by (channel, external id)."""
    result = capture_pairs([(channel, storefront_order)], source)
    order = Order.objects.get(channel=channel, external_id=storefront_order.external_id)
    return order, bool(result.created)


def capture_many(connection: Connection, storefront_orders, source: str = "poll") -> CaptureResult:
    """Bulk capture for polls and webhook batches: a fixed number of queries per batch. Orders whose channel
    cannot be determined are not dropped silently: each raises a ``bad_payload`` exception, as does each order the
    connector could not read (``storefront_orders.rejected``, :mod:`.rejected`)."""
    channels = list(Channel.objects.filter(connection=connection, active=True))
    pairs, problems = [], []
    for so in storefront_orders:
        ch = resolve_channel(connection, so.channel_ref, channels)
        if ch is None:
            problems.append(unknown_channel(connection, so))
            continue
        pairs.append((ch, so))
    result = capture_pairs(pairs, source)
    result.rejected = len(problems)
    problems += order_problems(
        connection, getattr(storefront_orders, "rejected", [])
    )  # rows the connector could not read
    record_storefront_side(connection, pairs)
    result.returns = record_storefront_returns(connection, pairs)
    apply_storefront_cancellations(connection, pairs)
    if problems:
        raise_many(problems)
    return result
