from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

admin.site.site_header = "Integration Hub administration"
admin.site.site_title = "Integration Hub"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("integration_hub.api.urls")),
    # inbound webhooks from storefronts and masters (signed; CSRF-exempt views)
    path("hooks/", include("integration_hub.inventory.urls")),
    path("hooks/", include("integration_hub.orders.urls")),
    path("exceptions/", include("exceptions_app.urls")),
    path("reports/", include("integration_hub.reconciliation.urls")),
    path("planning/", include("integration_hub.planning.urls")),
    path("items/", include("integration_hub.catalog.urls")),
    path("", include("integration_hub.monitoring.urls")),  # /healthz, /readyz, /metrics, /monitoring/
    path("", include("integration_hub.console.urls")),
]
