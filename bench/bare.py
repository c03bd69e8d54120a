"""The bare asyncio loop ``cwi bench`` is measured against: the same I/O per message, no broker.

Each message: parse and validate the customer envelope (``contracts.parse_envelope``, pydantic),
PUT the record to the sandbox ERP with aiohttp (the generic REST interface, bearer token and
Idempotency-Key, the body the generic_rest provider sends), and insert one sync-log-like row into
SQLite (WAL, ``synchronous=NORMAL``, committed per message on the loop's thread). ``--concurrency``
messages are in flight at once. Prints one JSON object like ``cwi bench``.

    .venv/bin/python bench/bare.py --events 5000 --concurrency 16 --latency-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.options import load_options
from contracts import parse_envelope
from providers.generic_rest.mapping import to_body
from worker.dev.bench import messages_for, sandbox_process


async def _run(
    base_url: str, token: str, bodies: list[bytes], concurrency: int, db_path: Path
) -> tuple[float, float]:
    """Seconds for every message, and the CPU seconds this process spent meanwhile."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE sync_log (id INTEGER PRIMARY KEY, message_id TEXT, client_id TEXT, "
        "entity TEXT, cw_id TEXT, action TEXT, external_id TEXT, version TEXT, at REAL)"
    )
    queue = iter(bodies)
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            nonlocal done
            env = parse_envelope(body)
            assert env.data is not None
            url = f"{base_url}/v1/{env.entity.value}/{env.cw_id}"
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": env.id}
            async with session.put(url, json=to_body(env.entity, env.data), headers=headers) as resp:
                answer: dict[str, Any] = await resp.json()
                if resp.status >= 300:
                    raise RuntimeError(f"ERP answered {resp.status}: {answer}")
            db.execute(
                "INSERT INTO sync_log (message_id, client_id, entity, cw_id, action, external_id, version, "
                "at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (env.id, env.client_id, env.entity.value, env.cw_id, "created", str(answer.get("id")),
                 str(answer.get("version")), time.time()),
            )  # fmt: skip
            done += 1

        async def lane() -> None:
            for body in queue:
                await one(body)

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    db.close()
    if done != len(bodies):
        raise RuntimeError(f"only {done} of {len(bodies)} messages done")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    load_options(parser, events=5000)
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    bodies = [m.body for m in messages_for(args.events, max(64, args.concurrency * 2))]
    with (
        tempfile.TemporaryDirectory(prefix="cwi-bare-") as workdir,
        sandbox_process(token, args.latency_ms) as url,
    ):
        seconds, cpu_s = asyncio.run(_run(url, token, bodies, args.concurrency, Path(workdir) / "bare.db"))
    print(
        json.dumps(
            {
                "contender": "bare",
                "events": args.events,
                "concurrency": args.concurrency,
                "latency_ms": args.latency_ms,
                "seconds": round(seconds, 3),
                "events_per_s": round(args.events / seconds, 1),
                "cpu_ms_per_event": round(cpu_s * 1000 / args.events, 3),
                "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
