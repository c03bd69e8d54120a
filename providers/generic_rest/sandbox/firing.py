"""The sandbox ERP's outbound webhooks: every change, signed per Standard Webhooks, sent in order.

One queue and one sender task keep the calls in the order of the changes, as a real ERP's
delivery would for one subscription. A call that fails (not 2xx, or no answer) is retried with
the same ``webhook-id`` and a short back-off, then counted as failed.

A test can make the delivery misbehave as an ERP's event system does under load (``Disorder``:
each call delayed at random, so calls overtake each other, and some sent twice); the vendor fakes
in tests/fakes use the same ``Disorder``. ``history``, when a list, keeps every event fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from providers.generic_rest.webhooks import decode_secret, sign


@dataclass(frozen=True, slots=True)
class Subscription:
    url: str
    secret: str


@dataclass
class Disorder:
    """Late, reordered and repeated deliveries: each call waits a random time up to ``max_delay_s``
    (so later calls overtake earlier ones), and a share ``duplicate_rate`` of them is sent twice."""

    max_delay_s: float = 0.0
    duplicate_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def delays(self) -> list[float]:
        """When to send each copy of one call, in seconds from now."""
        copies = 2 if self.rng.random() < self.duplicate_rate else 1
        return [self.rng.uniform(0, self.max_delay_s) for _ in range(copies)]


class WebhookSender:
    def __init__(self, *, attempts: int = 5, backoff_s: float = 0.05, timeout_s: float = 10.0) -> None:
        self.subscription: Subscription | None = None
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[tuple[Subscription, str, bytes]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.pending = 0
        self.disorder: Disorder | None = None
        self.history: list[dict[str, Any]] | None = None
        self._late: set[asyncio.Task[None]] = set()

    def subscribe(self, url: str, secret: str) -> None:
        """Where to send the webhooks; ValueError when the secret is not ``whsec_<base64>``."""
        decode_secret(secret)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s), not {url!r}")
        self.subscription = Subscription(url, secret)

    def fire(self, event: dict[str, Any]) -> None:
        """Queue one event for the current subscription (none: the change is not announced)."""
        if self.history is not None:
            self.history.append(event)
        if self.subscription is None:
            return
        self.pending += 1
        body = json.dumps(event, separators=(",", ":")).encode()
        self._queue.put_nowait((self.subscription, f"msg_{uuid.uuid4().hex}", body))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        """Until every queued webhook was delivered or given up."""
        await self._queue.join()

    def as_json(self) -> dict[str, Any]:
        url = self.subscription.url if self.subscription else None
        return {"url": url, "sent": self.sent, "failed": self.failed, "pending": self.pending}

    async def close(self) -> None:
        for task in [self._task, *self._late]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        while True:
            subscription, msg_id, body = await self._queue.get()
            if self.disorder is None:
                await self._send(subscription, msg_id, body)
                continue
            late = asyncio.get_running_loop().create_task(
                self._send(subscription, msg_id, body, self.disorder.delays())
            )
            self._late.add(late)
            late.add_done_callback(self._late.discard)

    async def _send(
        self, subscription: Subscription, msg_id: str, body: bytes, delays: Sequence[float] = ()
    ) -> None:
        """One queued call: now, or once per delay (a repeat keeps its ``webhook-id``)."""

        async def copy(delay: float) -> bool:
            await asyncio.sleep(delay)
            return await self._deliver(subscription, msg_id, body)

        try:
            if delays:
                delivered = all(await asyncio.gather(*(copy(d) for d in delays)))
            else:
                delivered = await self._deliver(subscription, msg_id, body)
            self.sent += delivered
            self.failed += not delivered
        finally:
            self.pending -= 1
            self._queue.task_done()

    async def _deliver(self, subscription: Subscription, msg_id: str, body: bytes) -> bool:
        assert self._session is not None
        for attempt in range(self._attempts):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(subscription.secret, msg_id, timestamp, body),
            }
            try:
                timeout = aiohttp.ClientTimeout(total=self._timeout_s)
                async with self._session.post(
                    subscription.url, data=body, headers=headers, timeout=timeout
                ) as r:
                    if 200 <= r.status < 300:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(self._backoff_s * 2**attempt)
        return False
