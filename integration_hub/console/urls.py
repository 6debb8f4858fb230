from django.urls import path

from . import views

app_name = "console"
urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("dashboard/", views.DashboardView.as_view(), name="dashboard"),
    path("rules/sku-mappings/import/", views.MappingImportView.as_view(), name="mapping_import"),
    path("rules/<slug:slug>/", views.RuleListView.as_view(), name="rule_list"),
    path("rules/<slug:slug>/new/", views.RuleEditView.as_view(), name="rule_new"),
    path("rules/<slug:slug>/<int:pk>/", views.RuleEditView.as_view(), name="rule_edit"),
    path("rules/<slug:slug>/<int:pk>/delete/", views.RuleDeleteView.as_view(), name="rule_delete"),
    path("activity/", views.ActivityView.as_view(), name="activity"),
    path("activity/<int:pk>/revert/", views.RevertView.as_view(), name="revert"),
    path("orders/", views.OrderListView.as_view(), name="order_list"),
    path("orders/retry-all/", views.OrderRetryAllView.as_view(), name="order_retry_all"),
    path("orders/<int:pk>/", views.OrderDetailView.as_view(), name="order_detail"),
    path("orders/<int:pk>/escalate/", views.OrderEscalateView.as_view(), name="order_escalate"),
    path("pushes/", views.PushQueueView.as_view(), name="push_list"),
    path("pushes/retry/", views.PushRetryView.as_view(), name="push_retry"),
    path("pushes/retry-all/", views.PushRetryAllView.as_view(), name="push_retry_all"),
    path("schedules/", views.ScheduleListView.as_view(), name="schedule_list"),
    path("schedules/<int:pk>/", views.ScheduleEditView.as_view(), name="schedule_edit"),
    path("schedules/<int:pk>/run/", views.ScheduleRunView.as_view(), name="schedule_run"),
    path("schedules/bulk/", views.ScheduleBulkView.as_view(), name="schedule_bulk"),
    path("schedules/runs/<int:pk>/", views.ScheduleRunDetailView.as_view(), name="schedule_run_detail"),
]
