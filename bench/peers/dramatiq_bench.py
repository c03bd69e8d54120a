"""dramatiq on RabbitMQ doing ``cwi bench``'s work per message, with the same concurrency.

An async actor (dramatiq's AsyncIO middleware runs it on one event loop thread) with
``worker_threads`` = ``--concurrency``; the messages are published to a fresh queue first, then one
in-process worker validates, PUTs, inserts and acks each. Prints one JSON object.

    .venv/bin/python bench/peers/dramatiq_bench.py --events 5000 --concurrency 16 --latency-ms 0
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware.asyncio import AsyncIO

from bench.peers.work import AMQP_URL, Work, arguments, emit, ensure_rabbitmq
from worker.dev.bench import messages_for, sandbox_process


def _run(base_url: str, token: str, bodies: list[bytes], concurrency: int) -> Work:
    name = f"cwi-peer-{uuid.uuid4().hex[:8]}"
    broker = RabbitmqBroker(url=AMQP_URL)
    broker.add_middleware(AsyncIO())
    dramatiq.set_broker(broker)
    work = Work(base_url, token, Path(tempfile.mkdtemp(prefix="cwi-dramatiq-")) / "peer.db", len(bodies))

    @dramatiq.actor(queue_name=name, max_retries=0)
    async def cwi_peer(body: str) -> None:
        await work.handle(body, concurrency)

    for body in bodies:
        cwi_peer.send(body.decode())
    worker = dramatiq.Worker(broker, worker_threads=concurrency)
    worker.start()
    try:
        work.finished.wait()
    finally:
        worker.stop()
        channel = broker.channel
        for queue in (name, f"{name}.DQ", f"{name}.XQ"):  # the queue, its delay and dead-letter queues
            channel.queue_delete(queue)
        broker.close()
    return work


def main() -> None:
    args = arguments(__doc__)
    ensure_rabbitmq()
    token = secrets.token_urlsafe(16)
    bodies = [m.body for m in messages_for(args.events, max(64, args.concurrency * 2))]
    with sandbox_process(token, args.latency_ms) as base_url:
        work = _run(base_url, token, bodies, args.concurrency)
    emit(work.result("dramatiq", args))


if __name__ == "__main__":
    main()
