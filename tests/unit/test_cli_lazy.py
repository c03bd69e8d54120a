"""The CLI loads each command on first use: ``cwi --help`` imports none of them, and the registry's
short help is each command's own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from config_db.migrate import HEAD_REVISION, head_revision
from providers.registry import KINDS
from worker.cli.connections import KINDS_HELP
from worker.cli.main import COMMANDS, app

HEAVY = ("sqlalchemy", "aiohttp", "alembic", "cryptography", "providers", "uvicorn", "starlette")


def _imported_by(*args: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``cwi ARGS``."""
    script = (
        "import io, json, sys, contextlib\n"
        "from worker.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({list(args)!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("args", [["--help"], ["-h"], [], ["contracts", "schema"], ["--version"]])
def test_help_version_and_the_schema_import_no_database_http_or_provider(args: list[str]) -> None:
    modules = _imported_by(*args)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"cwi {' '.join(args)} imported {heavy[:10]}"
    commands = {m.split(".")[2] for m in modules if m.startswith("worker.cli.")}
    assert commands <= {"main", "lazy", "errors", "contracts"}, f"command modules loaded: {commands}"


def test_the_help_lists_every_command_with_its_own_short_help() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for name, entry in COMMANDS.items():
        assert name in result.output
        command = entry.load(name)
        own = " ".join((command.help or "").split("\n\n")[0].split())
        assert entry.help == own, f"the registry's help of {name!r} is not the command's own"


def test_version_and_short_help_option() -> None:
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("cwi ")
    assert runner.invoke(app, ["dlq", "-h"]).exit_code == 0


def test_the_head_revision_constant_is_alembics_head() -> None:
    head = head_revision()
    assert head == HEAD_REVISION, f"a new migration: set HEAD_REVISION = {head!r} in config_db/migrate.py"


def test_the_connections_help_names_every_provider_kind() -> None:
    assert all(kind in KINDS_HELP for kind in KINDS)


def _every_command(command: object, path: str) -> list[tuple[str, str]]:
    found = [(path, getattr(command, "help", None) or "")]
    for name, sub in getattr(command, "commands", {}).items():
        found += _every_command(sub, f"{path} {name}")
    return found


def test_every_help_paragraph_is_one_line_for_the_terminal_to_wrap() -> None:
    # Typer prints a paragraph's line breaks as they are in the docstring (all but the first
    # paragraph's, and in a group's list of commands): mid-sentence breaks in a narrow terminal.
    helps = [h for name, entry in COMMANDS.items() for h in _every_command(entry.load(name), name)]
    assert len(helps) > len(COMMANDS)  # the groups' subcommands are there too
    broken = [path for path, text in helps if any("\n" in p for p in text.split("\n\n"))]
    assert broken == [], f"help paragraphs with line breaks: {broken}"
    prune = dict(helps)["synclog prune"]
    assert prune.count("\n\n") == 1 and "CWI_SYNCLOG_RETENTION" in prune
