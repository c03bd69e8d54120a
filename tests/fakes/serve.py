"""Each fake ERP served on 127.0.0.1 with the connection (base URL, settings, credentials) that reaches it.

``serve_fake(kind)`` runs the fake on the caller's event loop (in-process worker tests);
``serve_in_thread(kind)`` runs it on a loop of its own in a background thread, for tests that
drive the real CLI in a subprocess while the test itself blocks.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from config_db import clients
from config_db.database import make_engine
from config_db.secrets import SecretBox
from tests.fakes import serve_app
from tests.fakes.tripletex import CONSUMER_TOKEN, EMPLOYEE_TOKEN, FakeTripletex
from tests.fakes.uni_economy import FakeUni
from tests.fakes.uni_keys import certificate, pem, uni_connection, uni_key
from tests.fakes.visma_net import FakeVismaNet

KINDS = ("tripletex", "visma_net", "uni_economy")
UNI_CLIENT_ID = "cw-integration"
Fake = FakeTripletex | FakeVismaNet | FakeUni


@dataclass
class ServedFake:
    """A running fake and what a client's connection to it holds."""

    kind: str
    fake: Fake
    base_url: str
    settings: dict[str, str]
    credentials: dict[str, str]
    wrong_credentials: dict[str, str] = field(default_factory=dict)
    """Credentials the fake refuses (merged over ``credentials``); each value is a secret to keep hidden."""

    def connection(
        self, client: str, secret_key: str, credentials: dict[str, str] | None = None
    ) -> clients.StoredConnection:
        """``client``'s connection to the fake, its credentials (``credentials`` if given) sealed with
        ``secret_key``."""
        sealed = SecretBox(secret_key).encrypt(self.credentials if credentials is None else credentials)
        return clients.StoredConnection(client, self.kind, self.base_url, self.settings, sealed, True)

    def provision(self, db_url: str, secret_key: str, credentials: dict[str, str]) -> None:
        """Client acme with a connection to the fake, written through config_db as `cwi connections set`
        would."""
        engine = make_engine(db_url)
        with engine.begin() as conn:
            clients.add_client(conn, "acme", "Acme AS")
            clients.set_connection(conn, self.connection("acme", secret_key, credentials))
        engine.dispose()


@asynccontextmanager
async def _tripletex() -> AsyncIterator[ServedFake]:
    erp = FakeTripletex()
    async with serve_app(erp.app()) as url:
        erp.base_url = f"{url}/v2"
        yield ServedFake(
            "tripletex",
            erp,
            erp.base_url,
            {"vat_code.25": "3", "vat_code.0": "6", "project_manager_id": "11"},
            {"consumer_token": CONSUMER_TOKEN, "employee_token": EMPLOYEE_TOKEN},
            {"employee_token": "wrong-employee-token-7q2x"},
        )


@asynccontextmanager
async def _visma_net() -> AsyncIterator[ServedFake]:
    erp = FakeVismaNet()
    async with serve_app(erp.app()) as url:
        erp.base_url = url
        settings = {
            "tenant_id": erp.tenant_id,
            "token_url": f"{url}/connect/token",
            "revenue_account": "3000",
            "vat_code.25": "3",
            "vat_code.0": "5",
            "project_template": "STANDARD",
        }
        credentials = {"client_id": erp.client_id, "client_secret": erp.client_secret}
        yield ServedFake("visma_net", erp, url, settings, credentials, {"client_secret": "wrong-secret-9k4m"})


@asynccontextmanager
async def _uni_economy() -> AsyncIterator[ServedFake]:
    key = uni_key("registered")
    cert = certificate(key, UNI_CLIENT_ID)
    uni = FakeUni()
    uni.register_client(UNI_CLIENT_ID, key.public_key(), cert)
    async with uni.serve():
        settings, credentials = uni_connection(uni, UNI_CLIENT_ID, key, cert)
        # A key the fake never registered: the signature of the client assertion does not verify.
        wrong = {"private_key_pem": pem(uni_key("stranger")), "certificate_pem": ""}
        yield ServedFake("uni_economy", uni, uni.base_url, settings, credentials, wrong)


_SERVERS = {"tripletex": _tripletex, "visma_net": _visma_net, "uni_economy": _uni_economy}


@asynccontextmanager
async def serve_fake(kind: str) -> AsyncIterator[ServedFake]:
    async with _SERVERS[kind]() as served:
        yield served


@contextmanager
def serve_in_thread(kind: str) -> Iterator[ServedFake]:
    """The fake on its own event loop in a daemon thread, for as long as the block runs."""
    with in_thread(lambda: serve_fake(kind), f"fake-{kind}") as served:
        yield served


T = TypeVar("T")


@contextmanager
def in_thread(serve: Callable[[], AbstractAsyncContextManager[T]], name: str) -> Iterator[T]:
    """What ``serve()`` yields, served on its own event loop in a daemon thread while the block runs."""
    started: queue.Queue[T | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run_served() -> None:
        async with serve() as served:
            started.put(served)
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(run_served())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting test
            started.put(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    served = started.get(timeout=30)
    if isinstance(served, BaseException):
        raise served
    try:
        yield served
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
