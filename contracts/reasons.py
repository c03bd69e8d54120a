"""The closed set of dead-letter reason codes. Each member's docstring is what the README lists."""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    InvalidEnvelope = "InvalidEnvelope"
    """The message body is not a valid envelope or record; the description names each bad field."""

    UnknownClient = "UnknownClient"
    """No client, or no provider connection, is configured for the envelope's client id."""

    ConnectionDisabled = "ConnectionDisabled"
    """The client's provider connection exists but is switched off."""

    ProviderRejected = "ProviderRejected"
    """The ERP refused the record (a 4xx other than 404/408/429); the description is its own text."""

    MappingError = "MappingError"
    """The record cannot be mapped for this client; the description names the setting to add."""

    AuthenticationFailed = "AuthenticationFailed"
    """The ERP refused the connection's credentials, even after a token refresh."""

    NotSupported = "NotSupported"
    """The ERP does not support this entity or action (for example deleting an invoice)."""

    RetriesExhausted = "RetriesExhausted"
    """A transient failure (timeout, 5xx, 429) outlasted every in-process and delayed retry."""

    MaxDeliveryCountExceeded = "MaxDeliveryCountExceeded"
    """The message was delivered too many times without being settled (crashes, lost locks)."""


def describe_reasons() -> dict[str, str]:
    """Reason code → one-line explanation, taken from the member docstrings (used by the CLI)."""
    import ast
    import inspect
    import itertools

    source = inspect.getsource(DeadLetterReason)
    tree = ast.parse(source)
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if isinstance(stmt, ast.Assign) and isinstance(nxt, ast.Expr):
            name = stmt.targets[0].id  # type: ignore[attr-defined]
            out[name] = str(nxt.value.value)  # type: ignore[attr-defined]
    return out
