"""ltpdash's Python client: speak LTP to ltpdash (`LtpClient`), or put a human approval gate
in front of a call (`Gate`). Depends on `websockets` only; the LangGraph and MCP adapters
are extras (`ltpdash-client[langgraph]`, `ltpdash-client[mcp]`)."""

from ltpdash_client.client import LtpClient, LtpError
from ltpdash_client.gate import Decision, DecisionTimeout, Gate, Rejected

__all__ = ["Decision", "DecisionTimeout", "Gate", "LtpClient", "LtpError", "Rejected"]
