"""The seed flow of PROTOCOL §2 (incident-4821), as the bundles agents written from it send."""

KEY = "incident-4821"

# triage-agent declares its orientation and asks metrics-agent for data.
SEED_REQUEST = {
    "orientation": {
        "role": "triage-agent",
        "intent": "diagnose backlog",
        "guardrails": ["no production writes"],
    },
    "route_request": {"target": "metrics-agent", "need": "queue depth and error rate"},
}

# metrics-agent answers and escalates because a guardrail stops it.
SEED_RESPONSE = {
    "route_response": {
        "target": "metrics-agent",
        "result": {"queue_depth": 1240, "error_rate": 0.07},
        "branches": [{"action": "escalate", "reason": "guardrail: cannot page DB"}],
    },
    "focus_snapshot": {"coordination_id": KEY, "state": "diagnosis pending human approval"},
}

# The same bundles with ids and the coordination named, so that sending one again is a retry.
SEED_REQUEST_WITH_ID = {"id": "seed-1", "coordination_id": KEY, **SEED_REQUEST}
SEED_RESPONSE_WITH_ID = {"id": "seed-2", "coordination_id": KEY, **SEED_RESPONSE}
