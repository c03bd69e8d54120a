"""`cwi webhooks url` and `cwi serve` as a user runs them: subprocesses, real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import queue
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from config_db import clients, webhooks
from config_db.database import make_engine
from config_db.migrate import upgrade
from config_db.secrets import SecretBox
from providers.tripletex.webhooks import signed_headers
from tests.e2e.cli import SECRET_KEY, Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """SQLite only: these tests are about the commands (the repository runs on both databases in
    tests/integration/test_config_db_webhooks.py), and each CLI start costs seconds."""
    url = f"sqlite:///{tmp_path / 'cwi.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return Cli(url)


def _issued(stdout: str) -> tuple[str, str]:
    url = re.search(r"^url: (\S+)$", stdout, re.M)
    secret = re.search(r"^secret: (\S+)$", stdout, re.M)
    assert url and secret, stdout
    return url.group(1), secret.group(1)


def _tripletex_client(cli: Cli, client: str = "acme") -> None:
    cli.run("clients", "add", client)
    cli.run(
        "connections",
        "set",
        client,
        "tripletex",
        "--base-url",
        "http://erp.invalid",
        "--credential",
        "token=t",
    )


def test_webhooks_url_shows_the_token_once_and_rotates_it(cli: Cli) -> None:
    _tripletex_client(cli)
    public = {"CWI_PUBLIC_URL": "https://hooks.example.com/"}
    url, secret = _issued(cli.run("webhooks", "url", "acme", check=True, **public).stdout)
    assert url.startswith("https://hooks.example.com/webhooks/tripletex/")

    again = cli.run("webhooks", "url", "acme", check=False, **public)
    assert again.returncode == 1
    assert "cannot be shown again" in again.stderr and "--rotate" in again.stderr

    new_url, same_secret = _issued(
        cli.run("webhooks", "url", "acme", "--rotate", check=True, **public).stdout
    )
    assert new_url != url and same_secret == secret
    engine = make_engine(cli.db_url)
    with engine.begin() as db:
        stored = clients.get_connection(db, "acme")
        assert stored is not None
        assert SecretBox(SECRET_KEY).decrypt(stored.credentials) == {"token": "t", "webhook_secret": secret}
        old_token = url.rsplit("/", 1)[1]
        assert webhooks.find_endpoint(db, old_token) is not None, "kept for the grace period"
        assert webhooks.find_endpoint(db, old_token, grace=dt.timedelta(0)) is None
        assert webhooks.find_endpoint(db, new_url.rsplit("/", 1)[1]) is not None
    engine.dispose()

    missing = cli.run("webhooks", "url", "nobody", check=False)
    assert missing.returncode == 1 and "has no ERP connection" in missing.stderr


@contextmanager
def serving(cli: Cli, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`cwi serve --port 0 ARGS` until the block ends; yields its base URL and the process."""
    proc = cli.start("serve", "--port", "0", *args)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr

    def pump() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=30)
            if found := re.search(r"listening on (http://\S+)", line):
                break
        yield found.group(1), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own local server
        return resp.status, resp.read().decode()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serve_answers_healthz_and_publishes_a_signed_webhook(cli: Cli) -> None:
    _tripletex_client(cli)
    url, secret = _issued(cli.run("webhooks", "url", "acme").stdout)
    path = url.removeprefix("http://127.0.0.1:8080")
    body = json.dumps({"subscriptionId": 1, "event": "customer.update", "id": 7, "value": {"id": 7}}).encode()
    with serving(cli) as (base, proc):
        assert _get(base + "/healthz") == (200, '{"status":"ok"}')
        assert _get(base + "/readyz")[0] == 200
        assert _post(base + path, body, signed_headers(body, secret, idempotency_key="e1")) == 202
        assert _post(base + path, body, signed_headers(body, "wrong", idempotency_key="e2")) == 401
        accepted = 'cwi_webhooks_accepted_total{client="acme",provider="tripletex"} 1.0'
        assert accepted in _get(base + "/metrics")[1]
        port = base.rsplit(":", 1)[1]
        taken = cli.run("serve", "--port", port, check=False)
        assert taken.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert proc.returncode == 0

    assert cli.status()["active"] == 1


def test_serve_with_the_worker_shows_its_metrics_and_stops_cleanly(cli: Cli) -> None:
    with serving(cli, "--worker") as (base, proc):
        metrics = _get(base + "/metrics")[1]
        assert "# TYPE cwi_worker_received_total counter" in metrics  # labelled: no series before a message
        assert "cwi_worker_in_flight 0.0" in metrics
    assert proc.returncode == 0
