"""Celery tasks of the planning feed. Thin: they call :mod:`.services`. Idempotent (acks_late is global):
the demand feed re-sends only lines whose quantity changed and the planner upserts by line key; the
recommendations refresh replaces rows."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from . import services

log = logging.getLogger(__name__)


def _locked(name: str, pk: int, fn):
    lock = f"hub:planning:{name}:{pk}"
    if not cache.add(lock, 1, timeout=3600):
        return {"skipped": "already running"}
    try:
        return fn()
    finally:
        cache.delete(lock)


@shared_task(name="planning.push_demand", ignore_result=True)
def push_demand(connection_id: int | None = None, full: bool = False) -> dict:
    """Beat (daily): send new/changed demand lines to every enabled planner (or the one given)."""
    conns = services.planner_connections()
    if connection_id is not None:
        conns = conns.filter(pk=connection_id)
    out = {}
    for conn in conns:
        out[conn.name] = _locked("demand", conn.pk, lambda c=conn: services.push_demand_feed(c, full=full).as_dict())
    return out


@shared_task(name="planning.refresh_recommendations", ignore_result=True)
def refresh_recommendations(connection_id: int | None = None) -> dict:
    """Beat (daily, after the feed): read replenishment / purchase recommendations back, and the planner's open
    purchase orders / transfers."""
    conns = services.planner_connections()
    if connection_id is not None:
        conns = conns.filter(pk=connection_id)
    out = {}

    def both(c):
        res = services.refresh_recommendations(c).as_dict()
        res["stock_orders"] = services.refresh_stock_orders(c).as_dict()
        return res

    for conn in conns:
        out[conn.name] = _locked("recs", conn.pk, lambda c=conn: both(c))
    return out
