from django.urls import include, path

from coordination import api

urlpatterns = [
    path("api/v1/frames", api.frames, name="api-frames"),
    path("api/v1/coordinations/<str:key>/context", api.context, name="api-context"),
    path("api/v1/coordinations/<str:key>/trace", api.trace, name="api-trace"),
    path("conformance/verify", api.conformance_verify, name="conformance-verify"),
    path("", include("coordination.views.console_urls")),
    path("", include("coordination.views.routing_urls")),
    path("", include("coordination.views.notification_urls")),
]
