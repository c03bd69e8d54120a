"""Two revisions of cwi compared in interleaved pairs: how every finding in docs/performance.md is
measured (a 2-core VM's speed drifts by a third within an hour, so runs of one side after the other
compare nothing).

    .venv/bin/python bench/ab.py BASE [--against REV] [--pairs 4] [--script bench/azure.py] -- ARGS

Each pair runs ``cwi bench ARGS`` (or ``python SCRIPT ARGS``, e.g. ``bench/azure.py --sessions …``)
once on BASE and once on REV (default: this working tree, uncommitted changes included), the order
alternating from pair to pair. Each revision other than the working tree is checked out into a
temporary git worktree, removed afterwards; a revision's code is the one imported (``PYTHONPATH``
and the working directory are its tree; the environment's installed packages are shared). Prints one
line per run and then, per side, the median events/s and CPU ms/event, and the pairs' ratios
(REV / BASE). Exit 2 with one line for a revision git does not know or a run that fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Failed(Exception):
    """Told in one line; exit 2."""


@contextlib.contextmanager
def checked_out(rev: str | None) -> Iterator[Path]:
    """The tree of ``rev`` (None: this working tree, as it is)."""
    if rev is None:
        yield ROOT
        return
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if known.returncode != 0:
        raise Failed(f"{rev!r} is not a revision of this repository")
    with tempfile.TemporaryDirectory(prefix="cwi-ab-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(tree), known.stdout.strip()],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=ROOT,
                check=False,
                capture_output=True,
            )


def run_once(tree: Path, script: str | None, args: Sequence[str]) -> dict[str, float]:
    command = [sys.executable, *((script,) if script else ("-m", "worker.cli.main", "bench")), *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise Failed(f"{' '.join(command[1:])} in {tree} failed: {_last_words(done.stderr)}")
    result = json.loads(lines[-1])
    return {
        "events_per_s": float(result["events_per_s"]),
        "cpu_ms_per_event": float(result["cpu_ms_per_event"]),
    }


def _last_words(stderr: str) -> str:
    """What a failed run said last, on one line: the text of a usage error's box, or its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines and lines[-1].startswith("╰"):
        top = max((i for i, line in enumerate(lines) if line.startswith("╭")), default=-1)
        return " ".join(" ".join(line.strip("│ ").split()) for line in lines[top + 1 : -1])
    return lines[-1] if lines else "no output"


def compare(
    base: str, against: str | None, pairs: int, script: str | None, args: Sequence[str]
) -> dict[str, object]:
    names = {"base": base, "rev": against or "working tree"}
    runs: dict[str, list[dict[str, float]]] = {"base": [], "rev": []}
    with checked_out(base) as base_tree, checked_out(against) as rev_tree:
        trees = {"base": base_tree, "rev": rev_tree}
        for pair in range(pairs):
            order = ("base", "rev") if pair % 2 == 0 else ("rev", "base")
            for side in order:
                got = run_once(trees[side], script, args)
                runs[side].append(got)
                shown = f"{got['events_per_s']:.1f} events/s, {got['cpu_ms_per_event']:.3f} CPU ms/event"
                print(f"pair {pair + 1} {names[side]}: {shown}", flush=True)
    summary: dict[str, object] = {"command": " ".join([script or "cwi bench", *args]), "pairs": pairs}
    for side in ("base", "rev"):
        summary[names[side]] = {
            "median_events_per_s": round(statistics.median(r["events_per_s"] for r in runs[side]), 1),
            "median_cpu_ms_per_event": round(statistics.median(r["cpu_ms_per_event"] for r in runs[side]), 3),
        }
    ratios = [r["events_per_s"] / b["events_per_s"] for r, b in zip(runs["rev"], runs["base"], strict=True)]
    summary["ratios"] = [round(x, 3) for x in ratios]
    summary["rev_ahead_in"] = f"{sum(x > 1 for x in ratios)} of {pairs} pairs"
    return summary


def main(argv: list[str]) -> int:
    own, passed = _split(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against (a commit, branch or tag)")
    parser.add_argument("--against", help="the other revision (default: this working tree)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--script", help="a script of the tree to run instead of cwi bench (bench/azure.py)")
    options = parser.parse_args(own)
    if options.pairs < 1:
        parser.error("--pairs must be at least 1")
    try:
        summary = compare(options.base, options.against, options.pairs, options.script, passed)
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our own arguments, and the benchmark's after ``--`` (argparse would take those for ours)."""
    at = argv.index("--") if "--" in argv else len(argv)
    return argv[:at], argv[at + 1 :]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
