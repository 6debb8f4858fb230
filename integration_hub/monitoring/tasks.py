"""Celery tasks of monitoring (thin: the work is in :mod:`.figures`, :mod:`.sampling`, :mod:`.rules`, :mod:`.delivery`)."""

from __future__ import annotations

from celery import shared_task

from . import delivery, figures, rules, sampling, watch


@shared_task(name="monitoring.tick", ignore_result=True, acks_late=True)
def tick() -> dict:
    """Compute the figures once, store them as a sample, evaluate the alert rules on them."""
    values = figures.compute()
    stored = sampling.record(values)
    outcome = rules.evaluate(values)
    watch.record(values)  # dead worker, intake behind, holds piling up: also in the exception queue (issue 20)
    return {
        "samples": stored,
        "fired": len(outcome.fired),
        "recovered": len(outcome.recovered),
        "skipped": outcome.skipped,
    }


@shared_task(name="monitoring.deliver_due", ignore_result=True, acks_late=True)
def deliver_due() -> int:
    """Sweep: queue every due notification (those whose task was lost, and retries whose back-off expired)."""
    return delivery.kick()


@shared_task(name="monitoring.deliver_one", ignore_result=True, acks_late=True)
def deliver_one(delivery_id: int) -> str:
    return delivery.deliver(delivery_id)


@shared_task(name="monitoring.daily_digest", ignore_result=True, acks_late=True)
def daily_digest() -> int:
    """Queue today's digest for every channel that asks for one, then send."""
    n = delivery.queue_digests()
    delivery.kick()
    return n
