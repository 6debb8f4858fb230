"""Celery entry points of the console (thin: the work is in :mod:`.retry_all`)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="console.retry_all")
def retry_all(what: str, query: str = "", user_id: int | None = None) -> dict:
    """ "Retry all matching" of the push queue (``what="pushes"``) or the order list (``"orders"``) that was too
    large for a request: the set is read again from the same filters, with a progress bar on the dashboard."""
    from django.contrib.auth import get_user_model
    from django.http import QueryDict

    from integration_hub.inventory import outbox
    from integration_hub.monitoring import progress
    from integration_hub.orders import actions

    from . import retry_all as r

    params = QueryDict(query or "")
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    if what == "pushes":
        qs = r.failing_pushes(params)
        with progress.track(f"push-retry-all:{user_id}", "Retry all matching failing pushes", total=qs.count()) as bar:
            return {"retried": outbox.lift_backoff(qs, progress=bar)}
    if what == "orders":
        ids = list(r.retryable(r.order_queryset(params)).values_list("pk", flat=True))
        with progress.track(f"order-retry-all:{user_id}", f"Retry {len(ids)} matching order(s)", total=len(ids)) as bar:
            out = actions.retry_orders(ids, actor=user, progress=bar)
        return {"due": out.due, "held": out.held, "revalidated": out.revalidated}
    raise ValueError(f"unknown retry {what!r}")
