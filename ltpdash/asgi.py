"""ASGI entry point: HTTP plus two websocket routes.

Agents connect to /ws/agent/ with a Bearer token (no Origin check: agents are not browsers).
Browsers connect to /ws/ui/... behind the session and an Origin check.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltpdash.settings")
# Django must be set up before the consumers (and through them the models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.consumer import AsyncConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from coordination import consumers  # noqa: E402


def browser(consumer: type[AsyncConsumer]) -> AllowedHostsOriginValidator:
    return AllowedHostsOriginValidator(AuthMiddlewareStack(consumer.as_asgi()))


websocket_urlpatterns = [
    path("ws/agent/", consumers.AgentConsumer.as_asgi()),
    *[path(route, browser(consumer)) for route, consumer in consumers.BROWSER_ROUTES],
]

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app)
        if settings.SERVE_STATIC
        else django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
