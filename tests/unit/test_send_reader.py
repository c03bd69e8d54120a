"""``cwi send``'s reader: JSON lines split on \\n only, UTF-8 (a BOM allowed), bounded nesting, and
every bad record named by its line and column; never an exception but the typed one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.jsontext import BadText, decode
from worker.publishing import read_envelopes


def envelope(n: int, name: str = "Acme") -> str:
    return json.dumps(
        {
            "id": f"e{n}",
            "client_id": "acme",
            "type": "customer.created",
            "source": "frontend",
            "occurred_at": "2026-12-03T10:00:00Z",
            "data": {"id": f"c{n}", "number": str(n), "name": name},
        },
        ensure_ascii=False,
    )


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x1c", "\x0b"])
def test_a_raw_line_separator_inside_a_string_does_not_split_a_json_line(separator: str) -> None:
    text = envelope(1, f"Acme{separator}AS") + "\n" + envelope(2) + "\n"
    good, bad = read_envelopes(text)
    assert bad == [] and [env.id for env, _ in good] == ["e1", "e2"]
    assert good[0][0].data is not None and separator in good[0][0].data.name  # type: ignore[union-attr]


def test_a_byte_order_mark_is_dropped_and_crlf_lines_read() -> None:
    data = b"\xef\xbb\xbf" + (envelope(1) + "\r\n" + envelope(2) + "\r\n").encode()
    good, bad = read_envelopes(decode(data))
    assert bad == [] and len(good) == 2


def test_text_that_is_not_utf8_names_the_byte_and_its_place() -> None:
    data = (envelope(1) + "\n").encode() + b'{"id": "\xff"}\n'
    with pytest.raises(BadText, match=r"byte 0xff at line 2 column 9"):
        decode(data)


def test_nesting_100000_deep_is_one_bad_record_not_a_crash() -> None:
    good, bad = read_envelopes("[" * 100_000 + "]" * 100_000)
    assert good == [] and [str(b) for b in bad] == ["input: JSON nested deeper than 64 levels"]


def test_an_array_with_a_trailing_comma_names_the_real_position() -> None:
    text = "[\n  " + envelope(1) + ",\n  " + envelope(2) + ",\n]\n"
    good, bad = read_envelopes(text)
    assert good == [] and len(bad) == 1
    assert str(bad[0]).startswith("line 4 column 1: invalid JSON")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_input_is_read_or_rejected_with_the_typed_errors(data: bytes) -> None:
    try:
        text = decode(data)
    except BadText as exc:
        assert str(exc).startswith("the input is not UTF-8 text")
        return
    good, bad = read_envelopes(text)
    assert all(str(b) for b in bad)
    assert all(env.id for env, _ in good)
