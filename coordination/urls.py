"""Every URL of the app: the agents' HTTP API, then the operator console."""

import re
import string

from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter
from django.views.generic import RedirectView

from coordination import api
from coordination.views import (
    agents,
    escalations,
    handoff,
    notifications,
    operators,
    pages,
    review,
    routing,
)

# One coordination's pages, below coordinations/<key>/.
coordination_urls = [
    path("", pages.coordination_detail, name="coordination-detail"),
    path("timeline/", pages.coordination_timeline, name="coordination-timeline"),
    path("trace.jsonl", pages.coordination_trace, name="coordination-trace"),
    path("note/", pages.coordination_note, name="coordination-note"),
    path("take-over/", handoff.take_over, name="coordination-take-over"),
    path("hand-off/", handoff.hand_off, name="coordination-hand-off"),
    path("admit/", handoff.admit, name="coordination-admit"),
    path("review/", review.review_page, name="coordination-review"),
    path("review/report.html", review.review_report, name="coordination-review-report"),
    path("reverify/", review.reverify, name="coordination-reverify"),
]


class CoordinationKey:
    """A coordination id in a path, whatever its text (`/`, newlines, `%`, `..`, quotes,
    non-ASCII). Letters, digits, `-`, `_` and `.` stay as they are (`incident-4821`); every
    other UTF-8 byte is written `~XX` (upper-case hex), so `ops/4821` is `ops~2F4821`: one
    opaque segment that no server or browser decodes or normalises (`..` is `~2E~2E`).
    `%`-escapes would not do: servers decode `%2F` before routing. Views and templates keep
    passing `coordination.key`; `to_python` gives it back, and refuses bad escapes (404)."""

    regex = "[A-Za-z0-9._~-]+"

    def to_python(self, value: str) -> str:
        try:
            raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
            return raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise ValueError(f"{value!r} is not an encoded coordination id") from None

    def to_url(self, value: str) -> str:
        if value.strip(".") == "":
            return "".join(f"~{byte:02X}" for byte in value.encode())
        return "".join(
            chr(byte) if chr(byte) in _SAFE else f"~{byte:02X}"
            for byte in value.encode("utf-8", "surrogatepass")
        )


_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")
_ESCAPE = re.compile("~([0-9A-Fa-f]{2})")


register_converter(CoordinationKey, "coordination")

urlpatterns = [
    path("api/v1/frames", api.frames, name="api-frames"),
    path("api/v1/coordinations/<coordination:key>/context", api.context, name="api-context"),
    path("api/v1/coordinations/<coordination:key>/trace", api.trace, name="api-trace"),
    path("conformance/verify", api.conformance_verify, name="conformance-verify"),
    path("favicon.ico", pages.favicon, name="favicon"),
    path("", RedirectView.as_view(pattern_name="coordination-list"), name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("coordinations/", pages.coordination_list, name="coordination-list"),
    path("coordinations/<coordination:key>/", include(coordination_urls)),
    path("escalations/", escalations.escalation_inbox, name="escalation-inbox"),
    path("escalations/<int:pk>/", escalations.escalation_detail, name="escalation-detail"),
    path("escalations/<int:pk>/decide/", escalations.decide, name="escalation-decide"),
    path("escalations/<int:pk>/on-it/", escalations.on_it, name="escalation-on-it"),
    path("agents/", agents.agent_list, name="agent-list"),
    path("agents/new/", agents.agent_create, name="agent-create"),
    path("agents/<int:pk>/rotate/", agents.agent_rotate, name="agent-rotate"),
    path("agents/<int:pk>/revoke/", agents.agent_revoke, name="agent-revoke"),
    path("agents/<int:pk>/scope/", agents.agent_scope, name="agent-scope"),
    path("operators/", operators.operator_list, name="operator-list"),
    path("operators/new/", operators.operator_create, name="operator-create"),
    path("operators/<int:pk>/role/", operators.operator_role, name="operator-role"),
    path("operators/lockouts/<int:pk>/lift/", operators.lockout_lift, name="lockout-lift"),
    path("audit/", operators.audit_log, name="audit-log"),
    path("routing/", routing.routing_table, name="routing-table"),
    path("routing/rules/", routing.rule_save, name="routing-rule-save"),
    path("routing/rules/<int:pk>/delete/", routing.rule_delete, name="routing-rule-delete"),
    path("imports/new/", review.import_page, name="trace-import"),
    path("notifications/", notifications.notification_list, name="notification-list"),
    path("me/notifications/", notifications.my_notifications, name="my-notifications"),
]
