"""Celery entry points of the exception queue (thin: the work is in :mod:`.bulk`)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="exceptions.bulk_action")
def bulk_action(
    action: str,
    query: str = "",
    ids=(),
    groups=(),
    all_matching: bool = False,
    params: dict | None = None,
    user_id: int | None = None,
) -> dict:
    """Run a queue action a person confirmed on more records than a request handles: the set is read again from
    the same filters (what matches now), with a progress bar on the dashboard."""
    from django.contrib.auth import get_user_model
    from django.http import QueryDict

    from integration_hub.monitoring import progress

    from . import bulk, queue

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    ids_ = queue.target_ids(QueryDict(query or ""), user, ids=ids, groups=groups, all_matching=all_matching)
    p = bulk.Params(**(params or {}))
    if p.snooze_until is not None and isinstance(p.snooze_until, str):
        from django.utils.dateparse import parse_datetime

        p.snooze_until = parse_datetime(p.snooze_until)
    with progress.track(
        f"exceptions-bulk:{user_id}", f"Exceptions: {bulk.ACTIONS.get(action, action)} ({len(ids_)})", total=len(ids_)
    ) as bar:
        out = bulk.run(ids_, action, p, user=user, progress=bar)
    return {"changed": out.changed, "orders": out.orders, "pushes": out.pushes, "skipped": len(out.skipped)}


@shared_task(name="exceptions.prune_occurrences", ignore_result=True)
def prune_occurrences(days: int = 3) -> int:
    """Hourly counts older than the queue's trend needs (beat job ``exceptions: prune trend counts``)."""
    from .services import prune_occurrences as prune

    return prune(days)
