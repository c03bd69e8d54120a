"""schemathesis's own command, with the kit's hooks, against the sandbox ERP must find nothing: the
document's examples and its links (the stateful phase) work for a user who runs schemathesis
themselves. The configuration is the kit's (worker/conformance/fuzz.py); its coverage and fuzzing
phases, the same configuration through the library, run in test_kit.py (the kit runs every phase):
here they doubled the suite's longest test (1,550 coverage requests, about 12 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.interface import DOCUMENT_NAME
from tests.conformance.conftest import TOKEN
from worker.conformance.fuzz import ACCEPTED_FOR_VALID_DATA

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_schemathesis_run_with_stateful_testing_finds_no_issue(sandbox_url: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    statuses = ", ".join(f'"{s}"' for s in ACCEPTED_FOR_VALID_DATA)
    config.write_text(f"[checks.positive_data_acceptance]\nexpected-statuses = [{statuses}]\n")
    schemathesis = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(config),
            "run",
            str(ROOT / "contracts" / DOCUMENT_NAME),
            "--url",
            sandbox_url,
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "--phases",
            "examples,stateful",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--no-color",
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "worker.conformance.hooks"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "Stateful" in output and "API Links" in output, output[-4000:]
    assert "No issues found" in output, output[-4000:]
