"""Ops page: the planner's replenishment / purchase recommendations (login + planning.view_recommendation),
with the returns the hub has recorded (per condition; only saleable ones offset demand) and the latest ones.
A fixed number of queries per page whatever the row count."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Max
from django.views.generic import TemplateView

from integration_hub.core.roles import PermissionRequired

from .models import DemandFeedEntry, Recommendation, StockOrder
from .services import planner_connections, returns_summary

PAGE_SIZE = 50
STOCK_ORDERS = 50  # the next ones due, on the page


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
        page = Paginator(qs.order_by("-recommended_quantity", "sku", "pk"), PAGE_SIZE).get_page(
            self.request.GET.get("page")
        )
        params = self.request.GET.copy()
        params.pop("page", None)
        feed = DemandFeedEntry.objects.aggregate(last=Max("sent_at"))
        ctx.update(
            page=page,
            q=q,
            kind=kind,
            location=location,
            kinds=Recommendation.Kind.choices,
            query=params.urlencode(),
            planners=list(planner_connections().values("name", "last_success_at", "last_error")),
            last_fetched=Recommendation.objects.aggregate(last=Max("fetched_at"))["last"],
            last_sent=feed["last"],
            returns=returns_summary(),
            stock_orders=list(
                StockOrder.objects.select_related("connection").order_by("expected_at", "reference", "pk")[
                    :STOCK_ORDERS
                ]
            ),
        )
        return ctx


# --- demand files a planner pulls (see .feeds) ------------------------------------------------------------------
FEED_FILES = ("products.csv", "sales-orders.csv")


def feed_file(request, connection: str, warehouse: str, name: str):
    """A complete demand file for one planner warehouse, streamed; 401 unless the feed token is presented."""
    from django.http import HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse

    from connectors import inventory_planner as ip
    from connectors.registry import get_connector

    from . import feeds

    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    conn = feeds.authorised_connection(connection, feeds.presented_token(request))
    if conn is None:
        resp = HttpResponse("Feed token required.\n", status=401, content_type="text/plain")
        resp["WWW-Authenticate"] = 'Basic realm="planner feed", charset="UTF-8"'
        return resp
    if name not in FEED_FILES:
        return HttpResponse("No such file.\n", status=404, content_type="text/plain")
    connector = get_connector(conn)
    if getattr(connector, "demand_delivery", "push") != "pull":
        return HttpResponse(
            "This planner connection does not pull files (options.delivery).\n", status=404, content_type="text/plain"
        )
    headers = {"Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{warehouse}-{name}"'}
    if request.method == "HEAD":
        return HttpResponse(b"", content_type="text/csv; charset=utf-8", headers=headers)
    if name == "products.csv":
        rows = ip.csv_lines(
            ip.PRODUCT_COLUMNS, (ip.product_row(v, warehouse) for v in feeds.all_variants(conn, [warehouse]))
        )
    else:
        rows = ip.csv_lines(
            ip.SALES_ORDER_COLUMNS,
            (
                ip.sales_order_row(line, sent, currency=connector.currency)
                for line, sent in feeds.published_lines(conn, warehouse)
            ),
        )
    return StreamingHttpResponse(
        (r.encode("utf-8") for r in rows), content_type="text/csv; charset=utf-8", headers=headers
    )
