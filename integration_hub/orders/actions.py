"""What a person does to an order — the one module every edge calls (the admin, the console and API through
:mod:`exceptions_app.triage`, bulk retries): retry, send now, edit a field and resend, cancel, resend the shipped
notification, revalidate held orders after a fix, record a storefront-side fulfilment, retry many orders at once.

Each action checks that it applies to the order as it stands (else :class:`OrderActionError`, saying why) and then
runs the phase's own code (:mod:`.validate`, :mod:`.send`, :mod:`.cancel`, :mod:`.notify`). States change only
through :mod:`.state`, so every move is checked against the machine and logged with its cause and actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration_hub.core.models import Channel
from integration_hub.inventory import reservations

from . import claims, mapping
from .bulkops import chunks
from .cancel import cancel_claimed, cancel_many
from .models import Order, OrderState as S, StorefrontFulfilment
from .notify import notify_claimed
from .send import send_claimed
from .state import transition
from .validate import validate, validate_many


class OrderActionError(ValueError):
    """A console/admin action that does not apply to the order as it stands (message says why)."""


ADDRESS_PARTS = set(mapping.ADDRESS_FIELDS)


def send(order: Order, actor=None) -> Order:
    """Send one order now (validating it first if needed). Returns it refreshed."""
    order.refresh_from_db()
    if order.state in (S.CAPTURED, S.HELD, S.FAILED):
        validate(order, actor=actor)
    if order.state not in (S.VALIDATED, S.SENT):
        raise OrderActionError(f"order {order} is {order.get_state_display()}; nothing to send")
    Order.objects.filter(pk=order.pk).update(next_attempt_at=None)
    ids = claims.claim(Q(pk=order.pk) & claims.SEND_DUE, 1, claims.LEASE_SECONDS)
    if ids:
        send_claimed(ids, actor=actor)
    order.refresh_from_db()
    return order


def retry_send(order: Order, actor=None) -> Order:
    """Console/admin "retry": revalidate a held/failed order and send it, or resend an unacknowledged one."""
    order.refresh_from_db()
    if order.state not in (S.CAPTURED, S.VALIDATED, S.SENT, S.HELD, S.FAILED):
        raise OrderActionError(f"order {order} is {order.get_state_display()}; it cannot be retried")
    if order.state == S.FAILED:  # a person retries: the attempt budget starts again
        Order.objects.filter(pk=order.pk, state=S.FAILED).update(send_attempts=0)
    return send(order, actor=actor)


def update_field_and_resend(order: Order, field: str, value, actor=None) -> Order:
    """Fix one field of an order the warehouse does not have yet, then revalidate and send it.

    ``field``: ``shipping_method``, ``gift_message``, ``delivery_notes``, ``lines.<line id>.storefront_sku``
    (the path the hold exception names), ``shipping_address.<part>`` / ``billing_address.<part>`` with part one
    of first_name, last_name, company, street, street2, postal_code, city, region, country, phone, email."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if locked.state not in claims.EDITABLE_BEFORE_SEND:
            raise OrderActionError(
                f"order {locked} is {locked.get_state_display()}: the warehouse may already have it, "
                "so it can no longer be edited in the hub"
            )
        value = "" if value is None else str(value).strip()
        if field in ("shipping_method", "gift_message", "delivery_notes"):
            before = getattr(locked, field)
            setattr(locked, field, value)
            locked.save(update_fields=[field, "updated_at"])
        elif field.startswith(("shipping_address.", "billing_address.")):
            which, _, part = field.partition(".")
            if part not in ADDRESS_PARTS:
                raise OrderActionError(f"unknown address part {part!r}")
            addr = dict(getattr(locked, which) or {})
            before = addr.get(part, "")
            addr[part] = value
            setattr(locked, which, addr)
            locked.save(update_fields=[which, "updated_at"])
        elif field.startswith("lines.") and field.endswith(".storefront_sku"):
            line_id = field[len("lines.") : -len(".storefront_sku")]
            line = locked.lines.filter(line_id=line_id, parent__isnull=True).first()
            if line is None:
                raise OrderActionError(f"order {locked} has no line {line_id!r}")
            if not value:
                raise OrderActionError("a SKU is required")
            before = line.storefront_sku
            line.components.all().delete()
            line.storefront_sku, line.item = value[:100], None
            line.save(update_fields=["storefront_sku", "item"])
            reservations.discard(locked.idempotency_key)
        else:
            raise OrderActionError(f"field {field!r} cannot be edited")
        cause = f"edited {field}: {before!r} → {value!r}"
        if locked.state in (S.VALIDATED, S.HELD):  # log the edit; validation then starts from held
            transition(locked, S.HELD, cause, actor=actor)
            cause = f"revalidated after {field} was edited"
        else:
            cause = f"{cause}; revalidated"
    validate_many([order.pk], actor=actor, cause=cause)
    order.refresh_from_db()
    if order.state == S.VALIDATED:
        return send(order, actor=actor)
    return order


