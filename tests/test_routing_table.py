"""The routing table: admins edit it in the console (and with `manage.py routing`), every
change is recorded with who made it, and the next request follows it without a restart."""

import getpass
import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.urls import reverse

from coordination.models import Agent, RouteRequest, RoutingChange, RoutingRule
from tests.factories import FLEET, agent_client, metrics_client, triage_client


@pytest.fixture
def metrics_b_token(agents):
    return Agent.create_with_token("metrics-agent-b", scope=FLEET)[1]


@pytest.fixture
def rule(metrics_b_token):
    return RoutingRule.objects.create(need="metrics", agents=["metrics-agent", "metrics-agent-b"])


def saved_by_ada(client_for, need: str, agents: str, htmx: bool = False):
    """ada (an admin) saves the rule for `need` in the console, through htmx or a plain form."""
    return client_for("ada").post(
        reverse("routing-rule-save"),
        {"need": need, "agents": agents},
        headers={"HX-Request": "true"} if htmx else {},
    )


# --- access ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_visitor_is_sent_to_the_login_page(client_for, rule):
    client = client_for(None)
    for response in (
        client.get(reverse("routing-table")),
        client.post(reverse("routing-rule-save"), {"need": "x", "agents": "metrics-agent"}),
        client.post(reverse("routing-rule-delete", args=[rule.pk])),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not RoutingChange.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["oscar", "vic", "alice"])
def test_operators_who_are_not_admins_may_not_see_or_change_the_table(client_for, rule, name):
    client = client_for(name)
    assert client.get(reverse("routing-table")).status_code == 403
    saved = client.post(reverse("routing-rule-save"), {"need": "metrics", "agents": "triage-agent"})
    deleted = client.post(reverse("routing-rule-delete", args=[rule.pk]))

    assert (saved.status_code, deleted.status_code) == (403, 403)
    rule.refresh_from_db()
    assert rule.agents == ["metrics-agent", "metrics-agent-b"]
    assert not RoutingChange.objects.exists()


