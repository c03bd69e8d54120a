"""``cwi conformance`` on the command line: the report, --json, and exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conformance.conftest import TOKEN
from worker.cli.main import main


def cwi(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["cwi", "conformance", *args])
    with pytest.raises(SystemExit) as caught:
        main()
    return int(caught.value.code or 0)


def test_a_conforming_endpoint_exits_0_with_a_json_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sandbox_url: str
) -> None:
    code = cwi(
        monkeypatch, sandbox_url, "--token", TOKEN, "--examples", "0", "--json", "--entities", "customer"
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["summary"]["failed"] == 0
    assert report["subject"] == "cw-integration"


def test_a_failing_endpoint_exits_1_and_names_the_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sandbox_url: str
) -> None:
    code = cwi(monkeypatch, sandbox_url + "/cw", "--token", TOKEN, "--examples", "0")
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  probe" in out and "expected HTTP 200, got 404" in out and "rule:" in out
    assert TOKEN not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://erp", "--token", "t"], "URL must be the http(s) base URL"),
        (["http://erp", "--token", "t", "--entities", "order"], "--entities takes a comma-separated subset"),
        (["http://erp", "--token", "t", "--webhook-listen", "127.0.0.1:9"], "go together"),
        (
            ["http://erp", "--token", "t", "--webhook-listen", "x:9", "--webhook-secret", "nope!"],
            "--webhook-secret: webhook secret must be",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cwi(monkeypatch, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_without_the_extra_it_names_the_pip_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith(("worker.conformance.", "schemathesis"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "schemathesis", None)  # import schemathesis → ModuleNotFoundError
    assert cwi(monkeypatch, "http://erp", "--token", "t") == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: cwi conformance needs the conformance extra: pip install 'cwi[conformance]'"


@pytest.mark.parametrize("wait", ["inf", "601"])
def test_a_webhook_wait_past_ten_minutes_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], wait: str
) -> None:
    """``inf`` waited for ever for webhooks an ERP without them never sends."""
    assert cwi(monkeypatch, "http://erp", "--token", "t", "--webhook-wait", wait) == 2
    err = " ".join(w for w in capsys.readouterr().err.split() if w != "│")  # typer's box, unfolded
    assert "'--webhook-wait'" in err and "less than or equal to 600" in err
