"""``cwi bench --bus azure`` against the Service Bus test peer (tests/servicebus_peer).

The product never imports tests/, so this script does it: it starts the peer in this process,
then runs ``cwi bench --bus azure [args]`` as a child process with ``CWI_BUS=azure`` and the peer's
connection string. ``--sessions`` benches a session queue (``CWI_SERVICEBUS_SESSIONS=true``);
``--receivers N`` sets ``CWI_SERVICEBUS_RECEIVERS`` (default 1); ``--rtt-ms N`` puts a relay adding N ms
to every round trip between the worker and the peer (bench/rtt.py: a namespace's distance).
Run from the repository root: ``.venv/bin/python bench/azure.py [--sessions] --events 2000``.
Prints the bench's JSON object; bench/run.sh records it in bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.options import number, whole  # noqa: E402 - after the path
from bench.rtt import delayed  # noqa: E402 - after the path
from tests.servicebus_peer import EntityOptions, ServiceBusPeer  # noqa: E402 - after the path

QUEUE = "cwi-bench"


def main(argv: list[str]) -> int:
    # Our two options; everything else goes to `cwi bench`, which checks it.
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sessions", action="store_true")
    parser.add_argument(
        "--receivers", type=whole(1, 16), default=1, help="CWI_SERVICEBUS_RECEIVERS of the worker"
    )
    parser.add_argument(
        "--rtt-ms", type=number(0.0, 10_000.0), default=0.0, help="round trip added to the peer's"
    )
    own, args = parser.parse_known_args(argv)
    sessions, receivers = own.sessions, str(own.receivers)
    entities = {QUEUE: EntityOptions(lock_duration_s=60, requires_session=sessions)}
    with ServiceBusPeer(entities=entities) as peer, delayed(peer.connection_string, rtt_ms=own.rtt_ms) as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CWI_SERVICEBUS_")},
            "CWI_BUS": "azure",
            "CWI_SERVICEBUS_QUEUE": QUEUE,
            "CWI_SERVICEBUS_CONNECTION_STRING": url,
            "CWI_SERVICEBUS_SESSIONS": "true" if sessions else "false",
            "CWI_SERVICEBUS_RECEIVERS": receivers,
        }
        command = [sys.executable, "-m", "worker.cli.main", "bench", "--bus", "azure", *args]
        return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
