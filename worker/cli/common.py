"""Helpers the commands share: settings read per call, the migrated-database check, output, arguments."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from worker.cli.errors import CliError, fail
from worker.extras import MissingExtraError
from worker.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from config_db.clients import StoredConnection
    from worker.db import Database
    from worker.operators.actors import Actor

T = TypeVar("T")


@functools.cache
def _console(name: str) -> Console:
    from rich.console import Console

    return Console(stderr=name == "err_console", soft_wrap=True)


def __getattr__(name: str) -> Console:
    """``console`` and ``err_console``: rich's Consoles, made when a command first prints with one.
    ``cwi run`` never does, and its process stays without rich (1.8 MB of its peak memory)."""
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _console(name)


# console and err_console come from __getattr__ above.
__all__ = ["CliError", "fail"]


MAX_INPUT_BYTES = 256 * 1024 * 1024
"""The most a command reads from its input file: every record is held, validated, before any is
used. Read whole, ``/dev/zero`` or a log file given by mistake took the machine's memory."""


def read_input(path: str) -> str:
    """The text of file ``path`` (``-``: stdin) as a command reads it: UTF-8 (a byte-order mark
    dropped), at most ``MAX_INPUT_BYTES``; a file that cannot be read, is larger, or holds bytes that
    are not UTF-8 ends the command in one line."""
    from pathlib import Path

    from contracts.jsontext import BadText, decode

    name = "standard input" if path == "-" else path
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    elif not Path(path).exists():
        fail(f"no such file: {path}", 2)
    else:
        try:
            with Path(path).open("rb") as file:
                data = file.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:  # a folder, no permission
            fail(f"cannot read {path}: {exc.strerror or exc}", 2)
    if len(data) > MAX_INPUT_BYTES:
        fail(f"{name} is larger than {MAX_INPUT_BYTES // 2**20} MiB: split it into smaller files", 2)
    try:
        return decode(data)
    except BadText as exc:
        fail(f"{name}: {exc}", 2)


def settings() -> Settings:
    """The settings from the environment (and .env) as they are now, logging (and tracing) configured
    by them."""
    from worker import tracing
    from worker.logging import configure

    try:
        s = load_settings()
    except SettingsError as exc:
        fail(f"configuration error: {exc}", 2)
    configure(fmt=s.log_format, level=s.log_level)
    tracing.configure(s)  # CWI_TRACING / OTEL_EXPORTER_OTLP_ENDPOINT; a missing extra is one line
    return s


def require_migrated(s: Settings) -> None:
    """Stop unless the database is at the schema this version of cwi was built for."""
    from config_db.database import make_url
    from config_db.migrate import HEAD_REVISION
    from worker.bootstrap import database_revision

    shown = repr(make_url(s.database_url))  # the password masked
    try:
        current = database_revision(s)
    except MissingExtraError:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the user
        fail(f"cannot open the database {shown}: {exc.__class__.__name__}: {exc}".splitlines()[0])
    if current != HEAD_REVISION:
        refuse_in_memory(s)  # `cwi db upgrade` would migrate a database gone when it ends
        fail(f"the database {shown} is not migrated (at {current}): run `cwi db upgrade`")


def refuse_in_memory(s: Settings) -> None:
    """Stop when the database is SQLite in memory: each command would have a new, empty one."""
    from config_db.database import make_url

    url = make_url(s.database_url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        fail(
            f"{s.database_url} is an SQLite database in memory, gone when the command ends: "
            "name a file (CWI_DATABASE_URL=sqlite:///cwi.db)",
            2,
        )


def start_long_running(s: Settings, *, worker: bool) -> None:
    """For ``run`` and ``serve``: wait for the database (CWI_STARTUP_WAIT_S), check its schema, refuse
    to start a worker whose CWI_SECRET_KEY cannot read a connection's credentials, and log the
    configuration in force (secrets masked) as the first line."""
    from worker.bootstrap import ready_to_start, startup_summary
    from worker.logging import get_logger
    from worker.runtime import tune_gc

    summary = startup_summary(s)  # checks the settings read only now (the Service Bus's)
    problems = run_async(ready_to_start(s, worker=worker))
    require_migrated(s)
    if problems:
        for problem in problems:
            _console("err_console").print(f"  {problem}", markup=False, highlight=False)
        fail(
            f"CWI_SECRET_KEY cannot read the credentials of {len(problems)} connection(s): "
            "set the key they were stored with (several may be given, newest first)",
            2,
        )
    get_logger().info("configuration", **summary)
    tune_gc()


def cli_actor() -> Actor:
    """Who acts from the command line: the OS user, with every right (whoever runs ``cwi`` on the
    server already holds the database and the key); journalled with each change it makes."""
    from worker.operators.actors import Actor
    from worker.operators.dlq import default_operator

    return Actor(default_operator(), "admin", via="cli")


def connection_of(db: Database, client_id: str) -> StoredConnection:
    """The client's stored connection, or stop saying how to add one."""
    from functools import partial

    from config_db import clients

    stored = db.run_sync(partial(clients.get_connection, client_id=client_id))
    if stored is None:
        fail(f"client {client_id!r} has no connection: add one with `cwi connections set`")
    return stored


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
