from django.urls import path

from . import views

app_name = "orders"
urlpatterns = [
    path("orders/<slug:name>/", views.order_webhook, name="order-webhook"),
    path("dispatch/<slug:name>/", views.dispatch_webhook, name="dispatch-webhook"),
]
