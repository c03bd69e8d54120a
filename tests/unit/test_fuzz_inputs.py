"""Hostile input never escapes as anything but the typed rejection: the envelope parser and every
operator view of a dead letter, over arbitrary bytes and arbitrary JSON (hypothesis)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import InvalidEnvelopeError, parse_envelope
from worker.buses.base import DeadLetter
from worker.operators.letters import Letter, grouped

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)

FIELDS = ["id", "client_id", "type", "source", "occurred_at", "record_id", "sequence", "data", "external"]
envelope_like = st.fixed_dictionaries(
    {},
    optional={name: json_values for name in FIELDS}
    | {
        "type": st.sampled_from(["customer.created", "invoice.updated", "project.deleted", "x.y", ""]),
        "source": st.sampled_from(["frontend", "webhook", "replay", "operator", "nope"]),
        "occurred_at": st.sampled_from(["2026-11-23T10:00:00Z", "0", "1700000000", "", "2026-13-01T00:00Z"]),
    },
)


def _parse(body: bytes) -> None:
    try:
        parse_envelope(body)
    except InvalidEnvelopeError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_with_the_typed_error(body: bytes) -> None:
    _parse(body)


@FAST
@given(json_values)
def test_arbitrary_json_is_rejected_with_the_typed_error(value: Any) -> None:
    _parse(json.dumps(value).encode())


@FAST
@given(envelope_like)
def test_envelope_shaped_json_parses_or_is_rejected_naming_fields(value: dict[str, Any]) -> None:
    _parse(json.dumps(value).encode())


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    for depth in (1000, 100_000):
        _parse(b"[" * depth + b"]" * depth)
        _parse(b'{"data":' * depth + b"1" + b"}" * depth)


def _letter(body: bytes) -> Letter:
    now = dt.datetime.now(dt.UTC)
    return Letter.of(DeadLetter("t-1", body, "acme", {}, "InvalidEnvelope", "why", 1, now, now, 1))


@FAST
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_every_operator_view_of_a_dead_letter_reads_any_body(body: bytes) -> None:
    letter = _letter(body)
    summary = letter.summary()
    assert summary["id"] == "t-1" and isinstance(json.dumps(summary), str)
    assert grouped([letter])[0]["count"] == 1
    for value in (letter.client_id, letter.type, letter.envelope_id):
        assert value is None or isinstance(value, str)


def test_a_dead_letter_nested_100000_deep_is_read_as_raw() -> None:
    letter = _letter(b"[" * 100_000 + b"]" * 100_000)
    assert letter.envelope is None and letter.summary()["client_id"] == "acme"
