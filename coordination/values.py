"""What no frame may hold, checked before anything else reads it (wire layer, pure).

parse_message   JSON with a bounded nesting depth (`too_deep`), else `malformed_json`
check_values    integers JavaScript can represent (`unsafe_integer`), strings a database
                can store (`invalid_text`: no NUL, no lone surrogate), walked iteratively
"""

from __future__ import annotations

import re
from typing import Any

from coordination.canonical import MAX_SAFE_INTEGER, parse_json


class FrameError(Exception):
    """A frame refused at the edge: a stable code for machines, a sentence for people."""

    def __init__(self, code: str, message: str, frame_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


# Nesting depth of a message (a list of bundles of payloads is about 5): past this a message is
# refused before anything walks it.
MAX_DEPTH = 32
# What no database stores as text: NUL (PostgreSQL) and lone surrogates (not UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_values(value: Any, frame_id: str | None) -> None:
    """Integers JavaScript can represent, strings a database can store (walked without
    recursion; the depth is already bounded by `parse_message`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise FrameError(
                    "invalid_text",
                    "Strings may not hold NUL characters or lone UTF-16 surrogates; "
                    "this frame cannot be stored.",
                    frame_id,
                )
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            # JavaScript cannot represent these, so the chain hash would not verify elsewhere.
            if abs(item) > MAX_SAFE_INTEGER:
                raise FrameError(
                    "unsafe_integer",
                    "Integers beyond ±(2^53−1) cannot be represented in LTP; send them as strings.",
                    frame_id,
                )
        elif isinstance(item, float):
            # JavaScript prints these as integer digits (1e20 is "100000000000000000000"),
            # which read back as an integer it cannot represent: the chain would not verify.
            if MAX_SAFE_INTEGER < abs(item) < 1e21:
                raise FrameError(
                    "unsafe_integer",
                    "Numbers between 2^53 and 1e21 cannot be represented exactly in LTP; "
                    "send them as strings.",
                    frame_id,
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def storable(text: str) -> bool:
    """Whether a database can hold `text` (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


def parse_message(raw: str | bytes) -> Any:
    """What an agent sent, as JSON, or FrameError: `malformed_json` or `too_deep`."""
    try:
        data = parse_json(raw)
    except RecursionError:
        raise FrameError("too_deep", _TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError):
        raise FrameError(
            "malformed_json", "The message is not valid JSON. Nothing was stored."
        ) from None
    # Nesting needs an opening bracket per level: a message with few cannot be too deep.
    brackets = raw.count("{") + raw.count("[") if isinstance(raw, str) else MAX_DEPTH + 1
    if brackets > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise FrameError("too_deep", _TOO_DEEP)
    return data


_TOO_DEEP = f"Objects and lists may nest at most {MAX_DEPTH} deep. Nothing was stored."


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest
