from django.urls import path

from . import relay_views, views

app_name = "orders"
urlpatterns = [
    path("orders/<slug:name>/", views.order_webhook, name="order-webhook"),
    path("orders/<slug:name>/pubsub/", relay_views.pubsub_push, name="order-pubsub-push"),
    path("dispatch/<slug:name>/", views.dispatch_webhook, name="dispatch-webhook"),
]
