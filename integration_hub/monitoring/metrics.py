"""Prometheus exposition: the hub's figures (:mod:`.figures`, computed at scrape time in a fixed number of
queries), open alert firings and the notification outbox, plus HTTP request and Celery task counters.

Uses ``prometheus-client`` (https://prometheus.github.io/client_python/). Counters live in the process
that counts them: the web process counts requests; Celery tasks are counted in the worker processes,
so to see them on the web endpoint set ``PROMETHEUS_MULTIPROC_DIR`` to the same empty directory for the
web server and the workers of a host (prometheus-client's multiprocess mode; see its "Multiprocess Mode"
page). The endpoint is protected by a bearer token (``HUB_METRICS_TOKEN``); without one it does not exist.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter("hub_http_requests", "HTTP requests handled by the web console/API", ["method", "view", "status"])
REQUEST_SECONDS = Histogram("hub_http_request_duration_seconds", "Time to answer an HTTP request", ["method"])
TASKS = Counter("hub_celery_tasks", "Celery tasks finished, by task and outcome", ["task", "state"])


class FiguresCollector:
    """Collects the figures live on every scrape (no stale cache; ~8 queries)."""

    def collect(self):
        from django.db.models import Count

        from . import figures
        from .models import Delivery, Firing

        values = figures.compute()
        families: dict[str, GaugeMetricFamily] = {}
        for (figure, key), value in sorted(values.items()):
            info = figures.FIGURES.get(figure)
            fam = families.get(figure)
            if fam is None:
                fam = families[figure] = GaugeMetricFamily(
                    f"hub_{figure}", info.help if info else figure, labels=["key"]
                )
            fam.add_metric([key], value)
        yield from families.values()
        firing = GaugeMetricFamily(
            "hub_alerts_firing", "Open alert firings", labels=["rule", "key", "severity", "flow"]
        )
        for rule, key, severity, flow in Firing.objects.filter(recovered_at__isnull=True).values_list(
            "rule__name", "key", "severity", "flow"
        ):
            firing.add_metric([rule, key, severity, flow], 1)
        yield firing
        outbox = GaugeMetricFamily("hub_notifications", "Alert notification outbox rows by status", labels=["status"])
        for row in Delivery.objects.order_by().values("status").annotate(n=Count("id")):
            outbox.add_metric([row["status"]], row["n"])
        yield outbox


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(reg)
    else:
        for metric in (REQUESTS, REQUEST_SECONDS, TASKS):
            reg.register(metric)
    reg.register(FiguresCollector())
    return reg


def exposition() -> bytes:
    return generate_latest(registry())


class RequestMetricsMiddleware:
    """Counts every request by method, resolved view name (bounded) and status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match else "") or "unresolved"
        REQUESTS.labels(request.method, view, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(request.method).observe(time.perf_counter() - started)
        return response


def _task_done(sender=None, task=None, state=None, **kwargs):
    name = getattr(task, "name", None) or getattr(sender, "name", None) or "unknown"
    TASKS.labels(name, (state or "unknown").lower()).inc()


def connect_celery_signals() -> None:
    from celery.signals import task_postrun

    task_postrun.connect(_task_done, dispatch_uid="hub-metrics-task-postrun", weak=False)
