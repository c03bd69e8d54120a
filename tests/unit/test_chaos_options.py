"""The chaos harness's options reach its workers, and a bad one is refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.chaos.plan import Size
from tests.chaos.run import Chaos, _worker_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("receivers", [1, 4])
def test_each_azure_worker_gets_the_runs_receivers(receivers: int) -> None:
    peer: Any = SimpleNamespace(
        connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v"
    )
    chaos = Chaos("azure", Size(2, 2), kills=0, receivers=receivers)
    env = _worker_env(chaos, "sqlite:///chaos.db", peer)
    assert env["CWI_BUS"] == "azure"
    assert env["CWI_SERVICEBUS_RECEIVERS"] == str(receivers)


@pytest.mark.parametrize(
    "args", [["--bus", "azure", "--receivers", "0"], ["--bus", "local-sqlite", "--receivers", "2"]]
)
def test_bench_chaos_refuses_receivers_it_cannot_use(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "bench/chaos.py", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--receivers" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
