"""Webhook delivery from a fake ERP: fire-and-forget POSTs, as a vendor's event system sends them.

A fake calls ``send`` from inside the request handler that changed a record; the POST runs as a
task of its own, so the request that caused it is answered without waiting for the receiver.
``drain`` waits for what is in flight (tests); ``close`` is the app's cleanup. With ``disorder``
set, each POST waits a random time first (so they overtake each other) and some are sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from providers.generic_rest.sandbox.firing import Disorder

TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback the fake sent: where, what, and the receiver's status (None: no answer)."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    status: int | None
    error: str | None = None


@dataclass
class CallbackSender:
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    disorder: Disorder | None = None

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Schedule the POST on the running loop and return at once."""
        delays = [0.0] if self.disorder is None else self.disorder.delays()
        for delay in delays:
            task = asyncio.get_running_loop().create_task(self._post(url, body, dict(headers), delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                self.deliveries.append(Delivery(url, headers, body, resp.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A vendor logs a failed delivery and moves on (retries are its own business).
            self.deliveries.append(Delivery(url, headers, body, None, repr(exc)))

    async def drain(self) -> None:
        """Wait until every callback sent so far has been delivered or has failed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, _app: object = None) -> None:
        await self.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None
