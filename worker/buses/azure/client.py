"""The SDK's client for one bus: a connection string, or the namespace with DefaultAzureCredential;
and one TLS context for every connection it opens."""

from __future__ import annotations

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


def make_client(
    settings: AzureBusSettings, retry: Mapping[str, Any]
) -> tuple[ServiceBusClient, AsyncTokenCredential | None]:
    conn = settings.connection_string
    if conn is not None:
        return ServiceBusClient.from_connection_string(conn, ssl_context=tls_context(), **retry), None
    from azure.identity.aio import DefaultAzureCredential  # only the namespace sign-in needs it

    credential = DefaultAzureCredential()
    namespace = str(settings.servicebus_namespace)
    return ServiceBusClient(namespace, credential, ssl_context=tls_context(), **retry), credential