@pytest.mark.django_db
def test_admin_sees_the_rules_and_the_audit_record(client_for, rule):
    call_command(
        "routing", "set", "database", "metrics-agent", "--by", "carol", stdout=io.StringIO()
    )

    response = client_for("ada").get(reverse("routing-table"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "metrics-agent, metrics-agent-b" in page
    assert '<td class="who">carol</td>' in page


# --- editing in the console --------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_adds_a_rule_and_the_change_records_who(client_for, operators, agents):
    response = saved_by_ada(client_for, "database", "metrics-agent, triage-agent")

    assert response.status_code == 302
    assert response["Location"] == reverse("routing-table")
    assert RoutingRule.objects.get(need="database").agents == ["metrics-agent", "triage-agent"]
    change = RoutingChange.objects.get()
    assert change.changed_by == operators["ada"]
    assert change.changed_by_name == "ada"
    assert (change.need, change.before, change.after) == (
        "database",
        None,
        ["metrics-agent", "triage-agent"],
    )


@pytest.mark.django_db
def test_admin_reorders_a_rule_through_htmx_and_gets_the_fragment(client_for, rule):
    response = saved_by_ada(client_for, "metrics", "metrics-agent-b, metrics-agent", htmx=True)

    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<div id="routing-body"')
    assert "<html" not in fragment
    assert "metrics → metrics-agent-b, metrics-agent: saved." in fragment
    rule.refresh_from_db()
    assert rule.agents == ["metrics-agent-b", "metrics-agent"]
    change = RoutingChange.objects.get()
    assert change.before == ["metrics-agent", "metrics-agent-b"]
    assert change.after == ["metrics-agent-b", "metrics-agent"]


@pytest.mark.django_db
def test_saving_a_rule_unchanged_adds_nothing_to_the_audit_record(client_for, rule):
    response = saved_by_ada(client_for, "metrics", "metrics-agent, metrics-agent-b", htmx=True)

    assert "metrics → metrics-agent, metrics-agent-b: unchanged." in response.content.decode()
    assert not RoutingChange.objects.exists()


@pytest.mark.django_db
def test_a_rule_naming_an_unknown_agent_is_refused(client_for, rule):
    response = saved_by_ada(client_for, "metrics", "metrics-agent, metrcs-agent-b")

    assert response.status_code == 400
    assert "No agent named metrcs-agent-b." in response.content.decode()
    rule.refresh_from_db()
    assert rule.agents == ["metrics-agent", "metrics-agent-b"]
    assert not RoutingChange.objects.exists()


@pytest.mark.django_db
def test_admin_deletes_a_rule_and_the_deletion_is_recorded(client_for, rule):
    response = client_for("ada").post(reverse("routing-rule-delete", args=[rule.pk]))

    assert response.status_code == 302
    assert not RoutingRule.objects.exists()
    change = RoutingChange.objects.get()
    assert (change.need, change.after, change.changed_by_name) == ("metrics", None, "ada")


def test_routing_page_only_accepts_get_and_actions_only_post(client_for, rule, db):
    client = client_for("ada")
    assert client.post(reverse("routing-table")).status_code == 405
    assert client.get(reverse("routing-rule-save")).status_code == 405
    assert client.get(reverse("routing-rule-delete", args=[rule.pk])).status_code == 405


# --- the management command ----------------------------------------------------------------------


@pytest.mark.django_db
def test_routing_command_sets_lists_and_deletes_with_who_recorded(rule):
    out = io.StringIO()
    call_command("routing", "set", "metrics", "metrics-agent-b,metrics-agent", "--by", "carol",
                 stdout=out)  # fmt: skip
    call_command("routing", "list", stdout=out)
    call_command("routing", "delete", "metrics", stdout=out)

    assert "metrics → metrics-agent-b, metrics-agent" in out.getvalue()
    deletion, change = RoutingChange.objects.order_by("-pk")
    assert (change.changed_by_name, change.after) == ("carol", ["metrics-agent-b", "metrics-agent"])
    assert (deletion.changed_by_name, deletion.after) == (getpass.getuser(), None)
    assert not RoutingRule.objects.exists()


@pytest.mark.django_db
def test_routing_command_refuses_unknown_agents(agents):
    with pytest.raises(CommandError, match="No agent named nobody"):
        call_command("routing", "set", "metrics", "metrics-agent,nobody")
    assert not RoutingRule.objects.exists()


# --- the next request follows the change, without a restart --------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_a_console_change_takes_effect_for_the_next_request(
    live, agents, client_for, operators, rule, metrics_b_token
):
    triage = triage_client(live, agents)
    metrics = metrics_client(live, agents)
    metrics_b = agent_client(live, metrics_b_token, "metrics-agent-b")
    async with triage, metrics, metrics_b:
        await triage.send({"id": "first", "route_request": {"need": "metrics"}})
        first = await metrics.receive(type="route_request")
        assert first["id"] == "first:route_request"

        @sync_to_async
        def reorder_in_console():
            response = saved_by_ada(client_for, "metrics", "metrics-agent-b, metrics-agent")
            assert response.status_code == 302

        await reorder_in_console()

        await triage.send({"id": "second", "route_request": {"need": "metrics"}})
        second = await metrics_b.receive(type="route_request")
        assert second["id"] == "second:route_request"

        step = await triage.receive(
            type="route_response",
            where=lambda f: (
                f["from"] == "ltpdash" and f["payload"]["in_reply_to"] == "second:route_request"
            ),
        )
        assert step["payload"]["branches"][0] == {
            "action": "route",
            "reason": "need 'metrics' routed to metrics-agent-b by the routing table",
            "target": "metrics-agent-b",
        }

    @sync_to_async
    def check():
        assert RouteRequest.objects.get(ltp_id="first:route_request").assigned_to.name == (
            "metrics-agent"
        )
        assert RouteRequest.objects.get(ltp_id="second:route_request").assigned_to.name == (
            "metrics-agent-b"
        )
        change = RoutingChange.objects.get()
        assert change.changed_by == operators["ada"]
        assert change.after == ["metrics-agent-b", "metrics-agent"]

    await check()
