"""``cwi clients import``: hundreds of clients and connections from one file, in one transaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from config_db.database import make_engine
from tests.e2e.cli import SECRET_KEY, Cli


@pytest.fixture
def cli(migrated_db_url: str) -> Cli:
    return Cli(migrated_db_url)


def _line(i: int, **extra: object) -> str:
    entry = {
        "client_id": f"c{i}",
        "name": f"Client {i}",
        "provider": "generic_rest",
        "base_url": f"https://erp{i}.example.com/cw",
        "credentials": {"token": f"tok-{i}-secret"},
        **extra,
    }
    return json.dumps(entry)


def test_hundreds_of_clients_and_connections_in_one_command(cli: Cli, tmp_path: Path) -> None:
    cli.run("clients", "add", "c0", "--name", "Kept name")  # an existing client keeps its name
    path = tmp_path / "clients.jsonl"
    path.write_text("\n".join(_line(i) for i in range(300)) + "\n")
    done = json.loads(cli.run("clients", "import", str(path), "--json").stdout)
    assert done == {"clients_added": 299, "connections_saved": 300}
    listed = [json.loads(line) for line in cli.run("connections", "list", "--json").stdout.splitlines()]
    assert len(listed) == 300
    first = next(c for c in listed if c["client_id"] == "c7")
    assert first["base_url"] == "https://erp7.example.com/cw" and first["credentials"] == ["token"]
    clients = {
        c["id"]: c["name"] for c in map(json.loads, cli.run("clients", "list", "--json").stdout.splitlines())
    }
    assert clients["c0"] == "Kept name" and clients["c299"] == "Client 299"
    with make_engine(cli.db_url).connect() as conn:
        stored = conn.execute(
            text("SELECT credentials FROM provider_connections WHERE client_id = 'c7'")
        ).scalar()
        audited = conn.execute(
            text("SELECT count(*) FROM sync_log WHERE direction = 'operator' AND action = 'connection_saved'")
        ).scalar()
    assert "tok-7-secret" not in str(stored), "credentials are encrypted at rest"
    assert audited == 300
    # Again, with a change: settings and credentials merge into what is stored (connections set's rule).
    path.write_text(_line(7, settings={"timeout_s": "5"}, credentials={}) + "\n")
    cli.run("clients", "import", str(path))
    [again] = [
        json.loads(x) for x in cli.run("connections", "list", "--json").stdout.splitlines() if '"c7"' in x
    ]
    assert again["settings"] == {"timeout_s": "5"} and again["credentials"] == ["token"]
    assert SECRET_KEY not in cli.run("connections", "list").stdout


def test_one_bad_line_imports_nothing_and_every_problem_is_named(cli: Cli, tmp_path: Path) -> None:
    lines = [
        _line(1),
        _line(2, base_url="ftp://nowhere"),
        "not json",
        _line(3, provider="no_such_erp"),
        _line(4, settings={"timeout_s": "soon"}),
        _line(1),
        json.dumps({"client_id": "bad id!", "provider": "generic_rest"}),
        json.dumps({"client_id": "c9", "name": "N" * 256, "provider": "generic_rest"}),
    ]
    path = tmp_path / "clients.jsonl"
    path.write_text("\n".join(lines))
    parsed = cli.run("clients", "import", str(path), check=False)
    assert parsed.returncode == 2
    assert "line 3:" in parsed.stderr and "line 6: client 'c1' is already on line 1" in parsed.stderr
    assert "line 7:" in parsed.stderr and "nothing was imported" in parsed.stderr
    assert "line 8: client name must be at most 255 characters" in parsed.stderr
    path.write_text("\n".join(lines[:2] + lines[3:5]))
    checked = cli.run("clients", "import", str(path), check=False)
    assert checked.returncode == 2
    for problem in ("line 2: the base URL", "line 3: unknown provider", "line 4: 1 setting(s) need fixing"):
        assert problem in checked.stderr, checked.stderr
    assert "timeout_s" in checked.stderr
    assert cli.run("clients", "list", "--json").stdout.strip() == "", "nothing was written"


def test_credentials_need_the_key(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "clients.jsonl"
    path.write_text(_line(1))
    refused = cli.run("clients", "import", str(path), check=False, CWI_SECRET_KEY="")
    assert refused.returncode == 2 and "CWI_SECRET_KEY is not set" in refused.stderr
    assert "tok-1-secret" not in refused.stderr + refused.stdout


def test_a_file_that_is_not_utf8_text_or_nests_without_end_is_named_in_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    """Bytes that are not UTF-8, and a line nested deeper than JSON tools should follow: the same
    one-line answers as `cwi send` (contracts/jsontext.py), no traceback, nothing imported; the mapping
    file of `cwi connections import` is read the same way."""
    binary, deep, folder = tmp_path / "latin1.jsonl", tmp_path / "deep.jsonl", tmp_path / "folder"
    binary.write_bytes(_line(1).replace("Client 1", "Café").encode("latin-1"))
    deep.write_text(_line(1) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    folder.mkdir()
    expected = {
        binary: f"{binary}: the input is not UTF-8 text: byte 0xe9 at line 1 column",
        deep: "line 2: JSON nested deeper than 64 levels",
        folder: f"cannot read {folder}: Is a directory",
    }
    for path, said in expected.items():
        refused = cli.run("clients", "import", str(path), check=False)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and "unexpected error" not in refused.stderr
        mapping = cli.run("connections", "import", "c1", str(path), check=False)
        assert mapping.returncode == 2 and "unexpected error" not in mapping.stderr, mapping.stderr
        assert len(mapping.stderr.strip().splitlines()) == 1, mapping.stderr
    assert cli.run("clients", "list", "--json").stdout.strip() == "", "nothing was written"
