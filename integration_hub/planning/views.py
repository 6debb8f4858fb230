"""Ops page: the planner's replenishment / purchase recommendations (login + planning.view_recommendation),
with the returns the hub has recorded (per condition; only saleable ones offset demand) and the latest ones.
A fixed number of queries per page whatever the row count."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Max
from django.views.generic import TemplateView

from integration_hub.core.roles import PermissionRequired

from .models import DemandFeedEntry, Recommendation
from .services import planner_connections, returns_summary

PAGE_SIZE = 50


class RecommendationListView(PermissionRequired, TemplateView):
    permission_required = "planning.view_recommendation"
    template_name = "planning/recommendations.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        q = (self.request.GET.get("q") or "").strip()
        kind = self.request.GET.get("kind") or ""
        location = (self.request.GET.get("location") or "").strip()
        qs = Recommendation.objects.select_related("connection", "item")
        if q:
            qs = qs.filter(sku__icontains=q) | qs.filter(supplier__icontains=q)
        if kind in Recommendation.Kind.values:
            qs = qs.filter(kind=kind)
        if location:
            qs = qs.filter(location=location)
        page = Paginator(qs.order_by("-recommended_quantity", "sku", "pk"), PAGE_SIZE).get_page(self.request.GET.get("page"))
        params = self.request.GET.copy()
        params.pop("page", None)
        feed = DemandFeedEntry.objects.aggregate(last=Max("sent_at"))
        ctx.update(page=page, q=q, kind=kind, location=location, kinds=Recommendation.Kind.choices, query=params.urlencode(),
                   planners=list(planner_connections().values("name", "last_success_at", "last_error")),
                   last_fetched=Recommendation.objects.aggregate(last=Max("fetched_at"))["last"], last_sent=feed["last"],
                   returns=returns_summary())
        return ctx
