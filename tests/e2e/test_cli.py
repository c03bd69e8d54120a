"""The CLI as a subprocess: configure, send, run until idle, read status and the sync log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import SECRET_KEY, TOKEN, Cli, envelope, jsonl
from worker.cli import common

OPEN_ENDPOINTS = {"CWI_PUBLISHER_ALLOW_PRIVATE": "true", "CWI_PUBLISHER_ALLOW_HTTP": "true"}


@pytest.fixture
def cli(migrated_db_url: str) -> Cli:
    return Cli(migrated_db_url)


def test_send_run_status_synclog(cli: Cli, sandbox_url: str, tmp_path: Path) -> None:
    cli.provision(sandbox_url, "acme")
    events = [envelope(n) for n in range(5)]
    events.append(envelope(1))  # the same envelope again: a duplicate
    events.append(
        envelope(9, data={"id": "acme-c9", "number": "9", "name": "Bad", "org_number": "123456789"})
    )
    events.append(envelope(10, client="nobody"))
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(events))
    assert "published 8 message(s)" in cli.run("send", str(path)).stdout
    assert cli.status()["active"] == 8

    cli.run("run", "--until-idle")

    status = cli.status()
    assert (status["active"], status["scheduled"], status["locked"]) == (0, 0, 0)
    assert status["dead_lettered"] == 2
    assert status["dead_lettered_by_reason"] == {"ProviderRejected": 1, "UnknownClient": 1}
    log = cli.synclog("--client", "acme")
    required = {
        "at",
        "message_id",
        "client_id",
        "provider",
        "direction",
        "entity",
        "cw_id",
        "external_id",
        "action",
        "detail",
    }
    assert all(required <= set(entry) for entry in log)
    created = [e for e in log if e["action"] == "created"]
    assert sorted(e["cw_id"] for e in created) == [f"acme-c{n}" for n in range(5)]
    assert [e["message_id"] for e in log if e["action"] == "duplicate"] == ["acme-e1"]
    assert [e["action"] for e in cli.synclog("--message", "acme-e9")] == ["pending", "failed"]


def test_send_is_all_or_nothing(cli: Cli, tmp_path: Path) -> None:
    bad = envelope(2)
    bad["data"]["name"] = ""
    text = jsonl([envelope(1), bad, envelope(3, type="customer.exploded")])
    result = cli.run("send", "-", input=text, check=False)
    assert result.returncode == 2
    assert "line 2: data.name:" in result.stderr
    assert "line 3: type:" in result.stderr
    assert cli.status()["active"] == 0

    array = json.dumps([envelope(1), {**envelope(2), "source": "cron"}])
    result = cli.run("send", "-", input=array, check=False)
    assert result.returncode == 2 and "index 1: source:" in result.stderr


def test_secrets_are_never_printed(cli: Cli, sandbox_url: str) -> None:
    cli.provision(sandbox_url, "acme")
    listed = cli.run("connections", "list").stdout + cli.run("connections", "list", "--json").stdout
    assert TOKEN not in listed and "token" in listed
    run = cli.run("connections", "test", "acme")
    assert run.stdout.startswith("OK") and TOKEN not in run.stdout + run.stderr
    assert SECRET_KEY not in run.stdout + run.stderr


def test_connection_test_reports_why_it_fails(cli: Cli, sandbox_url: str) -> None:
    cli.run("clients", "add", "acme")
    cli.run(
        "connections",
        "set",
        "acme",
        "generic_rest",
        "--base-url",
        sandbox_url,
        "--credential",
        "token=not-the-token-7q2",
    )
    result = cli.run("connections", "test", "acme", check=False)
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "not-the-token-7q2" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["connections", "set", "acme", "sap", "--base-url", "http://x"], "unknown provider 'sap'"),
        (
            ["connections", "set", "ghost", "generic_rest", "--base-url", "http://x"],
            "client 'ghost' does not exist",
        ),
        (
            ["connections", "set", "acme", "generic_rest", "--base-url", "ftp://x"],
            "it must start with http:// or https://",
        ),
        (
            ["connections", "set", "acme", "generic_rest", "--base-url", "http://x", "--setting", "novalue"],
            "--setting expects key=value",
        ),
        (["send", "/no/such/file.json"], "no such file"),
        (["connections", "test", "acme"], "has no connection"),
    ],
)
def test_errors_are_one_clear_line(cli: Cli, args: list[str], message: str) -> None:
    cli.run("clients", "add", "acme")
    result = cli.run(*args, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("source", ["/dev/zero", "big.jsonl", "-"])
def test_an_input_larger_than_the_bound_is_one_line_and_publishes_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """Read whole, /dev/zero (or a log file given by mistake) took the machine's memory."""
    monkeypatch.setattr(common, "MAX_INPUT_BYTES", 2**20)
    cli.run("clients", "add", "acme")
    big = jsonl([envelope(n) for n in range(5)]) + " " * 2**20  # valid, but past the bound
    (tmp_path / "big.jsonl").write_text(big)
    path = source if source != "big.jsonl" else str(tmp_path / source)
    result = cli.run("send", path, input=big, check=False)
    name = "standard input" if source == "-" else path
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"error: {name} is larger than 1 MiB: split it into smaller files",
    )
    assert cli.status()["active"] == 0


