from django.urls import path

from . import views

app_name = "monitoring"
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.prometheus, name="metrics"),
    path("monitoring/alerts/", views.AlertsView.as_view(), name="alerts"),
    path("monitoring/channels/<int:pk>/test/", views.SendTestView.as_view(), name="send_test"),
    path("monitoring/live/", views.LiveView.as_view(), name="live"),
]
