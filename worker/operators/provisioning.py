"""Provisioning: clients, their ERP connections, connection tests, webhook endpoints.

One implementation for every front end: the console and the admin API call it (and the CLI's
``clients``/``connections``/``webhooks`` commands can: ``merge_connection`` is the CLI's rule of
``cwi connections set``: settings and credentials merge into what is stored, ``unset`` removes).
Credentials are write-only: views say which are set, never their values. Every change is audited.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from sqlalchemy import Connection

from config_db import clients as repo
from config_db import definitions, webhooks
from config_db.models import BASE_URL_LENGTH, CLIENT_NAME_LENGTH
from config_db.secrets import SecretBox, SecretKeyError
from providers import registry
from providers.errors import ProviderError
from worker.db import Database
from worker.messaging.connections import spec_from_stored
from worker.operators.actors import Actor, audit
from worker.settings import Settings
from worker.webhook_endpoints import NoConnectionError, issue

DEFINITION_SETTING = "definition"


def client_problem(client_id: str, name: str | None) -> str | None:
    """What is wrong with a client to add (the command, the admin API, the console, a bulk file),
    in one line; None when nothing is."""
    from pydantic import TypeAdapter, ValidationError

    from contracts.envelope import ClientId  # the envelope's rule for client ids

    try:
        TypeAdapter(ClientId).validate_python(client_id)
    except ValidationError:
        return f"client id {client_id!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
    if name is not None and (
        len(name) > CLIENT_NAME_LENGTH or any(unicodedata.category(c) == "Cc" for c in name)
    ):
        return f"client name must be at most {CLIENT_NAME_LENGTH} characters, without control characters"
    return None


class ProvisioningError(Exception):
    """Bad input or a missing precondition, said in one line (or one line per problem)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """A change to a client's connection, as a form or a JSON body gives it."""

    kind: str
    base_url: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    unset: Sequence[str] = ()
    enabled: bool = True


def setting_problems(kind: str, settings: Mapping[str, str], client_id: str = "CLIENT") -> list[str]:
    """One line per bad setting, each with the fix (the CLI's command; the console's form does the same)."""
    found = registry.kind(kind).setting_problems(settings)
    return [f"{line} — fix: cwi connections set {client_id} {kind} --setting NAME=…" for line in found]


def checked_base_url(url: str) -> str:
    """An absolute http(s) URL with a host and nothing that cannot travel in a request line;
    ProvisioningError naming what is wrong."""
    from urllib.parse import urlsplit

    problem = None
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not host:
            problem = "it names no host"
        elif len(url) > BASE_URL_LENGTH:
            problem = f"it is longer than {BASE_URL_LENGTH} characters"
        elif any(c.isspace() or ord(c) < 0x20 for c in url):
            problem = "it contains white space or control characters"
        elif parts.query or parts.fragment:
            problem = "it must not have a query or a fragment"
    if problem is not None:
        raise ProvisioningError(f"the base URL {url!r} is not usable: {problem}")
    return url


def merge_connection(
    existing: repo.StoredConnection | None, client_id: str, request: ConnectionRequest, box: SecretBox | None
) -> tuple[repo.StoredConnection, list[str]]:
    """The connection to store, and its credential names. Raises ProvisioningError naming each problem."""
    if request.kind not in registry.KINDS:
        raise ProvisioningError(
            f"unknown provider {request.kind!r}: choose one of {', '.join(registry.KINDS)}"
        )
    same_kind = existing is not None and existing.kind == request.kind
    url = request.base_url or (existing.base_url if same_kind and existing else None)
    if not url:
        raise ProvisioningError("a base URL is required for a new connection")
    url = checked_base_url(url)
    merged_settings = {**(existing.settings if same_kind and existing else {}), **request.settings}
    keeps_credentials = same_kind and existing is not None and bool(existing.credentials)
    if (request.credentials or keeps_credentials) and box is None:
        raise ProvisioningError("CWI_SECRET_KEY is not set: it is needed to encrypt connection credentials")
    try:
        old = box.decrypt(existing.credentials) if box and keeps_credentials and existing else {}
    except SecretKeyError as exc:
        raise ProvisioningError(str(exc)) from None
    merged_credentials = {**old, **{k: v for k, v in request.credentials.items() if v}}
    for name in request.unset:
        merged_settings.pop(name, None)
        merged_credentials.pop(name, None)
    problems = setting_problems(request.kind, merged_settings, client_id)
    if problems:
        raise ProvisioningError(f"{len(problems)} setting(s) need fixing", problems)
    stored = repo.StoredConnection(
        client_id=client_id,
        kind=request.kind,
        base_url=url.rstrip("/"),
        settings=merged_settings,
        credentials=box.encrypt(merged_credentials) if box else "",
        enabled=request.enabled,
    )
    return stored, sorted(merged_credentials)


