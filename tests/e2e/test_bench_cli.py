"""``cwi bench --cli``: the worker is ``cwi run`` in a process of its own, stopped once the queue is
drained; the figures are that process's."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.e2e.cli import Cli


def test_cli_worker_processes_every_event_and_reports_its_own_process(sqlite_url: str) -> None:
    cli = Cli(sqlite_url)
    proc = cli.run("bench", "--events", "40", "--concurrency", "4", "--cli")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["worker"] == "cwi run"
    assert (result["events"], result["concurrency"]) == (40, 4)
    # The child's own accounting: a Python process with the worker loaded, and CPU it spent.
    assert result["rss_mb"] > 30
    assert result["cpu_ms_per_event"] > 0


def test_cli_on_another_bus_is_one_line(sqlite_url: str) -> None:
    proc = Cli(sqlite_url).run("bench", "--events", "5", "--cli", "--bus", "azure", check=False)
    assert proc.returncode == 2
    assert "--cli runs one `cwi run` on the local bus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bench_leaves_no_scratch_folder_behind(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its SQLite database (tens of MB at a few thousand events) goes with the run."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    proc = Cli(sqlite_url).run("bench", "--events", "20", "--concurrency", "4")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["events"] == 20
    assert list(scratch.iterdir()) == []
