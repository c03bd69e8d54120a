"""bench/run.sh: a set it does not have is named in one line before anything runs (a typo used to
run nothing and say nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_set_is_named_and_nothing_runs() -> None:
    before = (ROOT / "bench" / "results.jsonl").stat().st_mtime_ns
    result = subprocess.run(
        ["bash", "bench/run.sh", "lcoal"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "bench/run.sh: no set named 'lcoal' (one of: all, local, azure, reconcile, peers, scale)"
    )
    assert (ROOT / "bench" / "results.jsonl").stat().st_mtime_ns == before
