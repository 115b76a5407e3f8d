"""Management commands: createagent issues tokens, exporttrace writes a chain that verifytrace
accepts."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from coordination.models import Agent
from tests.factories import command, post_frames, send

pytestmark = pytest.mark.django_db


def token_from(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("Token")]
    return line.rsplit(" ", 1)[1]


def authenticates(client, token) -> bool:
    return post_frames(client, token, {"hello": {}}).status_code == 200


def test_createagent_prints_a_token_that_authenticates(client):
    output = command("createagent", "pager-agent", "--role", "pager")

    token = token_from(output)
    assert "pager-agent" in output
    assert authenticates(client, token)
    agent = Agent.objects.get(name="pager-agent")
    assert agent.role == "pager"
    assert token not in agent.token_hash  # only the hash is kept


def test_createagent_token_only_prints_just_the_token(client):
    token = command("createagent", "script-agent", "--token-only").strip()

    assert token.startswith("ltp_")
    assert Agent.authenticate(token) == Agent.objects.get(name="script-agent")


def test_createagent_refuses_an_existing_name_without_rotate(client):
    token = token_from(command("createagent", "pager-agent"))

    with pytest.raises(CommandError, match="--rotate"):
        command("createagent", "pager-agent")

    assert Agent.objects.filter(name="pager-agent").count() == 1
    assert authenticates(client, token)


def test_createagent_rotate_replaces_the_token(client):
    old = token_from(command("createagent", "pager-agent"))

    new = token_from(command("createagent", "pager-agent", "--rotate"))

    assert new != old
    assert authenticates(client, new)
    assert not authenticates(client, old)


def _incident(agents):
    send(
        agents.triage,
        {
            "id": "seed-1",
            "coordination_id": "incident-4821",
            "orientation": {"role": "triage-agent", "intent": "diagnose backlog"},
            "route_request": {"target": "human", "need": "queue depth — ünïcode ✓"},
            "focus_snapshot": {"state": "pending", "ratio": 0.07, "big": 1e21},
        },
    )


def test_exporttrace_output_verifies_with_verifytrace(agents, tmp_path):
    _incident(agents)
    path = tmp_path / "incident-4821.jsonl"

    path.write_text(command("exporttrace", "incident-4821"), encoding="utf-8")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4  # three frames plus ltpdash's escalate step
    assert json.loads(lines[0])["frame"]["id"] == "seed-1:orientation"
    assert command("verifytrace", str(path)).strip() == "verified (4 entries)"


def test_verifytrace_reports_where_an_edited_export_breaks(agents, tmp_path, capsys):
    _incident(agents)
    lines = command("exporttrace", "incident-4821").splitlines()
    [edited] = [n for n, line in enumerate(lines) if '"state":"pending"' in line]
    lines[edited] = lines[edited].replace('"state":"pending"', '"state":"all fine"')
    path = tmp_path / "edited.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("verifytrace", str(path), stdout=out)

    assert exited.value.code == 1
    assert out.getvalue().startswith(f"broken at entry {edited}")


def test_exporttrace_of_an_unknown_coordination_fails(agents):
    with pytest.raises(CommandError, match="No coordination"):
        command("exporttrace", "incident-0000")
