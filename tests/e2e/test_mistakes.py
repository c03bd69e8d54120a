"""Every command against a table of configuration mistakes: one clear line on stderr, an exit code
(2 for usage and configuration, 1 for runtime failures), never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.cli import Cli
from tests.servicebus_peer import EntityOptions, ServiceBusPeer

COMMANDS = [
    ("status",),
    ("synclog",),
    ("clients", "list"),
    ("clients", "add", "acme"),
    ("connections", "test", "acme"),
    ("dlq", "list"),
    ("db", "upgrade"),
    ("send", "-"),
    ("run", "--until-idle"),
    ("preview", "-", "--client", "acme"),
]

NEED_THE_BUS = {"status", "dlq", "send", "run"}
ENVELOPE = (
    '{"id": "e1", "client_id": "acme", "type": "customer.created", "source": "frontend", '
    '"occurred_at": "2026-12-03T10:00:00Z", "data": {"id": "c1", "number": "1", "name": "A"}}\n'
)

MISTAKES = {
    "garbage database URL": ({"CWI_DATABASE_URL": "garbage"}, 2, "CWI_DATABASE_URL"),
    "database URL whose port is no number": (
        {"CWI_DATABASE_URL": "postgresql+psycopg://u:hunter2@db.example:fivefour/x"},
        2,
        "CWI_DATABASE_URL is not a database URL this installation can use: its port is not a number",
    ),
    "unreachable database": (
        {"CWI_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x", "CWI_STARTUP_WAIT_S": "0"},
        1,
        "Connection refused",
    ),
    "missing driver": ({"CWI_DATABASE_URL": "mssql+pyodbc://x/y"}, 2, "pip install 'cwi[mssql]'"),
    "bad log level": ({"CWI_LOG_LEVEL": "verbose"}, 2, "CWI_LOG_LEVEL"),
    "azure without settings": ({"CWI_BUS": "azure"}, 2, "CWI_SERVICEBUS"),
    "bad retry delays": ({"CWI_RETRY_DELAYS": "soon"}, 2, "CWI_RETRY_DELAYS"),
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    url = f"sqlite:///{tmp_path_factory.mktemp('mistakes') / 'cwi.db'}"
    cli = Cli(url)
    cli.run("db", "upgrade")
    yield cli


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_mistake_gets_one_line_and_the_right_exit_code(
    cli: Cli, command: tuple[str, ...], mistake: str
) -> None:
    env, code, words = MISTAKES[mistake]
    if mistake == "azure without settings" and command[0] not in NEED_THE_BUS:
        pytest.skip("this command needs no bus")
    result = cli.run(*command, input=ENVELOPE, check=False, **env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert "hunter2" not in result.stderr + result.stdout, "a URL's password is never shown"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert words in errors[0], errors[0]
    assert result.returncode == code, (result.returncode, errors[0])


def test_the_sandbox_on_a_busy_port_is_one_line(cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cli.run("sandbox", "--port", str(port), check=False)
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(port) in line or "in use" in line
    assert result.returncode == 1


def test_preview_without_the_secret_key_is_one_line(cli: Cli) -> None:
    cli.run("clients", "add", "globex", check=False)
    cli.run(
        "connections",
        "set",
        "globex",
        "generic_rest",
        "--base-url",
        "http://127.0.0.1:9",
        "--credential",
        "token=t",
    )
    envelope = (
        '{"id": "e1", "client_id": "globex", "type": "customer.created", "source": "frontend", '
        '"occurred_at": "2026-12-03T10:00:00Z", "data": {"id": "c1", "number": "1", "name": "G"}}'
    )
    result = cli.run("preview", "-", "--client", "globex", input=envelope, check=False, CWI_SECRET_KEY="")
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "CWI_SECRET_KEY" in line and result.returncode == 2


@pytest.mark.parametrize("args", [("synclog", "prune", "--help"), ("synclog", "--json"), ("clients", "list")])
def test_a_reader_that_leaves_early_stops_the_command_quietly(cli: Cli, args: tuple[str, ...]) -> None:
    """``cwi … | head -1``: the pipe's reader is gone before the command writes (its read end closed
    first), so every write fails with EPIPE; the command stops without an error line or a traceback."""
    cli.run("clients", "add", "acme", check=False)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli.main", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=cli.env(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 1


def test_a_missing_service_bus_queue_stops_the_worker_at_start_in_one_line(cli: Cli) -> None:
    with ServiceBusPeer(entities={"cwi": EntityOptions()}) as peer:
        azure = {
            "CWI_BUS": "azure",
            "CWI_SERVICEBUS_QUEUE": "no-such-queue",
            "CWI_SERVICEBUS_CONNECTION_STRING": peer.connection_string,
            "CWI_METRICS_PORT": "off",
        }
        result = cli.run("run", check=False, **azure)  # without --until-idle: it would run on
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: Service Bus configuration:"), errors[0]
    assert "no-such-queue" in errors[0]
    assert result.returncode == 2


HUGE = "99999999999999999999"  # past every integer column and C int


@pytest.mark.parametrize(
    ("command", "option", "limit"),
    [
        (("synclog", "--limit", HUGE), "--limit", "100000"),
        (("dlq", "list", "--limit", HUGE), "--limit", "100000"),
        (("run", "--until-idle", "--concurrency", HUGE), "--concurrency", "1024"),
        (("bench", "--events", HUGE), "--events", "10000000"),
        (("bench", "--clients", HUGE), "--clients", "100000"),
        (("sandbox", "--latency-ms", HUGE), "--latency-ms", "60000"),
        (("conformance", "http://127.0.0.1:1", "--token", "t", "--examples", HUGE), "--examples", "1000"),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, tuple) else None,
)
def test_a_number_past_what_a_command_can_take_is_refused_before_it_starts(
    cli: Cli, command: tuple[str, ...], option: str, limit: str
) -> None:
    """Not an OverflowError from the database mid-run, nor an hour spent making a billion events."""
    result = cli.run(*command, check=False)
    said = " ".join(result.stderr.replace("│", " ").split())
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"Invalid value for '{option}'" in said and f"less than or equal to {limit}" in said, said


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("notaurl", "--database-url is not a database URL (like postgresql+psycopg://"),
        ("postgresql+psycopg://u:hunter2@db.example:fivefour/x", "--database-url is not a database URL"),
        ("mssql+pyodbc://u:hunter2@db.example/x", "the benchmark runs on PostgreSQL or SQLite, not mssql"),
    ],
)
def test_the_benchmarks_database_url_is_checked_before_it_starts(cli: Cli, url: str, said: str) -> None:
    result = cli.run("bench", "--events", "10", "--database-url", url, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert said in result.stderr and "hunter2" not in result.stderr + result.stdout, result.stderr


def test_the_conformance_kits_generated_cases_are_bounded_in_every_door() -> None:
    """The CLI's option, the admin API and the console's form go through ``examples_of`` and ``Options``."""
    from worker.conformance.kit import MAX_EXAMPLES, Options
    from worker.operators.definitions import DefinitionError, Definitions

    assert Definitions.examples_of(" 20 ") == 20 and Definitions.examples_of(MAX_EXAMPLES) == MAX_EXAMPLES
    for bad in (MAX_EXAMPLES + 1, -1, True, 2.5, "9999999", "ten", None):
        with pytest.raises(
            DefinitionError, match=f"examples must be a whole number from 0 to {MAX_EXAMPLES}"
        ):
            Definitions.examples_of(bad)
    with pytest.raises(ValueError, match="examples"):
        Options(url="http://x", token="t", examples=MAX_EXAMPLES + 1)
