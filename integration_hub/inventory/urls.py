from django.urls import path

from . import views

app_name = "inventory"
urlpatterns = [
    path("stock/<slug:name>/", views.stock_webhook, name="stock-webhook"),
]
