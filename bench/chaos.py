"""The chaos test at full size, by hand: thousands of events, about 25 SIGKILLs (tests/chaos/).

    .venv/bin/python bench/chaos.py --bus local-sqlite            # or local-postgres, azure, azure-sessions
    .venv/bin/python bench/chaos.py --bus azure --clients 40 --records 25 --kills 25 --seed 7

Prints one JSON object per run (the numbers tests/chaos/check.py judges) and exits 1 when the run
is not clean (anything lost, a double create, a stale write, a dead letter, a task that died
unseen). ``local-postgres`` needs ``--db-url`` (default: a database on 127.0.0.1:5432 it creates).
Like bench/azure.py, a script and not the product: it imports tests/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository root first; not this directory, whose azure.py would hide the Azure SDK.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from sqlalchemy import create_engine, text  # noqa: E402 - after the path

from bench.options import number, whole  # noqa: E402
from tests.chaos.check import assert_clean, report  # noqa: E402
from tests.chaos.plan import Size  # noqa: E402
from tests.chaos.run import BUSES, Chaos, run  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", choices=BUSES, required=True)
    parser.add_argument("--clients", type=whole(1, 10_000), default=40)
    parser.add_argument("--records", type=whole(1, 100_000), default=25, help="per client")
    parser.add_argument("--kills", type=whole(0, 1_000), default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fail-rate", type=number(0.0, 1.0), default=0.2)
    parser.add_argument(
        "--db-url", help="the configuration database (default: SQLite, or a new PostgreSQL one)"
    )
    parser.add_argument(
        "--receivers", type=int, default=1, help="CWI_SERVICEBUS_RECEIVERS of each worker (--bus azure, 1-16)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.receivers <= 16 or (args.receivers > 1 and args.bus != "azure"):
        parser.error("--receivers takes 1 to 16, and more than 1 only with --bus azure")
    chaos = Chaos(
        args.bus,
        Size(args.clients, args.records),
        args.kills,
        args.seed,
        args.fail_rate,
        waves=max(4, args.kills // 4),
        drain_timeout_s=900.0,
        receivers=args.receivers,
    )
    with tempfile.TemporaryDirectory(prefix="cwi-chaos-") as tmp:
        db_url, dropped = args.db_url, None
        if db_url is None and args.bus == "local-postgres":
            db_url, dropped = _postgres_database()
        db_url = db_url or f"sqlite:///{Path(tmp) / 'cwi.db'}"
        try:
            outcome = run(chaos, db_url, Path(tmp))
            numbers = report(outcome)
            print(json.dumps({"bus": args.bus, "clients": args.clients, **numbers}))
            try:
                assert_clean(numbers, outcome)
            except AssertionError as exc:
                print(f"NOT CLEAN: {exc}", file=sys.stderr)
                return 1
        finally:
            if dropped is not None:
                _drop(dropped)
    return 0


def _postgres_database() -> tuple[str, str]:
    name = f"cwi_chaos_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def _drop(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