def test_send_refuses_an_event_dated_years_ahead_and_publishes_nothing(cli: Cli) -> None:
    cli.run("clients", "add", "acme")
    ahead = envelope(2, occurred_at="2062-11-23T10:00:00Z")  # a year mistyped
    result = cli.run("send", "-", input=jsonl([envelope(1), ahead]), check=False)
    assert result.returncode == 2
    assert "line 2: occurred_at 2062-11-23T10:00:00+00:00 is " in result.stderr
    assert "days ahead of this worker's clock (at most one)" in result.stderr
    assert cli.status()["active"] == 0


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
@pytest.mark.parametrize("command", [("db", "upgrade"), ("status",)])
def test_an_sqlite_database_in_memory_is_refused_with_what_to_do(url: str, command: tuple[str, ...]) -> None:
    """Each command had a new, empty one: `db upgrade` said it migrated it, `status` then said to
    run `db upgrade`."""
    result = Cli(url).run(*command, check=False)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"error: {url} is an SQLite database in memory, gone when the command ends: "
        "name a file (CWI_DATABASE_URL=sqlite:///cwi.db)",
    )


def test_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    result = Cli(f"sqlite:///{tmp_path / 'fresh.db'}").run("status", check=False)
    assert result.returncode == 1 and "cwi db upgrade" in result.stderr


