"""taskiq on RabbitMQ (taskiq-aio-pika) doing ``cwi bench``'s work per message, with the same concurrency.

The messages are published to a fresh queue first, then one in-process receiver (``max_async_tasks`` =
``--concurrency``, prefetch the same) validates, PUTs, inserts and acks each. Prints one JSON object.

    .venv/bin/python bench/peers/taskiq_bench.py --events 5000 --concurrency 16 --latency-ms 0
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from taskiq.receiver import Receiver
from taskiq_aio_pika import AioPikaBroker
from taskiq_aio_pika.exchange import Exchange
from taskiq_aio_pika.queue import Queue

from bench.peers.work import AMQP_URL, Work, arguments, emit, ensure_rabbitmq
from worker.dev.bench import messages_for, sandbox_process


async def _run(base_url: str, token: str, bodies: list[bytes], concurrency: int) -> Work:
    name = f"cwi-peer-{uuid.uuid4().hex[:8]}"
    broker = AioPikaBroker(
        AMQP_URL,
        qos=concurrency,
        exchange=Exchange(name=name, auto_delete=True, durable=False),
        task_queues=[Queue(name=name)],
    )
    work = Work(base_url, token, Path(tempfile.mkdtemp(prefix="cwi-taskiq-")) / "peer.db", len(bodies))

    @broker.task(task_name="cwi_peer")
    async def cwi_peer(body: str) -> None:
        await work.handle(body, concurrency)

    broker.is_worker_process = True  # opens the read channel too
    await broker.startup()
    for body in bodies:
        await cwi_peer.kiq(body.decode())
    receiver = Receiver(broker, max_async_tasks=concurrency, max_prefetch=concurrency, run_startup=False)
    stop = asyncio.Event()
    listening = asyncio.create_task(receiver.listen(stop))
    await asyncio.to_thread(work.finished.wait)
    stop.set()
    await asyncio.wait_for(listening, 30)
    await work.close()
    if broker.write_channel is not None:
        await broker.write_channel.queue_delete(name)
        await broker.write_channel.exchange_delete(name)
    await broker.shutdown()
    return work


def main() -> None:
    args = arguments(__doc__)
    ensure_rabbitmq()
    token = secrets.token_urlsafe(16)
    bodies = [m.body for m in messages_for(args.events, max(64, args.concurrency * 2))]
    with sandbox_process(token, args.latency_ms) as base_url:
        work = asyncio.run(_run(base_url, token, bodies, args.concurrency))
    emit(work.result("taskiq", args))


if __name__ == "__main__":
    main()
