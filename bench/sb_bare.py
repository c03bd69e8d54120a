"""Bare asyncio loops on the async azure-servicebus SDK: what ``cwi run`` with ``CWI_BUS=azure`` is
measured against (bench/run.sh azure prints the ratio).

Same peer (tests/servicebus_peer, started in this process), same sandbox ERP (its own process), same
work per message as ``cwi bench --bus azure``: batch receive with peek-lock, parse and validate the
customer envelope (pydantic), PUT it with aiohttp, one SQLite sync-log-like row (WAL,
``synchronous=NORMAL``), complete. The loop runs in a child process of its own, as the worker does.

``--mode between``: one task receives and, between receives, completes what has finished (prefetch
sized to the concurrency); ``between-gather`` completes them side by side (``asyncio.gather``), still
between receives: slower than one after the other, as each completion reads the connection itself;
``between-pipelined`` sends them together and awaits their echoes together, as cwi's queue pump does
(``worker/buses/azure/pipelined.py``, below the SDK's public API; queue only).
``--mode per-task``: each message is completed by its own task while the
receive loop goes on. ``--sessions``: a session queue (session = client), one lane per message in
flight, each lane one session at a time and one message at a time in it (per-client order); in
``per-task`` mode a lane's completion runs in its own task while the lane receives the next message.

    .venv/bin/python bench/sb_bare.py --mode between --events 3000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/azure.py would shadow the azure package: import from the repository root, not from bench/.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from bench.options import load_options, number, whole  # noqa: E402 - after the path
from worker.dev import MAX_CLIENTS  # noqa: E402 - after the path

QUEUE = "sb-bare"


def _bodies(events: int, n_clients: int) -> list[tuple[str, str, bytes]]:
    from worker.dev import fixtures as fx

    rng = random.Random(1)
    out = []
    for i in range(events):
        client_id = f"bench{i % n_clients}"
        env = fx.envelope(client_id, "customer.created", fx.customer(client_id, i, rng), seq=i)
        out.append((env["id"], client_id, json.dumps(env).encode()))
    return out


class Work:
    """The per-message work: parse, PUT, one SQLite row."""

    def __init__(self, session: Any, base_url: str, token: str, db: sqlite3.Connection) -> None:
        self.session, self.base_url, self.token, self.db = session, base_url, token, db
        self.done = 0

    async def __call__(self, body: bytes) -> None:
        from contracts import parse_envelope
        from providers.generic_rest.mapping import to_body

        env = parse_envelope(body)
        assert env.data is not None
        url = f"{self.base_url}/v1/{env.entity.value}/{env.cw_id}"
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": env.id}
        async with self.session.put(url, json=to_body(env.entity, env.data), headers=headers) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status >= 300:
                raise RuntimeError(f"ERP answered {resp.status}: {answer}")
        self.db.execute(
            "INSERT INTO sync_log (message_id, client_id, entity, cw_id, action, external_id, version, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (env.id, env.client_id, env.entity.value, env.cw_id, "created", str(answer.get("id")),
             str(answer.get("version")), time.time()),
        )  # fmt: skip


def _body_of(message: Any) -> bytes:
    return b"".join(message.body)


async def _queue_between(receiver: Any, work: Work, events: int, concurrency: int, settle: str) -> None:
    """One task: receive a batch, start its work, and between receives complete what finished."""
    from worker.buses.azure.pipelined import complete_all

    finished: list[Any] = []
    wake = asyncio.Event()
    inflight: set[asyncio.Task[None]] = set()

    async def one(message: Any) -> None:
        await work(_body_of(message))
        finished.append(message)
        wake.set()

    settled = 0
    while settled < events:
        while finished:
            batch, finished[:] = list(finished), []
            if settle == "gather":  # the batch's completions side by side, still between receives
                await asyncio.gather(*(receiver.complete_message(m) for m in batch))
            elif settle == "pipelined":  # sent together, echoes awaited together (cwi's way)
                failed = [o for o in await complete_all(receiver, batch) if o is not None]
                if failed:
                    raise RuntimeError(f"{len(failed)} completions failed: {failed[0]}")
            else:
                for message in batch:
                    await receiver.complete_message(message)
            settled += len(batch)
        free = concurrency - len(inflight)
        if free > 0 and settled + len(inflight) < events:
            got = await receiver.receive_messages(max_message_count=free, max_wait_time=0.02)
            for message in got:
                task = asyncio.create_task(one(message))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if got:
                continue
        if not finished and inflight:
            wake.clear()
            await wake.wait()


async def _queue_per_task(receiver: Any, work: Work, events: int, concurrency: int) -> None:
    """The receive loop starts a task per message; each task completes its own message."""
    slots = asyncio.Semaphore(concurrency)
    done = asyncio.Event()
    count = 0

    async def one(message: Any) -> None:
        nonlocal count
        try:
            await work(_body_of(message))
            await receiver.complete_message(message)
        finally:
            slots.release()
        count += 1
        if count == events:
            done.set()

    started = 0
    while started < events:
        await slots.acquire()
        got = await receiver.receive_messages(max_message_count=1 + slots._value, max_wait_time=0.5)
        if not got:
            slots.release()
            continue
        for _ in got[1:]:
            await slots.acquire()
        for message in got:
            asyncio.create_task(one(message))  # noqa: RUF006 - done is awaited below
        started += len(got)
    await done.wait()


async def _sessions(client: Any, work: Work, events: int, lanes: int, per_task: bool) -> None:
    """``lanes`` session receivers at once, one message at a time in each session."""
    from azure.servicebus import NEXT_AVAILABLE_SESSION
    from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

    count = 0
    done = asyncio.Event()

    async def lane() -> None:
        nonlocal count
        while not done.is_set():
            receiver = client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1)
            try:
                async with receiver:
                    pending: asyncio.Task[None] | None = None
                    while True:
                        if pending is not None:
                            await pending  # one message at a time per session
                            pending = None
                        got = await receiver.receive_messages(max_message_count=1, max_wait_time=0.2)
                        if not got:
                            break
                        await work(_body_of(got[0]))
                        if per_task:
                            pending = asyncio.create_task(receiver.complete_message(got[0]))
                        else:
                            await receiver.complete_message(got[0])
                        count += 1
                        if count >= events:
                            done.set()
                    if pending is not None:
                        await pending
            except (OperationTimeoutError, SessionCannotBeLockedError):
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(lane()) for _ in range(lanes)]
    await done.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    from azure.servicebus.aio import ServiceBusClient

    from worker.buses.azure.client import prompt_link_polls, tls_context

    prompt_link_polls()  # links open without the SDK's 50-ms naps, as cwi's adapter's do
    db = sqlite3.connect(Path(tempfile.mkdtemp(prefix="cwi-sb-bare-")) / "bare.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE sync_log (id INTEGER PRIMARY KEY, message_id TEXT, client_id TEXT, "
        "entity TEXT, cw_id TEXT, action TEXT, external_id TEXT, version TEXT, at REAL)"
    )
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        ServiceBusClient.from_connection_string(
            os.environ["SB_BARE_CONNECTION"],
            socket_timeout=args.socket_timeout,
            ssl_context=tls_context(),  # one for every connection, as cwi's adapter has
        ) as client,
    ):
        work = Work(session, os.environ["SB_BARE_URL"], os.environ["SB_BARE_TOKEN"], db)
        if args.sessions:  # sessions are accepted as the loop goes: nothing to connect ahead
            cpu0, started = os.times(), time.perf_counter()
            await _sessions(client, work, args.events, args.concurrency, args.mode == "per-task")
            seconds, cpu1 = time.perf_counter() - started, os.times()
        else:
            # Timed from a connected receiver, as `cwi bench` times a connected worker.
            async with client.get_queue_receiver(QUEUE, prefetch_count=args.concurrency) as receiver:
                cpu0, started = os.times(), time.perf_counter()
                if args.mode.startswith("between"):
                    settle = args.mode.partition("-")[2] or "one by one"
                    await _queue_between(receiver, work, args.events, args.concurrency, settle)
                else:
                    await _queue_per_task(receiver, work, args.events, args.concurrency)
                seconds, cpu1 = time.perf_counter() - started, os.times()
    rows = db.execute("SELECT count(*) FROM sync_log").fetchone()[0]
    if rows < args.events:
        raise RuntimeError(f"only {rows} of {args.events} messages done")
    return {
        "seconds": round(seconds, 3),
        "events_per_s": round(args.events / seconds, 1),
        "cpu_ms_per_event": round(
            ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) * 1000 / args.events, 3
        ),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode", choices=["between", "between-gather", "between-pipelined", "per-task"], default="between"
    )
    parser.add_argument("--sessions", action="store_true")
    load_options(parser, events=3000)
    parser.add_argument(
        "--clients",
        type=whole(1, MAX_CLIENTS),
        default=None,
        help="distinct clients (default 2 x concurrency)",
    )
    parser.add_argument(
        "--socket-timeout", type=number(0.001, 60.0), default=None, help="the SDK client's (default 0.2 s)"
    )
    parser.add_argument(
        "--rtt-ms",
        type=number(0.0, 10_000.0),
        default=0.0,
        help="round trip added to the peer's (bench/rtt.py)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sessions and args.mode not in ("between", "per-task"):
        parser.error(f"--mode {args.mode} is for a queue without sessions")
    if args.child:
        print(json.dumps(asyncio.run(_child(args))))
        return 0

    from bench.rtt import delayed
    from tests.servicebus_peer import EntityOptions, ServiceBusPeer
    from worker.dev.bench import sandbox_process

    n_clients = args.clients or max(64, args.concurrency * 2)
    token = secrets.token_urlsafe(16)
    entities = {QUEUE: EntityOptions(lock_duration_s=60, requires_session=args.sessions)}
    with (
        ServiceBusPeer(entities=entities) as peer,
        sandbox_process(token, args.latency_ms) as base_url,
        delayed(peer.connection_string, rtt_ms=args.rtt_ms) as url,
    ):
        for message_id, client_id, body in _bodies(args.events, n_clients):
            peer.send(QUEUE, body, message_id=message_id, session_id=client_id if args.sessions else None)
        env = {**os.environ, "SB_BARE_CONNECTION": url, "SB_BARE_URL": base_url,
               "SB_BARE_TOKEN": token}  # fmt: skip
        child = subprocess.run(
            [sys.executable, __file__, "--child", *argv], env=env, cwd=ROOT, capture_output=True, text=True
        )
    if child.returncode != 0:
        sys.stderr.write(child.stderr[-3000:])
        return child.returncode
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "contender": f"sb_bare {args.mode}" + (" sessions" if args.sessions else ""),
                "events": args.events,
                "concurrency": args.concurrency,
                "latency_ms": args.latency_ms,
                "clients": n_clients,
                **result,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
