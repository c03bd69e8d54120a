"""bench/synclog.py --cold: its command runs before each measurement, and a command that fails (not
root, another PostgreSQL layout) is one line naming it."""

from __future__ import annotations

import pytest

from bench.synclog import Cold
from config_db.database import make_engine


def test_cold_runs_its_command_and_reconnects(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        cold = Cold(engine, "true")
        cold()
        cold()
        assert cold.times == 2
        off = Cold(engine, None)
        off()
        assert off.times == 0
    finally:
        engine.dispose()


def test_a_failing_cold_command_is_one_line(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with pytest.raises(SystemExit) as stopped:
            Cold(engine, "echo 'Permission denied' >&2; exit 1")()
    finally:
        engine.dispose()
    message = str(stopped.value.code)
    assert message.startswith("--cold: ") and "failed: Permission denied (it needs root" in message
    assert "\n" not in message
