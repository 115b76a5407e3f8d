"""The MCP server over stdio, driven by the `mcp` SDK's own client against a real daphne:
request_approval waits for the operator and says approved, by whom, with the note (issue #14,
acceptance 6); declare_orientation and coordination_context reach ltpdash too."""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from gate_helpers import COORDINATION, decide, pending_escalation
from mcp import ClientSession, StdioServerParameters, stdio_client

from coordination.models import Orientation
from tests.factories import Operator

pytestmark = [pytest.mark.e2e]


@asynccontextmanager
async def mcp_session(live, token: str):
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ltpdash_client.mcp", "--url", live.agent_url, "--token", token,
              "--coordination", COORDINATION, "--timeout", "60"],
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )  # fmt: skip
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_request_approval_over_stdio_says_approved_by_whom_with_the_note(
    live, agents, operators
):
    async with mcp_session(live, agents.triage_token) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == {"request_approval", "declare_orientation", "coordination_context"}
        call = asyncio.ensure_future(
            session.call_tool(
                "request_approval",
                {
                    "action": "transfer_money",
                    "args": {"account": "acme", "amount_eur": 5000},
                    "reason": "refund duplicated charge",
                },
            )
        )
        escalation = await sync_to_async(pending_escalation)("transfer_money")
        alice = await sync_to_async(Operator)(live.http, operators["alice"])
        await sync_to_async(decide)(
            alice, escalation, "approve", "only the duplicate", amount_eur=4000
        )
        result = await asyncio.wait_for(call, 30)

    assert not result.is_error
    assert result.structured_content == {
        "approved": True,
        "decided_by": "alice",
        "note": "only the duplicate",
        "instructions": "",
        "args": {"account": "acme", "amount_eur": 4000},
        "amended": True,
    }


async def test_a_rejection_over_stdio_says_rejected_with_the_note(live, agents, operators):
    async with mcp_session(live, agents.triage_token) as session:
        call = asyncio.ensure_future(
            session.call_tool(
                "request_approval",
                {"action": "delete_data", "args": {"table": "orders"}, "reason": "cleanup"},
            )
        )
        escalation = await sync_to_async(pending_escalation)("delete_data")
        bob = await sync_to_async(Operator)(live.http, operators["bob"])
        await sync_to_async(decide)(bob, escalation, "reject", "never in production")
        result = await asyncio.wait_for(call, 30)

    content = result.structured_content
    assert content["approved"] is False
    assert (content["decided_by"], content["note"]) == ("bob", "never in production")


async def test_orientation_and_context_tools_reach_ltpdash(live, agents):
    async with mcp_session(live, agents.triage_token) as session:
        declared = await session.call_tool(
            "declare_orientation",
            {"role": "refund-agent", "intent": "refunds", "guardrails": ["ask first"]},
        )
        assert not declared.is_error
        context = await session.call_tool("coordination_context", {})

    orientation = await Orientation.objects.select_related("agent").aget(
        coordination__key=COORDINATION
    )
    assert (orientation.agent.name, orientation.guardrails) == ("triage-agent", ["ask first"])
    assert not context.is_error
    assert "refund-agent" in str(context.structured_content)
