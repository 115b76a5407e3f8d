"""An MCP server (stdio) that routes a risky step through an ltpdash operator.

    python -m ltpdash_client.mcp --url ws://127.0.0.1:8000/ws/agent/ --token $TOKEN \\
        --coordination refunds-7

Tools: `request_approval(action, args, reason)` (waits for the human decision and says
approved or rejected, by whom, with the note and the arguments to use), `declare_orientation
(role, intent, guardrails)` and `coordination_context()`. Needs `ltpdash-client[mcp]`.
stdout carries the MCP protocol: nothing else may print there.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from mcp.server.mcpserver import MCPServer

from ltpdash_client.gate import DEFAULT_DEADLINE, Gate, Rejected

INSTRUCTIONS = (
    "Before a step that moves money, changes production, deletes data or otherwise needs a "
    "human, call request_approval and do the step only if it answers approved, with the "
    "arguments it returns (the approver may have amended them)."
)


def build_server(gate: Gate) -> MCPServer:
    server = MCPServer("ltpdash", instructions=INSTRUCTIONS)

    @server.tool()
    async def request_approval(action: str, args: dict[str, Any], reason: str) -> dict[str, Any]:
        """Ask a human operator (through ltpdash) before doing `action` with `args`; waits
        for the decision."""
        try:
            decision = await gate.arequest(action, args, reason)
        except Rejected as rejected:
            return {
                "approved": False,
                "decided_by": rejected.decided_by,
                "note": rejected.note,
                "instructions": rejected.instructions,
            }
        return {
            "approved": True,
            "decided_by": decision.decided_by,
            "note": decision.note,
            "instructions": decision.instructions,
            "args": decision.args,
            "amended": decision.amended,
        }

    @server.tool()
    async def declare_orientation(
        role: str, intent: str, guardrails: list[str] | None = None
    ) -> dict[str, Any]:
        """Tell the operators who this agent is, what it intends, and what it must not do."""
        return await gate.adeclare(role, intent, guardrails or [])

    @server.tool()
    async def coordination_context() -> dict[str, Any]:
        """The coordination now: latest snapshot, every agent's orientation, open requests,
        pending escalations, recent frames."""
        return await asyncio.to_thread(gate.context)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ltpdash_client.mcp", description=__doc__)
    parser.add_argument("--url", required=True, help="ltpdash's agent websocket URL")
    parser.add_argument("--token", required=True, help="the agent's token")
    parser.add_argument("--coordination", default="mcp", help="coordination id (default mcp)")
    parser.add_argument("--name", default="mcp-agent", help="prefix of this agent's frame ids")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_DEADLINE,
        help="seconds to wait for a decision (the escalation deadline; default 900)",
    )
    options = parser.parse_args(argv)
    gate = Gate(
        options.url,
        options.token,
        coordination=options.coordination,
        name=options.name,
        timeout=options.timeout,
    )
    try:
        build_server(gate).run("stdio")
    finally:
        gate.close()


if __name__ == "__main__":
    main()
