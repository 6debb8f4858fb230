from django.urls import path

from . import views

app_name = "reconciliation"
urlpatterns = [
    path("", views.ReportListView.as_view(), name="list"),
    path("run/", views.RunReportView.as_view(), name="run"),
    path("subscriptions/", views.SubscriptionListView.as_view(), name="subscriptions"),
    path("subscriptions/<int:pk>/<slug:action>/", views.SubscriptionChangeView.as_view(), name="subscription_change"),
    path("<int:pk>/", views.ReportDetailView.as_view(), name="detail"),
    path("<int:pk>/csv/", views.ReportCsvView.as_view(), name="csv"),
    path("<int:pk>/xlsx/", views.ReportXlsxView.as_view(), name="xlsx"),
]
