"""A connected agent that hears nothing for a while stays connected and served.

On the Redis layer a consumer waits for channel messages with a blocking pop that times out
server-side every 5 s; a Redis client that gives up at that same moment killed every socket
idle that long (close 1011). The wait below is longer than that on purpose."""

import asyncio

import pytest
from ltpdash_client import LtpClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

IDLE_SECONDS = 7  # longer than channels_redis's 5 s blocking receive


async def test_agent_socket_survives_an_idle_spell_and_still_gets_acks(live, agents):
    client = LtpClient(live.agent_url, agents.triage_token, "triage-agent", reconnect=False)
    async with client:
        await asyncio.sleep(IDLE_SECONDS)
        (ack,) = await client.send(
            {"type": "orientation", "coordination_id": "idle-1", "payload": {"intent": "wait"}}
        )
        assert ack["type"] == "ack"
        assert client.reconnects == 0
        assert client.ws.close_code is None