def cancel(order: Order, reason: str, actor=None) -> Order:
    """Cancel an order: at once when the warehouse does not have it (reservations released, exceptions
    cleared); when it does (sent / acknowledged), the warehouse is asked to cancel it now and the order is
    cancelled on its confirmation — a refusal (already picked or dispatched) raises an exception record
    and leaves the order as it is."""
    if not reason or not reason.strip():
        raise OrderActionError("cancelling an order needs a reason")
    order.refresh_from_db()
    if claims.maybe_at_warehouse(order):
        if order.warehouse is None or not order.warehouse.enabled:
            raise OrderActionError(
                f"order {order} is {order.get_state_display()} and its warehouse ({order.warehouse}) is "
                "not reachable from the hub: cancel it in the warehouse"
            )
        # a person asking (again) asks the warehouse now, with their reason — unless a send of it is in flight:
        # then the cancel waits for that send's lease (cancel_due asks once it has landed or lapsed)
        now = timezone.now()
        Order.objects.filter(pk=order.pk).update(cancel_requested_at=now, cancel_reason=reason.strip()[:300])
        Order.objects.filter(claims.lease_free(now), pk=order.pk).update(next_attempt_at=None, claim_token="")
        ids = claims.claim(Q(pk=order.pk) & claims.CANCEL_DUE, 1, claims.LEASE_SECONDS)
        if ids:
            cancel_claimed(ids, actor=actor)
        order.refresh_from_db()
        return order
    if order.state not in claims.EDITABLE_BEFORE_SEND:
        raise OrderActionError(f"order {order} is {order.get_state_display()}; it can no longer be cancelled")
    cancel_many([order], reason.strip(), actor=actor)
    order.refresh_from_db()
    return order


def notify_storefront(order: Order, actor=None) -> Order:
    """Mark one dispatched order shipped in the storefront now. Refuses an order the warehouse has not
    confirmed as dispatched."""
    order.refresh_from_db()
    if order.state == S.STOREFRONT_NOTIFIED:
        return order
    if order.state != S.DISPATCHED:
        raise OrderActionError(
            f"order {order} is {order.get_state_display()}: the storefront is told only after the "
            "warehouse confirms the dispatch"
        )
    Order.objects.filter(pk=order.pk, state=S.DISPATCHED).update(next_attempt_at=None)
    ids = claims.claim(Q(pk=order.pk) & claims.NOTIFY_DUE, 1, claims.LEASE_SECONDS)
    if ids:
        notify_claimed(ids, actor=actor)
    order.refresh_from_db()
    return order


def revalidate_held(sku: str | None = None, channel: Channel | None = None, actor=None) -> int:
    """Re-run validation for held orders (e.g. after a SKU mapping or shipping map was fixed), optionally
    only those with a line of ``sku`` / on ``channel``. Returns how many are now validated (and queued)."""
    qs = Order.objects.filter(state=S.HELD)
    if channel is not None:
        qs = qs.filter(channel=channel)
    if sku:
        qs = qs.filter(lines__storefront_sku=sku)
    ids = list(qs.values_list("pk", flat=True).distinct())
    total = 0
    for chunk in chunks(ids, claims.BATCH_SIZE):
        total += len(
            validate_many(chunk, actor=actor, cause=f"revalidated{f' after {sku} was mapped' if sku else ''}").validated
        )
    return total


def record_storefront_fulfilment(
    order: Order, fulfilment_ref: str, lines, location: str = "", fulfilled_at: datetime | None = None
) -> tuple[StorefrontFulfilment, bool]:
    """Remember a fulfilment the storefront side made (ship-from-store, click & collect) so the master is
    told until it acknowledges. ``lines``: [(master sku, quantity)]. Idempotent per (order, ref)."""
    warehouse = order.warehouse or order.channel.warehouse
    if warehouse is None:
        raise OrderActionError(f"order {order} has no warehouse to report the fulfilment to")
    return StorefrontFulfilment.objects.get_or_create(
        order=order,
        fulfilment_ref=str(fulfilment_ref)[:100],
        defaults={
            "warehouse": warehouse,
            "lines": [[str(s), int(q)] for s, q in lines],
            "location": location or "",
            "fulfilled_at": fulfilled_at or timezone.now(),
        },
    )


# --- many orders at once (console "retry all matching", bulk exception retries) ----------------------------
@dataclass
class OrderRetry:
    """What a bulk retry did (:func:`retry_orders`)."""

    revalidated: int = 0
    held: int = 0  # revalidated but still invalid: their reasons are on each order
    due: int = 0  # orders the worker will send (or notify) now


def retry_orders(order_ids, actor=None, progress=None) -> OrderRetry:
    """Retry many orders: failed ones get a fresh attempt budget, captured / held / failed ones are revalidated
    (those still invalid stay held with their reasons), and validated / sent / dispatched ones are made due now —
    except orders a worker holds a live lease on (a send in flight is never doubled). Then one nudge."""
    ids = sorted(set(order_ids))
    out = OrderRetry()
    now = timezone.now()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        Order.objects.filter(pk__in=chunk, state=S.FAILED).update(send_attempts=0)
        again = list(
            Order.objects.filter(pk__in=chunk, state__in=[S.CAPTURED, S.HELD, S.FAILED]).values_list("pk", flat=True)
        )
        if again:
            result = validate_many(again, actor=actor, cause="retried from the console")
            out.revalidated += len(result.validated)
            # still invalid (held, or failed: the order flow keeps a failed order failed until it validates)
            out.held += Order.objects.filter(pk__in=again, state__in=[S.HELD, S.FAILED]).count()
        out.due += (
            Order.objects.filter(
                pk__in=chunk, state__in=[S.VALIDATED, S.SENT, S.DISPATCHED], cancel_requested_at__isnull=True
            )
            .filter(Q(claim_token="") | Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .update(next_attempt_at=None, claim_token="")
        )
        if progress is not None:
            progress.advance(len(chunk))
    if out.due:
        claims.kick()
    return out
