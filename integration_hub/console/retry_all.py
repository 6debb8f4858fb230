""" "Retry all matching" for the stock push queue and the order list: the whole filtered set, not one page.

The list pages and these functions read the same filters (:func:`push_queryset`, :func:`order_queryset`), so
the count shown before confirming is the set that is retried. Set-based: a push retry is one UPDATE per 1,000
rows (the back-off lifted, a worker nudged); an order retry is the order flow's own bulk action
(:func:`integration_hub.orders.actions.retry_orders`: revalidates held / failed / captured orders in batches and makes
validated / unacknowledged / dispatched ones due now for the order worker, which sends them or tells the storefront
they shipped). Above ``HUB_BULK_INLINE_LIMIT``
rows the work is queued to a worker (:mod:`.tasks`) with a progress bar on the dashboard.
"""

from __future__ import annotations

from django.conf import settings

RETRYABLE_STATES = ("captured", "validated", "sent", "held", "failed", "dispatched")


def inline_limit() -> int:
    return int(settings.HUB.get("BULK_INLINE_LIMIT", 500))


# --- stock pushes ---------------------------------------------------------------------------------------------
def push_queryset(params):
    """The push queue's filters: channel key, failing only, master SKU."""
    from integration_hub.inventory.models import PendingPush

    qs = PendingPush.objects.all()
    channel, failing, q = (str(params.get(k, "") or "").strip() for k in ("channel", "failing", "q"))
    if channel:
        qs = qs.filter(channel__key=channel)
    if failing:
        qs = qs.filter(attempts__gt=0)
    if q:
        qs = qs.filter(item__sku__iexact=q)
    return qs


def failing_pushes(params):
    """What "retry all matching failing pushes" acts on: the filtered rows that have failed at least once."""
    return push_queryset(params).filter(attempts__gt=0)


# --- orders -----------------------------------------------------------------------------------------------------
def order_queryset(params):
    """The order list's filters: state, channel key, search (number, e-mail, name)."""
    from integration_hub.orders.models import Order, OrderState

    from .services import order_search

    qs = Order.objects.all()
    state, channel, q = (str(params.get(k, "") or "").strip() for k in ("state", "channel", "q"))
    if state in OrderState.values:
        qs = qs.filter(state=state)
    if channel:
        qs = qs.filter(channel__key=channel)
    if q:
        qs = qs.filter(order_search(q))
    return qs


def retryable(qs):
    return qs.filter(state__in=RETRYABLE_STATES, cancel_requested_at__isnull=True)
