"""**Validate**: every field the warehouse needs; failures hold the order with one exception per cause, naming the
field (``unknown_sku:<channel>:<sku>``, ``bad_payload:<connection>:order:<order key>``) with ``context["fields"]``
as paths :func:`.actions.update_field_and_resend` accepts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction

from exceptions_app import kinds
from exceptions_app.services import Problem, clear, raise_many

from . import claims, keys, mapping
from .bulkops import chunks, save_fields, save_varying
from .lines import map_lines
from .models import Order, OrderLine, OrderState as S
from .problems import held_order, unknown_order_sku
from .state import transition_many


@dataclass
class ValidationOutcome:
    validated: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)


def validate_many(order_ids, actor=None, cause: str = "validated") -> ValidationOutcome:
    """Validate captured / held / failed orders: validated ones are ready to send; the rest are held with
    exceptions naming the fields. A fixed number of queries per batch."""
    order_ids = list(order_ids)
    out = ValidationOutcome()
    if not order_ids:
        return out
    wanted_states = [S.CAPTURED, S.HELD, S.FAILED]
    with transaction.atomic():
        map_lines(order_ids)
        orders = []
        for chunk in chunks(order_ids):
            orders += list(
                Order.objects.filter(pk__in=chunk, state__in=wanted_states)
                .select_related("channel__connection", "channel__warehouse", "warehouse")
                .defer("raw")
            )
        if not orders:
            return out
        lines_by_order: dict[int, list[OrderLine]] = defaultdict(list)
        for chunk in chunks([o.pk for o in orders]):
            for ln in OrderLine.objects.filter(order_id__in=chunk).select_related("item").order_by("pk"):
                lines_by_order[ln.order_id].append(ln)
        maps = mapping.shipping_maps({o.channel_id for o in orders})
        problems: list[Problem] = []
        ok, held, resolved_keys, ok_keys = [], [], set(), []
        unknown_by_key: dict[str, dict] = {}
        for o in orders:
            fields: dict[str, str] = {}
            unknown = []
            lines = lines_by_order.get(o.pk, [])
            top = [ln for ln in lines if ln.parent_id is None]
            with_components = {ln.parent_id for ln in lines if ln.parent_id}
            if not top:
                fields["lines"] = "the order has no lines"
            for ln in top:
                path = f"lines.{ln.line_id}"
                if not ln.storefront_sku:
                    fields[f"{path}.storefront_sku"] = "the line has no SKU"
                elif ln.item_id is None:
                    unknown.append(ln)
                elif ln.item.is_bundle and ln.pk not in with_components:
                    fields[f"{path}.storefront_sku"] = f"bundle {ln.item.sku} has no components defined"
                else:
                    resolved_keys.add(kinds.key("unknown_sku", o.channel.key, ln.storefront_sku))
                if ln.quantity <= 0:
                    fields[f"{path}.quantity"] = f"quantity {ln.quantity} must be positive"
            ship = mapping.map_shipping(maps, o.channel_id, o.shipping_method)
            if not o.shipping_method:
                fields["shipping_method"] = "the order has no shipping method"
            elif ship is None:
                fields["shipping_method"] = f"storefront shipping method {o.shipping_method!r} has no warehouse mapping"
            fields.update(mapping.address_problems("shipping_address", o.shipping_address))
            warehouse = o.warehouse or o.channel.warehouse
            if warehouse is None:
                fields["warehouse"] = f"channel {o.channel.key} has no warehouse"
            for ln in unknown:
                key = kinds.key("unknown_sku", o.channel.key, ln.storefront_sku)
                entry = unknown_by_key.setdefault(
                    key, {"channel": o.channel, "sku": ln.storefront_sku, "orders": [], "fields": {}}
                )
                entry["orders"].append(o.idempotency_key)
                entry["fields"][o.idempotency_key] = f"lines.{ln.line_id}.storefront_sku"
            if fields or unknown:
                reasons = [f"{k}: {v}" for k, v in fields.items()] + [
                    f"lines.{ln.line_id}.storefront_sku: unknown SKU {ln.storefront_sku!r}" for ln in unknown
                ]
                o.hold_reason = "; ".join(reasons)[:2000]
                held.append(o)
                if fields:
                    problems.append(held_order(o, fields))
            else:
                o.warehouse_shipping_method, o.warehouse_carrier = ship.warehouse_method, ship.carrier
                o.warehouse_id = warehouse.pk
                o.hold_reason = ""
                ok.append(o)
                ok_keys.append(keys.order_problem_key(o))
        for key, e in unknown_by_key.items():
            problems.append(unknown_order_sku(key, e))
        if ok:
            save_fields(Order, ok, ["warehouse_shipping_method", "warehouse_carrier", "warehouse", "hold_reason"])
            out.validated = transition_many(
                [o.pk for o in ok],
                S.VALIDATED,
                cause,
                actor=actor,
                from_states=wanted_states,
                next_attempt_at=None,
                claim_token="",
            )
        if held:
            save_varying(Order, held, ["hold_reason"])
            fresh = [o.pk for o in held if o.state != S.HELD]
            out.held = transition_many(
                fresh,
                S.HELD,
                f"held: {held[0].hold_reason[:200]}" if len(held) == 1 else "held: validation failed",
                actor=actor,
                from_states=[S.CAPTURED, S.FAILED],
                claim_token="",
            )
            out.held += [o.pk for o in held if o.state == S.HELD]
            Order.objects.filter(pk__in=[o.pk for o in held if o.state == S.HELD]).update(claim_token="")
        if problems:
            raise_many(problems)
        if ok_keys:
            clear(ok_keys, reason="order validated")
        still_unknown = set(unknown_by_key)
        if resolved_keys - still_unknown:
            clear(sorted(resolved_keys - still_unknown), reason="SKU now maps to an item")
        if out.validated:
            claims.kick()
    return out


def validate(order: Order, actor=None) -> Order:
    validate_many([order.pk], actor=actor)
    order.refresh_from_db()
    return order
