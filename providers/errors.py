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


class DependencyMissing(TransientError):
    """The record refers to a parent (a project's customer, an invoice's customer or project) that
    is not in the ERP yet: usually the parent's own message is still on its way or in retry, so
    this one waits instead of dead-lettering. ``parent`` names the missing record
    ("customer number 10002"), as in "customer number 10002 is not in Tripletex yet".
    """

    def __init__(self, parent: str, erp: str, *, retry_after: float | None = 60.0) -> None:
        super().__init__(f"{parent} is not in {erp} yet", retry_after=retry_after)
        self.parent = parent


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
