"""``cwi connections test`` as a user runs it, against each fake ERP served from a background thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cli import SECRET_KEY, Cli
from tests.fakes.serve import KINDS, ServedFake, serve_in_thread

# The database side of `cwi connections test` runs on both engines in test_cli.py; here the subject
# is each ERP, so one SQLite file (migrated by Alembic, as a user's) keeps the subprocesses few.
pytestmark = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=KINDS)
def served(request: pytest.FixtureRequest) -> Iterator[ServedFake]:
    with serve_in_thread(request.param) as fake:
        yield fake


def test_connection_to_the_erp_is_ok(migrated_db_url: str, served: ServedFake) -> None:
    served.provision(migrated_db_url, SECRET_KEY, served.credentials)

    run = Cli(migrated_db_url).run("connections", "test", "acme")

    assert run.stdout.startswith("OK:"), run.stdout
    # Rich wraps the line at 80 columns when stdout is not a terminal.
    shown = " ".join(run.stdout.split())
    assert shown.startswith(f"OK: {served.kind} at {served.base_url}")
    assert "changes we make carry author " in shown  # the identity echo suppression compares
    secrets = [served.credentials[name] for name in served.wrong_credentials]
    assert all(secret not in run.stdout + run.stderr for secret in secrets if secret)


def test_bad_credentials_fail_without_showing_them(migrated_db_url: str, served: ServedFake) -> None:
    served.provision(migrated_db_url, SECRET_KEY, {**served.credentials, **served.wrong_credentials})

    run = Cli(migrated_db_url).run("connections", "test", "acme", check=False)

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"FAILED: acme ({served.kind})" in run.stderr
    secrets = [value for value in served.wrong_credentials.values() if value]
    assert secrets and all(secret not in run.stdout + run.stderr for secret in secrets)
