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
