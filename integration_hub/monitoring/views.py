"""Thin views: health and metrics for operators, the alerts screen (channels with "send test", firings,
the notification outbox), and the live dashboard fragment refreshed by htmx."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views import View
from django.views.generic import TemplateView

from integration_hub.core import audit
from integration_hub.core.roles import PermissionRequired

from . import dashboard, delivery, health, metrics
from .models import AlertRule, Delivery, Firing, NotificationChannel

RECENT = 50


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    ok, checks = health.readiness()
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


def prometheus(request):
    """``/metrics``: only with ``Authorization: Bearer <HUB_METRICS_TOKEN>``; without a configured token it
    does not exist (404), a wrong or missing token is 401."""
    token = settings.HUB.get("METRICS_TOKEN", "")
    if not token:
        raise Http404("metrics are not enabled")
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        response = HttpResponse("bearer token required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    from prometheus_client import CONTENT_TYPE_LATEST

    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


class AlertsView(PermissionRequired, TemplateView):
    permission_required = "monitoring.view_firing"
    template_name = "monitoring/alerts.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        user = self.request.user
        ctx["firings"] = list(Firing.objects.select_related("rule").order_by("-started_at", "-id")[:RECENT])
        ctx["rules"] = (
            list(AlertRule.objects.prefetch_related("channels").order_by("name"))
            if user.has_perm("monitoring.view_alertrule")
            else []
        )
        ctx["channels"] = (
            list(NotificationChannel.objects.order_by("name"))
            if user.has_perm("monitoring.view_notificationchannel")
            else []
        )
        ctx["deliveries"] = (
            list(Delivery.objects.select_related("channel", "firing").order_by("-created_at", "-id")[:RECENT])
            if user.has_perm("monitoring.view_delivery")
            else []
        )
        ctx["can_test"] = user.has_perm("monitoring.change_notificationchannel")
        ctx["changes"] = []
        if user.has_perm("monitoring.view_alertrule"):
            ctx["changes"] = list(audit.recent_for_model(AlertRule)[:10]) + list(
                audit.recent_for_model(NotificationChannel)[:10]
            )
            ctx["changes"].sort(key=lambda e: (e.at, e.id), reverse=True)
        return ctx


class SendTestView(PermissionRequired, View):
    permission_required = "monitoring.change_notificationchannel"

    def post(self, request, pk):
        channel = get_object_or_404(NotificationChannel, pk=pk)
        d = delivery.send_test(channel)
        if d.status == Delivery.Status.SENT:
            messages.success(request, f"Test sent to {channel.name}.")
        else:
            messages.error(request, f"Test to {channel.name} failed: {d.last_error}")
        return redirect("monitoring:alerts")


class LiveView(PermissionRequired, TemplateView):
    """The dashboard's live fragment (tiles, charts, progress), polled by htmx."""

    permission_required = "console.view_dashboard"
    template_name = "monitoring/_live.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["live"] = dashboard.live(self.request.user, self.request.GET.get("range", "hour"))
        ctx["fragment"] = True
        return ctx
