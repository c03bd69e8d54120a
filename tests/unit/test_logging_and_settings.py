"""Secrets never reach the log output; CWI_* settings parse and fail with the variable's name."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.logging import SecretRedactor, configure, get_logger, redactor
from worker.settings import SettingsError, load_settings


def test_registered_secret_never_reaches_the_log_output() -> None:
    out = io.StringIO()
    configure(fmt="json", stream=out)
    secret = "tok-9f8e7d6c5b4a"
    redactor.register(secret)
    log = get_logger(message_id="m1", client_id="acme", provider="generic_rest")
    log.warning("push failed", error=f"401 for Bearer {secret}", outcome="failed")
    log.info("auth", authorization=f"Bearer {secret}", nested={"client_secret": "x", "ok": [secret]})
    text = out.getvalue()
    assert secret not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["error"] == "401 for Bearer ***"
    assert (first["message_id"], first["client_id"], first["provider"], first["outcome"]) == (
        "m1",
        "acme",
        "generic_rest",
        "failed",
    )
    assert second["authorization"] == "***"
    assert second["nested"] == {"client_secret": "***", "ok": ["***"]}


def test_the_azure_sdks_records_are_one_redacted_line_without_a_traceback() -> None:
    out = io.StringIO()
    configure(fmt="json", stream=out)
    secret = "sas-5e4d3c2b1a09"
    redactor.register(secret)
    sdk = logging.getLogger("azure.servicebus.aio._async_utils")
    try:
        raise TimeoutError(f"link did not open ({secret})")
    except TimeoutError:
        sdk.warning("Handler cleanup did not complete; preserving the original error.", exc_info=True)
    sdk.debug("frame received")  # below the SDK's level: not written

    [line] = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "Handler cleanup did not complete; preserving the original error."
    assert (event["level"], event["logger"]) == ("warning", "azure.servicebus.aio._async_utils")
    assert event["error"] == "TimeoutError: link did not open (***)"
    assert "Traceback" not in out.getvalue() and secret not in out.getvalue()


def test_short_values_are_not_registered() -> None:
    r = SecretRedactor()
    r.register("ab", None, "")
    assert r.scrub("ab cd") == "ab cd"


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CWI_RETRY_DELAYS", "5, 10,20")
    monkeypatch.setenv("CWI_CONCURRENCY", "64")
    s = load_settings()
    assert s.retry_delays == (5.0, 10.0, 20.0)
    assert (s.concurrency, s.max_delivery_count, s.lock_duration_s, s.bus) == (64, 10, 60.0, "local")
    assert s.database_url == "sqlite:///cwi.db"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CWI_RETRY_DELAYS", "1,soon", "CWI_RETRY_DELAYS: must be comma-separated seconds"),
        ("CWI_CONCURRENCY", "0", "CWI_CONCURRENCY: "),
        ("CWI_BUS", "kafka", "CWI_BUS: "),
        # inf passed gt=0 and ended the worker with an OverflowError; nan delays were taken.
        ("CWI_LOCK_DURATION_S", "inf", "CWI_LOCK_DURATION_S: Input should be a finite number"),
        ("CWI_SHUTDOWN_GRACE_S", "Infinity", "CWI_SHUTDOWN_GRACE_S: Input should be a finite number"),
        ("CWI_RETRY_DELAYS", "60,nan", "CWI_RETRY_DELAYS: delays must be seconds up to a year"),
        ("CWI_LOCK_DURATION_S", "60000", "CWI_LOCK_DURATION_S: Input should be less than or equal to 300"),
        # 1e300 s was an OverflowError at start (a timedelta) or at the first message (a timestamp).
        ("CWI_ECHO_WINDOW_S", "1e300", "CWI_ECHO_WINDOW_S: Input should be less than or equal to"),
        ("CWI_RECORD_LEASE_S", "1e300", "CWI_RECORD_LEASE_S: Input should be less than or equal to"),
        ("CWI_RETRY_DELAYS", "60,1e300", "CWI_RETRY_DELAYS: delays must be seconds up to a year"),
        ("CWI_MAX_DELIVERY_COUNT", "10" * 20, "CWI_MAX_DELIVERY_COUNT: Input should be less than or equal"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_the_start_up_line_shows_the_service_bus_settings_with_the_connection_string_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.bootstrap import startup_summary

    assert "servicebus_receivers" not in startup_summary(load_settings()), "the local bus: none"
    monkeypatch.setenv("CWI_BUS", "azure")
    monkeypatch.setenv("CWI_SERVICEBUS_QUEUE", "orders")
    monkeypatch.setenv("CWI_SERVICEBUS_RECEIVERS", "4")
    secret = "Endpoint=sb://ns.example/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0LXZhbHVl"
    monkeypatch.setenv("CWI_SERVICEBUS_CONNECTION_STRING", secret)
    shown = startup_summary(load_settings())
    assert (shown["servicebus_queue"], shown["servicebus_receivers"]) == ("orders", 4)
    assert shown["servicebus_connection_string"] == "***" and "c2VjcmV0" not in json.dumps(shown)


def test_structlog_loads_without_richs_tracebacks_and_rich_still_loads_for_the_cli() -> None:
    """A fresh interpreter (the module table is the point): structlog, imported with the worker,
    leaves rich's traceback module and pygments out; rich itself still imports for the CLI."""
    import subprocess
    import sys

    probe = (
        "import sys, worker.logging, structlog.dev\n"
        "print('rich.traceback' in sys.modules, 'pygments' in sys.modules, structlog.dev.rich is None)\n"
        "import rich.console, rich.table\n"
        "print(rich.console.Console is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "True", "True"]


def _masked_by_hand(values: list[str], text: str) -> str:
    """Every stretch covered by an occurrence of a value (overlapping occurrences joined) masked."""
    spans = sorted(
        (i, i + len(v))
        for v in {v for v in values if len(v) >= 4}
        for i in range(len(text))
        if text.startswith(v, i)
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, done = [], 0
    for start, end in merged:
        out += [text[done:start], "***"]
        done = end
    return "".join(out) + text[done:]


@settings(max_examples=300)
@given(
    values=st.lists(st.text(alphabet="ab", min_size=3, max_size=6), max_size=5),
    text=st.text(alphabet="abx", max_size=40),
)
def test_every_occurrence_of_a_registered_value_is_masked(values: list[str], text: str) -> None:
    redactor_ = SecretRedactor()
    redactor_.register(*values)
    assert redactor_.scrub(text) == _masked_by_hand(values, text)


def test_values_registered_after_a_scrub_are_masked_too() -> None:
    redactor_ = SecretRedactor()
    assert redactor_.scrub("nothing registered") == "nothing registered"
    tokens = [f"tok-{i:04d}-secret" for i in range(500)]
    for token in tokens:  # one at a time, as connections are first used
        redactor_.register(token)
    assert (
        redactor_.scrub(f"401 for {tokens[7]}; retried with {tokens[499]}.")
        == "401 for ***; retried with ***."
    )
    redactor_.register("late-credential")
    assert redactor_.scrub("Bearer late-credential") == "Bearer ***"
