"""Parsing JSON that arrives from outside, with bounds on size, nesting depth and number length.

`json.loads` alone answers a valid but hostile document with RecursionError (thousands of nested `[`) or ValueError
(an integer of more than 4,300 digits, CPython's int-to-str guard): both would become a 500. `parse_json` refuses
such documents up front with `JsonRejected`, which callers map to a 4xx. No I/O, no logging of the document.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

MAX_DEPTH = 32  # a notice is two levels deep; nothing a sender means needs more
MAX_NUMBER_LENGTH = 40  # characters of one number literal: far beyond any id or amount, far below 4,300 digits
# Strings are removed before counting brackets, so a "[" inside a string never counts as nesting.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonRejected(ValueError):
    """The document is not JSON, or is JSON beyond a bound; `reason` is safe to show to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def nesting_depth(document: bytes) -> int:
    """The deepest bracket nesting outside strings (C-speed passes: regex, translate, accumulate)."""
    brackets = _STRING.sub(b'""', document).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate((_DEPTH_STEP[b] for b in brackets), initial=0))


def _number(limit: int, cast: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        if len(text) > limit:
            raise JsonRejected(f"a number is longer than {limit} characters")
        return cast(text)

    return parse


def _no_constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not JSON")


def parse_json(
    document: bytes,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    max_number_length: int = MAX_NUMBER_LENGTH,
) -> Any:
    """The parsed document, or JsonRejected naming the first bound it breaks (size, depth, number, syntax)."""
    if len(document) > max_bytes:
        raise JsonRejected(f"body is larger than {max_bytes} bytes")
    if nesting_depth(document) > max_depth:
        raise JsonRejected(f"body is nested deeper than {max_depth} levels")
    try:
        return json.loads(
            document,
            parse_int=_number(max_number_length, int),
            parse_float=_number(max_number_length, float),
            parse_constant=_no_constant,
        )
    except JsonRejected:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):  # JSONDecodeError is a ValueError
        raise JsonRejected("body is not valid JSON") from None