def test_contracts_schema_is_json_schema(tmp_path: Path) -> None:
    schema = json.loads(Cli(f"sqlite:///{tmp_path / 'x.db'}").run("contracts", "schema").stdout)
    assert "discriminator" in json.dumps(schema) or "oneOf" in json.dumps(schema)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clients", "add", ""], "client id '' must be"),
        (["clients", "add", "ac me"], "client id 'ac me' must be"),
        (["clients", "add", "Acme AS!"], "client id 'Acme AS!' must be"),
        (["clients", "add", "globex", "--name", "G" * 256], "client name must be at most 255 characters"),
        (["clients", "add", "globex", "--name", "G\x1b[31m"], "without control characters"),
        (["connections", "set", "acme", "generic_rest", "--base-url", "http://"], "it names no host"),
        (
            ["connections", "set", "acme", "generic_rest", "--base-url", "http://erp example.com/"],
            "white space",
        ),
        (["connections", "set", "acme", "generic_rest", "--base-url", "http://[::1/x"], "IPv6"),
        (
            ["connections", "set", "acme", "generic_rest", "--base-url", "http://x/" + "a" * 1100],
            "longer than 1024 characters",
        ),
        (
            [
                "connections",
                "set",
                "acme",
                "generic_rest",
                "--base-url",
                "http://x",
                "--setting",
                "timeout_s=soon",
            ],
            "timeout_s",
        ),
    ],
    ids=[
        "empty id",
        "id with a space",
        "id with punctuation",
        "name too long (PostgreSQL's column refused it, SQLite kept it)",
        "name with a control character",
        "no host",
        "space in host",
        "bad ipv6",
        "base url longer than its column",
        "bad setting",
    ],
)
def test_bad_ids_urls_and_settings_are_refused_when_set(cli: Cli, args: list[str], message: str) -> None:
    cli.run("clients", "add", "acme", check=False)
    result = cli.run(*args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr


def test_run_refuses_to_start_when_the_key_cannot_read_a_connection(cli: Cli) -> None:
    cli.provision_directly("http://127.0.0.1:9", "acme", "globex")
    cli.run("send", "-", input=jsonl([envelope(1)]))
    result = cli.run("run", "--until-idle", check=False, CWI_SECRET_KEY="not-the-key")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot read the credentials of 2 connection(s)" in result.stderr
    assert "client 'acme'" in result.stderr and "client 'globex'" in result.stderr
    assert cli.status()["dead_lettered"] == 0 and cli.status()["active"] == 1, "nothing touched"


def test_run_logs_its_configuration_first_with_secrets_masked(cli: Cli) -> None:
    result = cli.run("run", "--until-idle", CWI_ADMIN_API_KEY="admin-key-123")
    first = json.loads(
        next(line for line in result.stdout.splitlines() + result.stderr.splitlines() if line.startswith("{"))
    )
    assert first["event"] == "configuration" and first["secret_key"] == "***"
    assert first["admin_api_key"] == "***" and "admin-key-123" not in result.stdout + result.stderr


def test_a_bad_service_bus_setting_stops_run_before_it_logs_or_waits_for_anything(cli: Cli) -> None:
    """The Service Bus's settings were read only when the bus was made: after the database wait and
    the configuration line, which said nothing of them."""
    result = cli.run("run", "--until-idle", check=False, CWI_BUS="azure", CWI_SERVICEBUS_RECEIVERS="0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stdout == "" and result.stderr.strip() == (
        "error: configuration error: CWI_SERVICEBUS_RECEIVERS: Input should be greater than or equal to 1"
    )


def test_listings_have_json_and_dead_letter_ids_are_shown_whole(cli: Cli) -> None:
    cli.run("clients", "add", "acme")
    assert json.loads(cli.run("clients", "list", "--json").stdout) == {"id": "acme", "name": "acme"}
    sent = json.loads(cli.run("send", "-", "--json", input=jsonl([envelope(1)])).stdout)  # no connection
    assert sent["published"] == 1 and sent["ids"] == ["acme-e1"]
    ran = json.loads(cli.run("run", "--until-idle", "--json").stdout.splitlines()[-1])
    assert ran["processed"] == 1
    listed = cli.run("dlq", "list", COLUMNS="60").stdout
    [letter] = json.loads(cli.run("dlq", "list", "--json").stdout)["messages"]
    assert letter["id"] in "".join(listed.split()), "the id whole (folded, never cut with …)"
    bad = cli.run("dlq", "list", "--reason", "NoSuchReason", check=False)
    assert bad.returncode == 2 and "not a dead-letter reason" in bad.stderr


def test_secrets_generate_a_key_and_rotate_every_connection_and_subscription_to_it(cli: Cli) -> None:
    cli.provision_directly("http://127.0.0.1:9", "acme", "globex")
    subscribe = ("subscriptions", "add", "acme", "http://127.0.0.1:9/hooks", "-e", "customer.*", "--json")
    sub_id = json.loads(cli.run(*subscribe, check=True, **OPEN_ENDPOINTS).stdout)["id"]
    new = cli.run("secrets", "generate-key").stdout.strip()
    assert len(new) == 44
    both = f"{new},{SECRET_KEY}"
    out = cli.run("secrets", "rotate", CWI_SECRET_KEY=both).stdout
    assert "2 connection(s) re-encrypted, 0 already current, 0 unreadable" in out
    assert "1 subscription secret(s) re-encrypted, 0 already current, 0 unreadable" in out
    again = cli.run("secrets", "rotate", CWI_SECRET_KEY=both).stdout
    assert "0 connection(s) re-encrypted, 2 already current" in again, "resumable, idempotent"
    assert "0 subscription secret(s) re-encrypted, 1 already current" in again
    listed = cli.run("connections", "list", "--json", CWI_SECRET_KEY=new).stdout.splitlines()
    assert [json.loads(line)["credentials"] for line in listed] == [["token"], ["token"]], "the new key alone"
    # The subscription's secret reads with the new key alone too (its deliveries are signed with it).
    cli.run("subscriptions", "rotate-secret", sub_id, CWI_SECRET_KEY=new)
    old_only = cli.run("connections", "list", "--json").stdout
    assert "cannot decrypt" in old_only
