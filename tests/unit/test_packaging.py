"""Package hygiene a user meets: settings from .env, a missing extra named with the line to run,
the typing marker in every package."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker import bootstrap
from worker.cli.main import app
from worker.extras import MissingExtraError
from worker.settings import ENV_FILE_VARIABLE, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_settings_read_the_env_file_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "cwi.env"
    env_file.write_text("CWI_CONCURRENCY=7\nCWI_QUEUE=from-the-file\nCWI_SERVICEBUS_QUEUE=q\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    monkeypatch.setenv("CWI_QUEUE", "from-the-environment")
    s = load_settings()
    assert (s.concurrency, s.queue) == (7, "from-the-environment")


def test_the_default_env_file_is_dot_env_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# comments, export and quotes too\n\nexport CWI_QUEUE=q\nCWI_CONCURRENCY='9' # 9\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_FILE_VARIABLE, raising=False)
    assert (load_settings().concurrency, load_settings().queue) == (9, "q")
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")  # empty: no file at all
    assert load_settings().concurrency == 16


def test_a_named_env_file_that_is_not_there_is_a_configuration_error_not_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in CWI_ENV_FILE ran the worker on sqlite:///cwi.db, a new database beside the real one."""
    monkeypatch.chdir(tmp_path)
    for named in (str(tmp_path / "prod.env"), str(tmp_path)):
        monkeypatch.setenv(ENV_FILE_VARIABLE, named)
        result = CliRunner().invoke(app, ["clients", "list"])
        assert result.exit_code == 2
        assert result.output == (
            f"error: configuration error: CWI_ENV_FILE: {named} is not a file (empty: no .env file)\n"
        )
    assert not (tmp_path / "cwi.db").exists(), "no database made on the defaults"
    monkeypatch.delenv(ENV_FILE_VARIABLE)
    (tmp_path / ".env").mkdir()  # the default file's absence (or a folder by its name) is no error
    assert load_settings().concurrency == 16


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"CWI_QUEUE=\xff\xfe\n", ".env: not UTF-8 text (byte 10)"),
        # python-dotenv skipped such a line with a warning naming no file: its setting silently unset
        (
            b"# the queue\n\nexport CWI_QUEUE=q\nCWI_DATABASE_URL sqlite:///x.db\n",
            ".env, line 4: not NAME=value (nor a comment)",
        ),
    ],
    ids=["not utf-8 (was: unexpected error: UnicodeDecodeError)", "a line that is not a setting"],
)
def test_an_env_file_that_cannot_be_read_as_settings_is_one_line_naming_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, said: str
) -> None:
    (tmp_path / ".env").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_FILE_VARIABLE, raising=False)
    result = CliRunner().invoke(app, ["status"])
    assert (result.exit_code, result.output) == (2, f"error: configuration error: {said}\n")


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql+psycopg://cwi@db/cwi", "psycopg", "postgres"),
        ("mssql+pyodbc://cwi@dsn", "pyodbc", "mssql"),
    ],
)
def test_a_database_without_its_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
    with pytest.raises(
        MissingExtraError, match=re.escape(f"needs the {extra} extra: pip install 'cwi[{extra}]'")
    ):
        bootstrap.make_engine(load_settings(database_url=url))


def test_the_azure_bus_without_the_azure_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("worker.buses.azure")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, so that it imports the SDK again
    monkeypatch.setitem(sys.modules, "azure.servicebus", None)
    s = load_settings(bus="azure", database_url="sqlite://")
    with pytest.raises(
        MissingExtraError, match=re.escape("CWI_BUS=azure needs the azure extra: pip install 'cwi[azure]'")
    ):
        bootstrap.make_bus(s, bootstrap.make_database(s))


def test_the_cli_answers_a_missing_extra_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    env = {"CWI_DATABASE_URL": "postgresql+psycopg://cwi@db/cwi", "CWI_LOG_FORMAT": "json"}
    result = CliRunner().invoke(app, ["clients", "list"], env=env)
    assert result.exit_code == 2  # a configuration problem (README: exit codes)
    assert result.stderr.strip().splitlines() == [
        "error: the database postgresql+psycopg needs the postgres extra: pip install 'cwi[postgres]'"
    ]


@pytest.mark.parametrize("package", ["contracts", "config_db", "providers", "worker"])
def test_every_package_is_marked_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
