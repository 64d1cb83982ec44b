"""The bounded JSON parser: documents within the bounds parse as json.loads would; beyond them, JsonRejected."""

from __future__ import annotations

import json

import pytest

from gateway.untrusted_json import JsonRejected, nesting_depth, parse_json


@pytest.mark.parametrize(
    ("document", "depth"),
    [
        pytest.param(b"1", 0, id="scalar"),
        pytest.param(b'{"a": [1, {"b": 2}]}', 3, id="mixed"),
        pytest.param(b'{"a": "[[[[{{{{"}', 1, id="brackets-in-a-string"),
        pytest.param(b'["\\"[[[", []]', 2, id="escaped-quote-in-a-string"),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(document: bytes, depth: int) -> None:
    assert nesting_depth(document) == depth


def test_a_document_within_the_bounds_parses_like_json_loads() -> None:
    document = json.dumps({"order_number": "1001", "status": 2, "x": [1.5, None, True, "ü"]}).encode()
    assert parse_json(document, max_bytes=1000) == json.loads(document)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param(b"[" * 33 + b"]" * 33, "nested deeper than 32", id="depth"),
        pytest.param(b"1" * 41, "longer than 40", id="integer"),
        pytest.param(b"[1." + b"5" * 40 + b"]", "longer than 40", id="float"),
        pytest.param(b"[NaN]", "NaN is not JSON", id="nan"),
        pytest.param(b"[Infinity]", "Infinity is not JSON", id="infinity"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(b"[1,]", "not valid JSON", id="syntax"),
        pytest.param(b" " * 101, "larger than 100 bytes", id="size"),
    ],
)
def test_a_document_beyond_a_bound_is_rejected_with_a_reason(document: bytes, reason: str) -> None:
    with pytest.raises(JsonRejected) as caught:
        parse_json(document, max_bytes=100)
    assert reason in caught.value.reason
