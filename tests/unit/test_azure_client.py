"""The Service Bus client's TLS: one context, checked like the SDK's own, for every connection."""

from __future__ import annotations

import ssl

import certifi
import pytest

from worker.buses.azure.client import make_client, tls_context
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
