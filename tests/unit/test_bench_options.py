"""The benchmarks' options: a value out of range is argparse's one line naming the option, before
anything runs (it used to be a ZeroDivisionError at the end, a traceback from SQLAlchemy, or a
run of nonsense such as a reconciliation of -1 records)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.options import duration, number, whole


@given(st.integers(-(10**400), 10**400))
def test_whole_takes_exactly_the_range(value: int) -> None:
    parse = whole(1, 1024)
    if 1 <= value <= 1024:
        assert parse(str(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=f"from 1 to 1024, not {value}"):
            parse(str(value))


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-0.5", "60000.1", "soon", ""])
def test_number_refuses_what_is_not_a_finite_number_in_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        number(0.0, 60_000.0)(text)
    assert number(0.0, 60_000.0)("60000") == 60_000.0


def test_duration_is_the_cli_s_own() -> None:
    assert duration("90d") == "90d"
    with pytest.raises(argparse.ArgumentTypeError, match="must be a duration like 90d"):
        duration("soon")


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["bare", "--events", "0"], "argument --events: from 1 to 10000000, not 0"),
        (["sb_bare", "--concurrency", "99999"], "argument --concurrency: from 1 to 1024, not 99999"),
        (["azure", "--receivers", "0"], "argument --receivers: from 1 to 16, not 0"),
        (["reconcile", "--records", "10", "--drift", "100"], "--drift: at most --records (10), not 100"),
        (["chaos", "--bus", "local-sqlite", "--fail-rate", "2"], "argument --fail-rate: from 0 to 1, not 2"),
        (["synclog", "--prune", "soon"], "argument --prune: must be a duration like 90d"),
        (
            ["synclog", "--url", "postgresql+psycopg://u:hunter2@db.example:port/x"],
            "--url is not a PostgreSQL URL",
        ),
        (
            ["synclog", "--url", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"],
            "cannot reach the database --url names:",
        ),
    ],
    ids=lambda value: " ".join(value[:3]) if isinstance(value, list) else None,
)
def test_a_bad_option_is_one_line_before_anything_runs(
    command: list[str], said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (each script's ``main``, its arguments as ``sys.argv``): argparse's exit is
    the same here as in a process of its own."""
    script = importlib.import_module(f"bench.{command[0]}")
    monkeypatch.setattr(sys, "argv", [f"{command[0]}.py", *command[1:]])
    with pytest.raises(SystemExit) as stopped:
        if "argv" in inspect.signature(script.main).parameters:
            script.main(command[1:])
        else:
            script.main()
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert stopped.value.code in (1, 2) and "Traceback" not in err, err
    assert len(errors) == 1 and said in errors[0], err
    assert out == "" and "hunter2" not in err
