from django.urls import path

from . import views

app_name = "exceptions"
urlpatterns = [
    path("", views.ExceptionListView.as_view(), name="list"),
    path("bulk/", views.BulkStatusView.as_view(), name="bulk"),
    path("<int:pk>/", views.ExceptionDetailView.as_view(), name="detail"),
    path("<int:pk>/status/", views.StatusActionView.as_view(), name="status"),
    path("<int:pk>/map-sku/", views.MapSkuView.as_view(), name="map_sku"),
    path("<int:pk>/repush/", views.RepushView.as_view(), name="repush"),
    path("<int:pk>/take-master-value/", views.TakeMasterValueView.as_view(), name="take_master_value"),
    path("<int:pk>/order/", views.OrderActionView.as_view(), name="order_action"),
]
