"""A decision survives a server crash: made while no daphne runs, it reaches its agent once
the agent reconnects to a new daphne process, and is not sent again after the agent acked it."""

import signal

import pytest
from asgiref.sync import sync_to_async
from ltpdash_client import LtpClient

from coordination.decisions import APPROVE, decide
from coordination.models import Escalation
from tests.conftest import start_daphne, stop_daphne, until_acked
from tests.console_helpers import KEY, SEED_RESPONSE

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _client(server, agents) -> LtpClient:
    return LtpClient(
        server.agent_url, agents.metrics_token, "metrics-agent", coordination_id=KEY,
        reconnect=False,
    )  # fmt: skip


async def test_decision_made_while_the_server_is_down_arrives_once_after_restart(
    agents, operators, tmp_path
):
    first = await sync_to_async(start_daphne)(tmp_path)
    try:
        async with _client(first, agents) as metrics:
            await metrics.send(SEED_RESPONSE)
            # The server dies with the agent still connected: no disconnect handling runs.
            first.process.send_signal(signal.SIGKILL)
            await sync_to_async(first.process.wait)()
    finally:
        await sync_to_async(stop_daphne)(first)

    escalation = await sync_to_async(Escalation.objects.get)(coordination__key=KEY)
    result = await sync_to_async(decide)(
        escalation.pk, operators["alice"], APPROVE, "page the DB on-call"
    )
    assert result.decided
    decision_id = f"decision-{escalation.pk}"

    second = await sync_to_async(start_daphne)(tmp_path)
    try:
        async with _client(second, agents) as metrics:
            decision = await metrics.receive(
                type="route_response", where=lambda f: f["id"] == decision_id
            )
            assert decision["from"] == "human:alice"
            assert decision["payload"]["branches"][0]["reason"] == "page the DB on-call"
            await until_acked(agents.metrics, decision_id)

        async with _client(second, agents) as metrics:
            await metrics.send({"type": "heartbeat", "payload": {"seq": 1}})  # replay is done
            with pytest.raises(TimeoutError):
                await metrics.receive(where=lambda f: f["id"] == decision_id, timeout=1)
    finally:
        await sync_to_async(stop_daphne)(second)
