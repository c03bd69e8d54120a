"""Helpers every CLI command shares: settings, migrated-database check, one-line errors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from config_db.database import make_engine
from config_db.migrate import current_revision, head_revision
from worker import tracing
from worker.logging import configure
from worker.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """An error shown to the user as one line, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def settings() -> Settings:
    try:
        s = load_settings()
    except SettingsError as exc:
        fail(f"configuration error: {exc}")
    configure(fmt=s.log_format, level=s.log_level)
    try:
        tracing.configure(s)
    except tracing.TracingUnavailable as exc:
        fail(f"configuration error: {exc}")
    return s


def require_migrated(s: Settings) -> None:
    engine = make_engine(s.database_url, pool_size=0 if "sqlite" in s.database_url else 1)
    try:
        current = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the user
        fail(f"cannot open the database {engine.url!r}: {exc.__class__.__name__}: {exc}".splitlines()[0])
    finally:
        engine.dispose()
    if current != head_revision():
        fail(f"the database {engine.url!r} is not migrated (at {current}): run `cwi db upgrade`")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """``["k=v", …]`` → dict; a pair without '=' is an error naming the option."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"{option} expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def exit_with(code: int) -> NoReturn:
    sys.stdout.flush()
    raise typer.Exit(code)
