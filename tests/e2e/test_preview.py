"""``cwi preview``: the requests a client's provider would send, secrets redacted, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import TOKEN, Cli, envelope, jsonl

INVOICE = {
    "id": "inv-1",
    "number": "20001",
    "customer_id": "cus-1",
    "customer_number": "10001",
    "invoice_date": "2026-11-20",
    "due_date": "2026-12-04",
    "currency": "NOK",
    "lines": [{"description": "Work", "quantity": "2", "unit_price": "100.00", "vat_rate": "25"}],
}

TRIPLETEX_URL = "http://127.0.0.1:9/v2"  # nothing listens there: preview must not call it


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = Cli(f"sqlite:///{tmp_path / 'cwi.db'}")
    cli.run("db", "upgrade")
    return cli


def add_tripletex(cli: Cli, consumer_token: str, employee_token: str, *options: str) -> None:
    """Client acme with a Tripletex connection where nothing listens, through the CLI as a user would."""
    cli.run("clients", "add", "acme")
    tokens = (f"consumer_token={consumer_token}", f"employee_token={employee_token}")
    credentials = [arg for token in tokens for arg in ("--credential", token)]
    cli.run("connections", "set", "acme", "tripletex", "--base-url", TRIPLETEX_URL, *options, *credentials)


def test_generic_rest_preview(cli: Cli) -> None:
    cli.provision("http://127.0.0.1:9", "acme")  # nothing listens there: preview must not call it
    events = [envelope(1), envelope(2, type="invoice.created", data=INVOICE)]
    out = cli.run("preview", "-", "--client", "acme", input=jsonl(events)).stdout
    assert "PUT http://127.0.0.1:9/v1/customer/acme-c1" in out
    assert "PUT http://127.0.0.1:9/v1/invoice/inv-1" in out
    assert "Authorization: ***" in out and "Idempotency-Key: acme-e2" in out
    assert TOKEN not in out
    body = out.split("PUT http://127.0.0.1:9/v1/invoice/inv-1")[1].split("\n\n")[0]
    assert json.loads(body[body.index("{") :])["lines"][0]["vat_rate"] == "25"


def test_tripletex_preview_redacts_and_shows_the_vendor_flow(cli: Cli) -> None:
    add_tripletex(cli, "ct-secret-1", "et-secret-2", "--setting", "vat_code.25=3")
    event = envelope(1, type="invoice.created", data=INVOICE)
    out = cli.run("preview", "-", "--client", "acme", input=jsonl([event])).stdout
    assert "POST http://127.0.0.1:9/v2/order" in out
    assert "ct-secret-1" not in out and "et-secret-2" not in out


def test_preview_names_a_missing_mapping(cli: Cli) -> None:
    add_tripletex(cli, "a", "b")
    event = envelope(1, type="invoice.created", data=INVOICE)
    result = cli.run("preview", "-", "--client", "acme", input=jsonl([event]), check=False)
    assert result.returncode == 1 and "vat_code.25" in result.stderr


def test_preview_rejects_invalid_input(cli: Cli) -> None:
    cli.provision("http://127.0.0.1:9", "acme")
    result = cli.run("preview", "-", "--client", "acme", input='{"id": 1}', check=False)
    assert result.returncode == 2 and "invalid:" in result.stderr
