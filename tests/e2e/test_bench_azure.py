"""``bench/azure.py``: ``cwi bench --bus azure`` against the Service Bus test peer, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_azure_bench_processes_every_event_through_the_peer() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/azure.py", "--events", "40", "--concurrency", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["bus"], result["events"], result["concurrency"]) == ("azure", 40, 8)
    assert result["events_per_s"] > 0