@dataclass(frozen=True, slots=True)
class ConnectionView:
    client_id: str
    kind: str
    base_url: str
    settings: Mapping[str, str]
    credentials: Mapping[str, str]  # name → "set"
    enabled: bool
    definition: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "settings": dict(self.settings),
            "credentials": dict(self.credentials),
        }


@dataclass(frozen=True, slots=True)
class Issued:
    url: str
    secret: str
    new_secret: bool


class Provisioning:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def _box(self) -> SecretBox | None:
        return SecretBox(self.settings.secret) if self.settings.secret else None

    # --- reading --------------------------------------------------------------------------------

    async def clients(self) -> list[dict[str, Any]]:
        def read(conn: Connection) -> list[dict[str, Any]]:
            stored = {c.client_id: c for c in repo.list_connections(conn)}
            out = []
            for client_id, name in repo.list_clients(conn):
                c = stored.get(client_id)
                out.append(
                    {
                        "id": client_id,
                        "name": name,
                        "provider": c.kind if c else None,
                        "definition": c.settings.get(DEFINITION_SETTING) if c else None,
                        "enabled": bool(c and c.enabled),
                    }
                )
            return out

        return await self.db.run(read)

    async def client(self, client_id: str) -> dict[str, Any] | None:
        return next((c for c in await self.clients() if c["id"] == client_id), None)

    async def connection(self, client_id: str) -> ConnectionView | None:
        stored = await self.db.run(partial(repo.get_connection, client_id=client_id))
        if stored is None:
            return None
        return ConnectionView(
            client_id=client_id,
            kind=stored.kind,
            base_url=stored.base_url,
            settings=dict(stored.settings),
            credentials={name: "set" for name in self._credential_names(stored)},
            enabled=stored.enabled,
            definition=stored.settings.get(DEFINITION_SETTING),
        )

    def _credential_names(self, stored: repo.StoredConnection) -> list[str]:
        if not stored.credentials:
            return []
        box = self._box()
        if box is None:
            return ["(encrypted: CWI_SECRET_KEY is not set)"]
        try:
            return sorted(box.decrypt(stored.credentials))
        except SecretKeyError:
            return ["(cannot decrypt: wrong CWI_SECRET_KEY)"]

    # --- clients --------------------------------------------------------------------------------

    async def add_client(self, actor: Actor, client_id: str, name: str | None = None) -> None:
        actor.require("admin", "adding a client")
        problem = client_problem(client_id, name)
        if problem:
            raise ProvisioningError(problem)
        try:
            await self.db.run(partial(repo.add_client, client_id=client_id, name=name or client_id))
        except repo.ClientExistsError as exc:
            raise ProvisioningError(str(exc)) from None
        await audit(self.db, actor, "client_added", client_id=client_id, name=name or client_id)

    async def set_enabled(self, actor: Actor, client_id: str, enabled: bool) -> None:
        """Disable (or enable again) a client: its connection stops taking messages (ConnectionDisabled)."""
        actor.require("admin", "disabling a client")

        def work(conn: Connection) -> bool:
            stored = repo.get_connection(conn, client_id)
            if stored is None:
                return False
            repo.set_connection(conn, dataclasses.replace(stored, enabled=enabled))
            return True

        if not await self.db.run(work):
            raise ProvisioningError(f"client {client_id!r} has no connection to switch")
        await audit(self.db, actor, "client_enabled" if enabled else "client_disabled", client_id=client_id)

    # --- connections ----------------------------------------------------------------------------

    async def save_connection(
        self, actor: Actor, client_id: str, request: ConnectionRequest
    ) -> ConnectionView:
        actor.require("admin", "changing a connection")
        definition = request.settings.get(DEFINITION_SETTING)
        if definition:
            if request.kind != "generic_rest":
                raise ProvisioningError("a provider definition is for generic_rest connections only")
            if await self.db.run(partial(definitions.get_definition, name=definition)) is None:
                raise ProvisioningError(f"no provider definition named {definition!r}")
        box = self._box()

        def work(conn: Connection) -> list[str]:
            existing = repo.get_connection(conn, client_id)
            stored, names = merge_connection(existing, client_id, request, box)
            repo.set_connection(conn, stored)
            return names

        try:
            names = await self.db.run(work)
        except repo.ClientNotFoundError as exc:
            raise ProvisioningError(str(exc)) from None
        await audit(
            self.db, actor, "connection_saved", client_id=client_id, provider=request.kind,
            base_url=request.base_url, settings=dict(request.settings), unset=list(request.unset),
            credentials_written=sorted(k for k, v in request.credentials.items() if v),
            enabled=request.enabled,
        )  # fmt: skip
        view = await self.connection(client_id)
        assert view is not None and names is not None
        return view

    async def test_connection(self, actor: Actor, client_id: str) -> tuple[bool, str]:
        """The provider's own answer: authenticate and one read."""
        actor.require("operator", "testing a connection")
        stored = await self.db.run(partial(repo.get_connection, client_id=client_id))
        if stored is None:
            raise ProvisioningError(f"client {client_id!r} has no connection")
        try:
            spec = spec_from_stored(stored, self.settings.secret)
            async with aiohttp.ClientSession() as http:
                ok, text = True, await registry.build(spec, http).check()
        except ProviderError as exc:
            ok, text = False, f"{exc.__class__.__name__}: {exc}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, text = False, f"cannot reach {stored.base_url}: {exc.__class__.__name__}: {exc}"
        await audit(self.db, actor, "connection_tested", client_id=client_id, ok=ok, answer=text[:500])
        return ok, text

    # --- webhooks -------------------------------------------------------------------------------

    def _url(self, kind: str, token: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/webhooks/{kind}/{token}"

    async def issue_webhook(self, actor: Actor, client_id: str, *, rotate: bool) -> Issued:
        """A new webhook URL (the old one stops working when rotating) and the signing secret."""
        actor.require("admin", "issuing a webhook endpoint")
        box = self._box()
        if box is None:
            raise ProvisioningError("CWI_SECRET_KEY is not set: it is needed to keep the webhook secret")
        try:
            issued = await self.db.run(partial(issue, box=box, client_id=client_id, rotate=rotate))
        except (NoConnectionError, webhooks.EndpointExistsError, SecretKeyError) as exc:
            raise ProvisioningError(str(exc)) from None
        await audit(self.db, actor, "webhook_rotated" if rotate else "webhook_issued", client_id=client_id)
        return Issued(self._url(issued.kind, issued.token), issued.secret, issued.new_secret)

    async def register_webhook(self, actor: Actor, client_id: str) -> tuple[bool, str]:
        """Issue a new URL and subscribe the ERP to it, or answer the steps (Visma's portal)."""
        issued = await self.issue_webhook(actor, client_id, rotate=True)
        stored = await self.db.run(partial(repo.get_connection, client_id=client_id))
        assert stored is not None
        register = registry.kind(stored.kind).register_webhook
        if register is None:
            text = f"{stored.kind} has no webhook registration: configure its callbacks to call {issued.url}"
            return False, text
        try:
            spec = spec_from_stored(stored, self.settings.secret)
            async with aiohttp.ClientSession() as http:
                ok, text = True, await register(registry.build(spec, http), issued.url, issued.secret)
        except ProviderError as exc:
            ok, text = False, f"{exc.__class__.__name__}: {exc}"
        await audit(self.db, actor, "webhook_registered", client_id=client_id, ok=ok, answer=text[:500])
        return ok, text

    async def endpoints(self, client_id: str) -> list[dict[str, Any]]:
        found = await self.db.run(partial(webhooks.client_endpoints, client_id=client_id))
        return [{"provider": e.provider, "created_at": e.created_at.isoformat()} for e in found]
