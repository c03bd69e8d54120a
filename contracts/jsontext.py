"""JSON text from outside (a file, stdin, a bus body), read defensively: bounded nesting, UTF-8 only,
and positions reported as the user sees them (line and column of the original text)."""

from __future__ import annotations

import codecs
import json
from typing import Any

MAX_DEPTH = 64  # an envelope nests about 5 deep; json.loads recurses once per level


class BadText(ValueError):
    """Input that is not UTF-8 JSON text we can read; the message names where."""


def nesting_depth(text: bytes | str) -> int:
    """How deep JSON brackets nest (outside strings): a linear scan, no recursion."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def position(data: bytes | str, offset: int) -> str:
    """``line L column C`` (1-based) of ``offset`` in ``data``, counting only newlines as line ends."""
    newline: bytes | str = b"\n" if isinstance(data, bytes) else "\n"
    line = data.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    start = data.rfind(newline, 0, offset) + 1  # type: ignore[arg-type]
    return f"line {line} column {offset - start + 1}"


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped); BadText naming the first byte that is not UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadText(
            f"the input is not UTF-8 text: byte 0x{data[exc.start]:02x} at {position(data, exc.start)}"
        ) from None


def loads(text: str | bytes) -> Any:
    """``json.loads`` of text from outside, its nesting bounded first (no RecursionError): BadText
    (a ValueError, as json's own errors are) when it nests deeper than ``MAX_DEPTH``."""
    if nesting_depth(text) > MAX_DEPTH:
        raise BadText(f"JSON nested deeper than {MAX_DEPTH} levels")
    return json.loads(text)
