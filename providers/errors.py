"""Typed errors every provider raises; the worker turns them into retries or dead-letters."""

from __future__ import annotations

from contracts import DeadLetterReason


class ProviderError(Exception):
    """Base of the errors a provider may raise."""


class TransientError(ProviderError):
    """Worth retrying: timeouts, connection resets, 408, 429, 5xx. ``retry_after`` in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """Retrying cannot help; the message is dead-lettered with ``reason`` and this text."""

    reason: DeadLetterReason = DeadLetterReason.ProviderRejected

    def __init__(self, message: str, *, reason: DeadLetterReason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ProviderRejected(PermanentError):
    reason = DeadLetterReason.ProviderRejected


class MappingError(PermanentError):
    reason = DeadLetterReason.MappingError


class AuthenticationFailed(PermanentError):
    reason = DeadLetterReason.AuthenticationFailed


class NotSupported(PermanentError):
    reason = DeadLetterReason.NotSupported
