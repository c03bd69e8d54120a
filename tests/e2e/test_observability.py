"""Observability as an operator meets it: `cwi run` serving /healthz, /readyz and /metrics on its
own port (CWI_METRICS_PORT), a port in use said in one line, and `cwi send` starting traces that
travel in the messages' properties (CWI_TRACING=console prints the spans)."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import text

from config_db.database import make_engine
from tests.e2e.cli import Cli, envelope, jsonl


@pytest.fixture
def cli(migrated_db_url: str) -> Cli:
    return Cli(migrated_db_url)


# What is tested here is the process, not the database: SQLite only.
pytestmark = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


def _metrics_url(worker: subprocess.Popen[str]) -> str:
    """The address from the worker's "metrics served" log line (its port was 0: any free one)."""
    assert worker.stderr is not None
    for line in worker.stderr:
        if '"metrics served"' in line:
            url: str = json.loads(line)["url"]
            return url.removesuffix("/metrics")
    raise AssertionError(f"the worker ended (exit {worker.wait()}) without serving its metrics")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own local server
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_cwi_run_serves_health_readiness_and_labelled_metrics_on_its_own_port(
    cli: Cli, sandbox_url: str, tmp_path: Path
) -> None:
    cli.provision_directly(sandbox_url, "acme")
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl([envelope(n) for n in range(3)]))
    cli.run("send", str(path))
    worker = cli.start("run", CWI_METRICS_SAMPLE_S="0.1")
    try:
        base = _metrics_url(worker)
        created = 'cwi_worker_completed_total{client="acme",provider="generic_rest",result="created"} 3.0'
        empty = 'cwi_bus_messages{state="active"} 0.0'
        deadline = time.monotonic() + 60
        while not (created in (text := _get(base + "/metrics")[1]) and empty in text):
            assert worker.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.1)
        assert _get(base + "/healthz") == (200, '{"status":"ok"}')
        assert _get(base + "/readyz") == (200, '{"status":"ready"}')
        assert 'cwi_erp_requests_total{client="acme",provider="generic_rest",status="2xx"}' in text
        assert 'cwi_erp_request_seconds_count{provider="generic_rest"}' in text
        assert 'cwi_worker_echo_decisions_total{client="acme",decision="applied",direction="outbound"' in text
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err


def test_a_metrics_port_in_use_is_one_line_and_exit_1(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli.run("run", check=False, CWI_METRICS_PORT=str(port))
    assert proc.returncode == 1
    said = [line for line in proc.stderr.strip().splitlines() if not line.startswith("{")]  # not the log
    assert said == [
        f"error: CWI_METRICS_PORT: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process has it? set another port, 0 for any free one, or off)"
    ]


def test_cwi_send_starts_a_trace_per_message_carried_in_its_properties(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl([envelope(1), envelope(2)]))
    proc = cli.run_process("send", str(path), CWI_TRACING="console")  # tracing is set up per process
    spans = json.loads("[" + proc.stderr.replace("}\n{", "},\n{") + "]")
    assert [s["name"] for s in spans] == ["publish", "publish"]
    assert {s["attributes"]["cwi.message_id"] for s in spans} == {"acme-e1", "acme-e2"}
    assert len({s["context"]["trace_id"] for s in spans}) == 2, "a trace of its own for each event"
    engine = make_engine(cli.db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT properties FROM bus_messages")).all()
    engine.dispose()
    carried = {
        json.loads(r[0])["traceparent"] if isinstance(r[0], str) else r[0]["traceparent"] for r in rows
    }
    span_ids = {(s["context"]["trace_id"][2:], s["context"]["span_id"][2:]) for s in spans}
    assert {tuple(tp.split("-")[1:3]) for tp in carried} == span_ids  # 00-<trace>-<span>-01


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_otlp_endpoint_switches_tracing_on_and_the_spans_are_exported_there(
    cli: Cli, tmp_path: Path
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    collector = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "events.jsonl"
        path.write_text(jsonl([envelope(1)]))
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        cli.run_process("send", str(path), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="cwi-test")
    finally:
        collector.shutdown()
    [(where, body)] = _Collector.received  # flushed as the command exits
    request = ExportTraceServiceRequest.FromString(body)
    [resource] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    names = [span.name for scope in resource.scope_spans for span in scope.spans]
    assert (where, service, names) == ("/v1/traces", "cwi-test", ["publish"])
