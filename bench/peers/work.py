"""What every contender does per message: validate the customer envelope with pydantic
(``contracts.parse_envelope``), PUT it to the sandbox ERP with aiohttp (as the generic_rest provider
does), insert one sync-log row into SQLite (WAL, ``synchronous=NORMAL``), then ack (the caller).

RabbitMQ at ``CWI_PEERS_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``); ``ensure_rabbitmq``
starts the machine's ``rabbitmq-server -detached`` when nothing answers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import aiohttp

from bench.options import load_options
from contracts import parse_envelope
from providers.generic_rest.mapping import to_body

AMQP_URL = os.environ.get("CWI_PEERS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def ensure_rabbitmq(host: str = "127.0.0.1", port: int = 5672, wait_s: float = 60.0) -> None:
    def up() -> bool:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False

    if up():
        return
    server = shutil.which("rabbitmq-server")
    if server is None:
        raise SystemExit("RabbitMQ does not answer at 127.0.0.1:5672 and rabbitmq-server is not installed")
    subprocess.run([server, "-detached"], check=False)
    deadline = time.monotonic() + wait_s
    while not up():
        if time.monotonic() > deadline:
            raise SystemExit("rabbitmq-server -detached started, but nothing answers at 127.0.0.1:5672")
        time.sleep(0.5)


class Work:
    """The per-message work, and the count and clock of what is done (thread-safe)."""

    def __init__(self, base_url: str, token: str, db_path: Path, expected: int) -> None:
        self.base_url, self.token, self.expected = base_url, token, expected
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sync_log (id INTEGER PRIMARY KEY, message_id TEXT, client_id TEXT, "
            "entity TEXT, cw_id TEXT, action TEXT, external_id TEXT, version TEXT, at REAL)"
        )
        self._lock = threading.Lock()
        self.done = 0
        self.first: float | None = None
        self.cpu_first = 0.0
        self.last = 0.0
        self.cpu_last = 0.0
        self.finished = threading.Event()
        self._session: aiohttp.ClientSession | None = None

    def session(self, limit: int) -> aiohttp.ClientSession:
        """One session per process, made on the loop that uses it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
        return self._session

    async def handle(self, body: str | bytes, limit: int) -> None:
        if self.first is None:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        env = parse_envelope(body)
        assert env.data is not None
        url = f"{self.base_url}/v1/{env.entity.value}/{env.cw_id}"
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": env.id}
        async with self.session(limit).put(url, json=to_body(env.entity, env.data), headers=headers) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status >= 300:
                raise RuntimeError(f"ERP answered {resp.status}: {answer}")
        with self._lock:
            self.db.execute(
                "INSERT INTO sync_log (message_id, client_id, entity, cw_id, action, external_id, version, "
                "at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (env.id, env.client_id, env.entity.value, env.cw_id, "created", str(answer.get("id")),
                 str(answer.get("version")), time.time()),
            )  # fmt: skip
            self.done += 1
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            if self.done >= self.expected:
                self.finished.set()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def result(self, contender: str, args: argparse.Namespace) -> dict[str, Any]:
        assert self.first is not None
        seconds = self.last - self.first
        return {
            "contender": contender,
            "events": args.events,
            "concurrency": args.concurrency,
            "latency_ms": args.latency_ms,
            "seconds": round(seconds, 3),
            "events_per_s": round(args.events / seconds, 1),
            "cpu_ms_per_event": round((self.cpu_last - self.cpu_first) * 1000 / args.events, 3),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def arguments(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    load_options(parser, events=5000)
    return parser.parse_args()


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
