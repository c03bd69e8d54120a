"""The Service Bus client's TLS: one context, checked like the SDK's own, for every connection."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import ssl

import certifi
import pytest
from azure.servicebus.aio import ServiceBusReceiver, ServiceBusSender

from worker.buses.azure.client import POLL_S, SDK_POLL_S, make_client, tls_context
from worker.settings import load_azure_settings

CONNECTION_STRING = (
    "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"
)


def test_the_context_checks_the_server_against_certifis_bundle_and_its_host_name() -> None:
    context = tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    bundled = ssl.create_default_context(cafile=certifi.where()).cert_store_stats()["x509_ca"]
    assert context.cert_store_stats()["x509_ca"] == bundled > 50


@pytest.mark.parametrize("how", ["connection string", "namespace"])
async def test_the_client_gets_one_context_for_all_its_connections(how: str) -> None:
    if how == "connection string":
        settings = load_azure_settings(servicebus_queue="q", servicebus_connection_string=CONNECTION_STRING)
    else:
        settings = load_azure_settings(servicebus_queue="q", servicebus_namespace="example")
    client, credential = make_client(settings, {"retry_total": 1})
    try:
        # The SDK keeps the context it was given (``ssl_context``) and hands it to every connection it
        # opens; without it, each connection would build and load a context of its own.
        given = client._ssl_context  # the SDK offers no public getter
        assert isinstance(given, ssl.SSLContext) and given.verify_mode is ssl.CERT_REQUIRED
    finally:
        await client.close()
        if credential is not None:
            await credential.close()


def test_the_sdks_opening_loop_still_naps_as_the_client_expects() -> None:
    # The client shortens one nap of the SDK's private opening loop by the name it reads
    # (``asyncio.sleep(0.05)``); when an upgrade changes that loop, this fails instead of the change
    # going unnoticed.
    for handler in (ServiceBusReceiver, ServiceBusSender):
        source = inspect.getsource(handler._open)
        assert f"asyncio.sleep({SDK_POLL_S})" in source, handler.__name__


async def test_the_client_shortens_only_the_opening_loops_nap(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_azure_settings(servicebus_queue="q", servicebus_connection_string=CONNECTION_STRING)
    client, _ = make_client(settings, {"retry_total": 1})
    await client.close()
    naps: list[float] = []

    async def recording(delay: float, result: object = None) -> object:
        naps.append(delay)
        return result

    monkeypatch.setattr(asyncio, "sleep", recording)
    for name in ("_servicebus_receiver_async", "_servicebus_sender_async"):
        seen = importlib.import_module(f"azure.servicebus.aio.{name}").asyncio
        assert await seen.sleep(SDK_POLL_S, "done") == "done"
        await seen.sleep(2.5)
        assert seen.Lock is asyncio.Lock and seen.CancelledError is asyncio.CancelledError
    assert naps == [POLL_S, 2.5, POLL_S, 2.5]
    receiver_module = importlib.import_module("azure.servicebus.aio._servicebus_receiver_async")
    installed = receiver_module.asyncio
    again, _ = make_client(settings, {"retry_total": 1})
    await again.close()
    assert receiver_module.asyncio is installed, "a second client wrapped the SDK's asyncio again"
