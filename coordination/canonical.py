"""Canonical JSON and the audit hash chain (PROTOCOL §6).

LTP's inspector hashes ``JSON.stringify`` of each frame with every object's
keys sorted, so ``canonical()`` has to reproduce JavaScript byte for byte:
key order by UTF-16 code units with array-index keys first, numbers as
``Number.prototype.toString`` prints them, and escapes as ``JSON.stringify``
writes them. ``json.dumps(sort_keys=True)`` differs on each of those points.

Pure Python on purpose: it runs on every frame and in the offline verifier.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

__all__ = [
    "GENESIS",
    "CanonicalError",
    "canonical",
    "chain_hash",
    "chain_hash_text",
    "format_number",
    "parse_json",
]

GENESIS = "0" * 64

# JavaScript numbers are doubles: past this an integer silently changes value.
MAX_SAFE_INTEGER = 2**53 - 1

# The largest canonical array index; such keys are ordered numerically by JS.
_MAX_ARRAY_INDEX = 4294967294

# The C string encoder (no ASCII escaping) writes exactly what JSON.stringify
# writes, except for surrogates, which `_fix_surrogates` deals with.
_encode_str = json.encoder.encode_basestring

_SURROGATE = re.compile("[\ud800-\udfff]")


class CanonicalError(ValueError):
    """The value has no canonical form (JavaScript could not represent it)."""


def canonical(value: Any) -> str:
    """Return ``value`` as JavaScript's sorted-key ``JSON.stringify`` would."""
    parts: list[str] = []
    _write(value, parts.append)
    text = "".join(parts)
    # Surrogates can only come from inside string literals, so one pass over
    # the finished text is cheaper than inspecting every string on the way.
    if _SURROGATE.search(text):
        text = _fix_surrogates(text)
    return text


def chain_hash_text(prev_hash: str, canonical_text: str) -> str:
    """sha256(prev_hash as ASCII + canonical_text as UTF-8), lower-case hex."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_text.encode("utf-8"))
    return digest.hexdigest()


def chain_hash(prev_hash: str, frame: Any) -> str:
    """The hash of ``frame`` chained onto ``prev_hash``."""
    return chain_hash_text(prev_hash, canonical(frame))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and -Infinity.

    Python accepts those constants by default; JavaScript does not, and a
    frame holding one could never be hashed the way the inspector does.
    """
    if not isinstance(text, str):  # bytes: as json.loads reads them (UTF-8/16/32)
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _DECODER.decode(text)


# One decoder for every call (json.loads builds one per call when given options).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _write(value: Any, out: Any) -> None:
    # Exact type checks first: they are the common case and skip bool/int
    # subclass confusion (bool is an int subclass).
    cls = type(value)
    if cls is str:
        out(_encode_str(value))
    elif cls is dict:
        _write_object(value, out)
    elif cls is int:
        out(_format_int(value))
    elif cls is list or cls is tuple:
        if not value:
            out("[]")
            return
        out("[")
        first = True
        for item in value:
            if first:
                first = False
            else:
                out(",")
            _write(item, out)
        out("]")
    elif cls is float:
        out(format_number(value))
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif value is None:
        out("null")
    elif isinstance(value, str):
        out(_encode_str(value))
    elif isinstance(value, dict):
        _write_object(value, out)
    elif isinstance(value, int):
        out(_format_int(int(value)))
    elif isinstance(value, float):
        out(format_number(float(value)))
    elif isinstance(value, (list, tuple)):
        _write(list(value), out)
    else:
        raise CanonicalError(f"{cls.__name__} has no JSON form")


def _write_object(obj: dict[Any, Any], out: Any) -> None:
    if not obj:
        out("{}")
        return
    out("{")
    first = True
    for key in _ordered_keys(obj):
        if first:
            first = False
        else:
            out(",")
        out(_encode_str(key))
        out(":")
        _write(obj[key], out)
    out("}")


def _ordered_keys(obj: dict[Any, Any]) -> list[str]:
    indexes: list[str] = []
    names: list[str] = []
    wide = False
    for key in obj:
        if type(key) is not str:
            # Python would stringify these; JS objects never have them, so a
            # non-string key means the value did not come from JSON.
            raise CanonicalError(f"object key {key!r} is not a string")
        if _is_array_index(key):
            indexes.append(key)
        else:
            names.append(key)
            if not wide and not key.isascii():
                wide = True
    if indexes:
        indexes.sort(key=int)
    if wide:
        # UTF-16 code units differ from code points above U+FFFF (an emoji
        # sorts before U+FF01); big-endian UTF-16 bytes compare like units.
        names.sort(key=_utf16_units)
    else:
        names.sort()
    return indexes + names if indexes else names


def _utf16_units(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _is_array_index(key: str) -> bool:
    if not key.isascii() or not key.isdigit():
        return False
    if key[0] == "0":
        return key == "0"
    return len(key) <= 10 and int(key) <= _MAX_ARRAY_INDEX


def _format_int(value: int) -> str:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    raise CanonicalError(
        f"integer {value} is beyond ±(2**53-1) and cannot be represented "
        "exactly in JSON for JavaScript; send it as a string"
    )


def format_number(value: float) -> str:
    """Format a float as JavaScript's ``Number.prototype.toString`` does."""
    if not math.isfinite(value):
        raise CanonicalError(f"{value} is not a JSON number")
    magnitude = abs(value)
    if magnitude < 2**53 and value == int(value):
        # Exact below 2**53; also turns -0.0 into "0" as JavaScript does.
        return str(int(value))
    if 1e-4 <= magnitude < 2**53:
        # Not integral here, and Python's repr uses plain notation in this
        # range with the same shortest round-trip digits JavaScript picks.
        return repr(value)
    return _format_number_slow(value)


def _format_number_slow(value: float) -> str:
    # repr gives the shortest round-trip digits; only the layout differs.
    text = repr(abs(value))
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    # value = 0.<digits> * 10**point; ECMAScript calls point "n"
    point = len(whole) + exponent - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    if not digits:
        return "0"
    count = len(digits)
    sign = "-" if value < 0 else ""
    if count <= point <= 21:
        body = digits + "0" * (point - count)
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * -point + digits
    else:
        exp = point - 1
        exp_str = f"e+{exp}" if exp >= 0 else f"e-{-exp}"
        body = digits if count == 1 else digits[0] + "." + digits[1:]
        body += exp_str
    return sign + body


def _fix_surrogates(text: str) -> str:
    # A high/low pair split across two code points is one character to
    # JavaScript, so join pairs first; what is left is a lone surrogate,
    # which JSON.stringify escapes as lower-case \udxxx.
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", joined)
