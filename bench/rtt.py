"""A TCP relay that adds a network's round trip between a Service Bus client and the test peer.

The peer answers on the loopback in well under a millisecond; a real namespace is a network round
trip away (a few ms in the same region, tens across regions), and every settlement the SDK awaits
costs one. ``bench/azure.py --rtt-ms N`` and ``bench/sb_bare.py --rtt-ms N`` put this relay in front
of the peer: each chunk read from either side is forwarded half the round trip later, in order
(bandwidth is not limited). Not a product module: the benchmarks' stand-in for distance.

    with delayed(peer.connection_string, rtt_ms=5) as connection_string: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator

_ENDPOINT = re.compile(r"Endpoint=sb://(?P<host>[^:;/]+):(?P<port>\d+)")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Forward what ``reader`` gives to ``writer``, each chunk ``delay_s`` after it was read."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await chunks.get()
            if not data:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            chunks.put_nowait((loop.time() + delay_s, data))
        chunks.put_nowait((loop.time(), b""))  # the end, after what is still on its way
        await sending
    except ConnectionError:
        pass
    finally:
        sending.cancel()
        writer.close()


async def _serve(host: str, port: int, delay_s: float, ready: asyncio.Future[int]) -> None:
    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe(client_r, upstream_w, delay_s), _pipe(upstream_r, client_w, delay_s))
        except (asyncio.CancelledError, ConnectionError):
            pass  # the relay stops (or a side went away): both sides are closed
        finally:
            client_w.close()
            upstream_w.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0, backlog=1024)
    ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def delayed(connection_string: str, *, rtt_ms: float) -> Iterator[str]:
    """``connection_string`` through a relay that adds ``rtt_ms`` to every round trip."""
    if rtt_ms <= 0:
        yield connection_string
        return
    found = _ENDPOINT.search(connection_string)
    if found is None:
        raise ValueError("the connection string names no Endpoint=sb://host:port")
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[int] = loop.create_future()
    serving = loop.create_task(_serve(found["host"], int(found["port"]), rtt_ms / 2000, ready))

    def run() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(serving)
        relays = asyncio.all_tasks(loop)  # the connections still open: cancelled, then closed
        for task in relays:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*relays, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True, name="rtt")
    thread.start()
    port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 5), loop).result()
    try:
        yield _ENDPOINT.sub(f"Endpoint=sb://127.0.0.1:{port}", connection_string)
    finally:
        loop.call_soon_threadsafe(serving.cancel)
        thread.join(timeout=5)
