from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import DefaultRouter

from integration_hub.catalog.api import ItemImportApiView

from . import tokens, views

app_name = "api"


class ApiRoot(DefaultRouter.APIRootView):
    """Integration Hub API: each endpoint checks its own role permissions."""

    permission_classes = [IsAuthenticated]


router = DefaultRouter()
router.APIRootView = ApiRoot
router.register("exceptions", views.ExceptionViewSet, basename="exception")
router.register("orders", views.OrderViewSet, basename="order")
router.register("sku-mappings", views.SkuMappingViewSet, basename="skumapping")
router.register("transforms", views.TransformViewSet, basename="transform")
router.register("channel-rules", views.ChannelStockRuleViewSet, basename="channelrule")
router.register("shipping-methods", views.ShippingMapViewSet, basename="shippingmap")
router.register("stock-levels", views.StockLevelViewSet, basename="stocklevel")
router.register("pending-pushes", views.PendingPushViewSet, basename="pendingpush")
router.register("reports", views.ReportViewSet, basename="report")
router.register("schedules", views.ScheduleViewSet, basename="schedule")


@csrf_exempt  # answers 404 to every method; changes nothing
def not_found(request, *args, **kwargs):
    """Any other /api/…/ URL (e.g. ``/api/orders/0.5/``, which no route's id pattern matches): a JSON 404
    like DRF's, not Django's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("token/", tokens.TokenLoginView.as_view(), name="token"),
    path("token/logout/", tokens.TokenLogoutView.as_view(), name="token-logout"),
    path("token/logoutall/", tokens.TokenLogoutAllView.as_view(), name="token-logoutall"),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    # the split view serves its start-up script as a file: no inline script under the CSP
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api:schema", permission_classes=[IsAuthenticated]),
        name="docs",
    ),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api:schema", permission_classes=[IsAuthenticated]),
        name="redoc",
    ),
    path("items/import/", ItemImportApiView.as_view(), name="item-import"),
    path("", include(router.urls)),
    re_path(r"^[\s\S]*/$", not_found),  # last; [\s\S], not ".": an id with a line break in it is still this JSON 404
]
