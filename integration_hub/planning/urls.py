from django.urls import path

from . import views

app_name = "planning"
urlpatterns = [
    path("", views.RecommendationListView.as_view(), name="recommendations"),
    path("feeds/<slug:connection>/<str:warehouse>/<str:name>", views.feed_file, name="feed_file"),
]
