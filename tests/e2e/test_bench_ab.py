"""``bench/ab.py``: two revisions in interleaved pairs, each run on its own tree's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _ab(*args: str, scratch: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``bench/ab.py ARGS``; its worktree under ``scratch`` when given (TMPDIR)."""
    env = {**os.environ, "TMPDIR": str(scratch)} if scratch is not None else None
    return subprocess.run(
        [sys.executable, "bench/ab.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env
    )


@pytest.mark.slow
def test_a_pair_runs_each_side_once_and_leaves_no_worktree(tmp_path: Path) -> None:
    # This run's worktree only: the other tests here run ab.py too, perhaps at the same time
    # (xdist), and the repository's worktree list shows theirs while they run.
    proc = _ab("HEAD", "--pairs", "1", "--", "--events", "20", "--concurrency", "4", scratch=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["pair 1 HEAD", "pair 1 working tree"]
    summary = json.loads(lines[-1])
    assert summary["command"] == "cwi bench --events 20 --concurrency 4"
    assert summary["HEAD"]["median_events_per_s"] > 0
    assert summary["working tree"]["median_cpu_ms_per_event"] > 0
    assert len(summary["ratios"]) == 1
    assert summary["rev_ahead_in"] in ("0 of 1 pairs", "1 of 1 pairs")
    assert str(tmp_path) not in _git("worktree", "list", "--porcelain")
    assert list(tmp_path.iterdir()) == []


def test_each_side_runs_its_own_trees_code(tmp_path: Path) -> None:
    """The base revision's tree is what its runs import, not the installed working tree."""
    seen = tmp_path / "seen.txt"
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, sys, worker\n"
        "open(sys.argv[1], 'a').write(worker.__file__ + '\\n')\n"
        "print(json.dumps({'events_per_s': 1.0, 'cpu_ms_per_event': 1.0}))\n"
    )
    proc = _ab("HEAD", "--pairs", "1", "--script", str(probe), "--", str(seen))
    assert proc.returncode == 0, proc.stderr[-3000:]
    base, working = seen.read_text().splitlines()
    assert "cwi-ab-" in base and not base.startswith(str(ROOT))
    assert working == str(ROOT / "worker" / "__init__.py")


def test_a_failing_run_is_one_line_naming_why() -> None:
    proc = _ab("HEAD", "--pairs", "1", "--", "--events", "abc")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: -m worker.cli.main bench --events abc in ")
    assert "'--events'" in line


def test_an_unknown_revision_is_one_line() -> None:
    proc = _ab("no-such-revision-of-cwi", "--pairs", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: 'no-such-revision-of-cwi' is not a revision of this repository"
    assert "Traceback" not in proc.stderr
