"""Which Celery queue a task goes to: the one home for queue names (``CELERY_TASK_ROUTES`` points here).

Three flows never share a queue, so a flash sale's stock pushes cannot starve its orders (issue 20):

``priority``  the order flow — ``orders.process`` (validate, send to the warehouse, notify) and the
              fetches a storefront message asks for. Also the order sweep (beat).
``stock``     the stock decrements orders cause: drains of ORDER-priority outbox rows.
``default``   everything else: routine / sweep stock drains, polls, drift checks, reports, heartbeats.

Run a worker per queue (README "At scale"; ``./hub up`` does). An ``apply_async(queue=…)`` still wins over
this router; the hub's own calls leave the queue to it.
"""

from __future__ import annotations

ORDERS = "priority"
STOCK = "stock"
DEFAULT = "default"
ALL = (ORDERS, STOCK, DEFAULT)

ORDER_TASKS = frozenset({"orders.process", "orders.fetch_orders", "orders.sweep"})


def is_urgent_stock(max_priority) -> bool:
    from integration_hub.inventory.models import PendingPush

    return max_priority is not None and int(max_priority) <= PendingPush.Priority.ORDER


def route(name, args, kwargs, options, task=None, **kw):
    """Celery router (``CELERY_TASK_ROUTES``): ``{"queue": …}`` for the hub's flows, None for the default."""
    if name in ORDER_TASKS:
        return {"queue": ORDERS}
    if name == "inventory.push_pending":
        return {"queue": STOCK if is_urgent_stock((kwargs or {}).get("max_priority")) else DEFAULT}
    return None
