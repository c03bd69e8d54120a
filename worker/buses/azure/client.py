"""The SDK's client for one bus: a connection string, or the namespace with DefaultAzureCredential;
one TLS context for every connection it opens; and links that open without the SDK's 50-ms naps."""

from __future__ import annotations

import asyncio
import importlib
import ssl
from collections.abc import Mapping
from typing import Any

import certifi
from azure.core.credentials_async import AsyncTokenCredential
from azure.servicebus.aio import ServiceBusClient

from worker.settings import AzureBusSettings


def tls_context() -> ssl.SSLContext:
    """What the SDK would build for each connection (TLS, the server's certificate checked against
    certifi's CA bundle and its host name), built once. Left to itself the SDK builds one per
    connection and loads the bundle into it: about 23 ms of CPU and 0.7 MB each, and with sessions
    every accepted session opens a connection of its own (a fifth of the worker's CPU at 100 ms with
    64 sessions in flight). The SDK takes a ready context (``ssl_context``) and reuses it."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certifi.where())


SDK_POLL_S = 0.05
"""The nap of the SDK's loop that opens a receiver or a sender (``_open``: one readiness check,
then ``asyncio.sleep(0.05)``, until the link is attached)."""
POLL_S = 0.001
_OPENING_MODULES = (
    "azure.servicebus.aio._servicebus_receiver_async",
    "azure.servicebus.aio._servicebus_sender_async",
)


class _PromptPolls:
    """The ``asyncio`` the SDK's opening modules see: the same module, but the nap between two of the
    opening loop's readiness checks is ``POLL_S``.

    Why: each check already waits on the socket for the handshake's next frame (pyamqp's
    ``client_ready_async`` listens with the socket timeout), and takes one step of it; an accepted
    session needs nine checks, so 450 ms of an accept's 460 ms against the test peer were those
    naps (docs/performance.md); without them it takes about 19 ms. With sessions every accepted
    session opens a receiver: at 100 ms with 64 in flight over 128 sessions the worker did 1-27 %
    more events a second (median 13 %, ahead in twelve interleaved pairs of twelve), with less CPU
    per event. The SDK has no setting for the nap, and its ``_open`` is
    private, so this replaces the one name it reads instead of copying the method; a test fails
    when the SDK's loop no longer looks like this (tests/unit/test_azure_client.py)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(POLL_S if delay == SDK_POLL_S else delay, result)


def prompt_link_polls() -> None:
    """Install ``_PromptPolls`` in the SDK's opening modules (once; later calls change nothing)."""
    for name in _OPENING_MODULES:
        names = vars(importlib.import_module(name))
        if names.get("asyncio") is asyncio:  # as the SDK left it: not yet installed, same import
            names["asyncio"] = _PromptPolls()


def make_client(
    settings: AzureBusSettings, retry: Mapping[str, Any]
) -> tuple[ServiceBusClient, AsyncTokenCredential | None]:
    prompt_link_polls()
    conn = settings.connection_string
    if conn is not None:
        return ServiceBusClient.from_connection_string(conn, ssl_context=tls_context(), **retry), None
    from azure.identity.aio import DefaultAzureCredential  # only the namespace sign-in needs it

    credential = DefaultAzureCredential()
    namespace = str(settings.servicebus_namespace)
    return ServiceBusClient(namespace, credential, ssl_context=tls_context(), **retry), credential
