"""The one error a command raises to stop with a one-line message (printed by the root group)."""

from __future__ import annotations

from typing import NoReturn


class CliError(Exception):
    """An error shown to the user as one line, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


USAGE, RUNTIME = 2, 1
_SERVICE_BUS_SETUP = frozenset(
    {
        "MessagingEntityNotFoundError",
        "MessagingEntityDisabledError",
        "ServiceBusAuthenticationError",
        "ServiceBusAuthorizationError",
        "ClientAuthenticationError",
    }
)


def explain(exc: BaseException) -> tuple[str, int]:
    """What a command's uncaught error means to the user, as one line and an exit code (2: usage
    and configuration, 1: a runtime failure)."""
    from worker.extras import MissingExtraError

    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, MissingExtraError):
        return str(exc), USAGE
    name = type(exc).__name__
    module = type(exc).__module__
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if name in ("SettingsError", "SecretKeyError", "CredentialsUnreadable"):
        return f"configuration error: {first}", USAGE
    if name == "DatabaseUnavailable":
        return first, RUNTIME
    if module.startswith("sqlalchemy"):
        if name in ("ArgumentError", "NoSuchModuleError"):
            return f"CWI_DATABASE_URL is not a database URL this installation can use: {first}", USAGE
        detail = str(getattr(exc, "orig", None) or first).strip().splitlines()
        return f"database error: {name}: {detail[0] if detail else ''}"[:400], RUNTIME
    if module.startswith("azure."):  # by name: the azure extra may not be installed
        if name in _SERVICE_BUS_SETUP:
            return f"Service Bus configuration: {first} (check CWI_SERVICEBUS_*)", USAGE
        return f"Service Bus error: {name}: {first}", RUNTIME
    if isinstance(exc, OSError):
        return f"{name}: {first or exc.strerror or ''}", RUNTIME
    return f"unexpected error: {name}: {first}", RUNTIME
