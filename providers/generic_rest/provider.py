"""The generic REST provider: pushes CW records to an ERP that implements contracts/generic_rest.openapi.json.

Records are addressed by their CW id, and ``PUT`` is an upsert, so a redelivered or recovering
change needs no lookup first: sending it again is safe, and the ERP's Idempotency-Key handling
keeps the repeat from counting as a second change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
from pydantic import ValidationError

from contracts import Action, CWRecord, Entity
from contracts.envelope import describe_errors
from providers.base import (
    CanonicalJson,
    ConnectionSpec,
    CWDraft,
    ExternalRecord,
    OutboundChange,
    PreparedRequest,
    PushResult,
)
from providers.errors import AuthenticationFailed, MappingError, NotSupported, ProviderRejected
from providers.generic_rest import listing
from providers.generic_rest.client import GenericRestClient, describe_error
from providers.generic_rest.mapping import RECORD_TYPES, to_body
from providers.http import ConnectionThrottle, HttpResponse
from providers.listing import DEFAULT_PAGE_SIZE, Listed, ListedPage
from providers.settings import SettingsReader

DEFAULT_TIMEOUT_S = 30.0
INTERFACE = "v1"
#: optional override of the identity ``GET {base}/v1/_ping`` tells (the author of our own changes).
API_USER_SETTING = "api_user"


@dataclass(frozen=True, slots=True)
class Probe:
    """What ``GET {base}/v1/_ping`` answered: the implementation is there, and the token's subject."""

    subject: str
    interface: str


class GenericRestProvider:
    kind: ClassVar[str] = "generic_rest"

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        self._spec = spec
        self._client = GenericRestClient(
            http,
            spec.base_url,
            token=spec.credentials.get("token", ""),
            timeout_s=SettingsReader.of(spec).positive_number("timeout_s", DEFAULT_TIMEOUT_S),
            rate_cap=ConnectionThrottle.from_settings(SettingsReader.of(spec)),
        )
        self._probe: Probe | None = None
        self._probe_lock = asyncio.Lock()

    async def push(self, change: OutboundChange) -> PushResult:
        self._require_token()
        try:
            if change.action is Action.deleted:
                return await self._delete(change)
            return await self._put(change)
        except AuthenticationFailed as exc:
            raise self._refused(exc) from None

    async def check(self) -> str:
        """``GET {base}/v1/_ping``: a wrong base URL (404) or token (401) fails the test."""
        try:
            probe = await self.probe()
        except AuthenticationFailed as exc:
            raise self._refused(exc) from None
        return (
            f"generic_rest at {self._client.base_url}: authenticated as {probe.subject} "
            f"(interface {probe.interface})"
        )

    async def identity(self) -> str | None:
        """Who our token acts as in the ERP (the ``author`` of our own changes' webhooks).

        The connection setting ``api_user`` overrides it; otherwise ``GET {base}/v1/_ping``, once.
        """
        override = self._spec.setting(API_USER_SETTING)
        if override:
            return override
        try:
            return (await self.probe()).subject
        except AuthenticationFailed as exc:
            raise self._refused(exc) from None

    async def probe(self) -> Probe:
        """``GET {base}/v1/_ping``, cached once it succeeded (never a failure: it may be transient)."""
        async with self._probe_lock:
            if self._probe is None:
                self._probe = await self._ping()
            return self._probe

    async def _ping(self) -> Probe:
        self._require_token()
        url = self._client.ping_url
        resp = await self._client.ping()
        if resp.status == 404:
            raise ProviderRejected(
                f"404 at {url}: is the base URL right? ({self._client.base_url} should be everything "
                f"before /v1 of an ERP implementing the generic REST interface {INTERFACE})"
            )
        body = resp.json()
        subject = body.get("subject") if isinstance(body, dict) else None
        interface = body.get("interface") if isinstance(body, dict) else None
        if resp.status != 200 or not isinstance(subject, str) or not subject or interface != INTERFACE:
            raise ProviderRejected(
                f"{url} answered HTTP {resp.status} but not as the generic REST interface {INTERFACE} "
                f'(expected {{"subject": "…", "interface": "{INTERFACE}"}}): {_text(resp)}'
            )
        return Probe(subject, interface)

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        if change.action is Action.deleted:
            return [self._client.prepare("DELETE", change.entity, change.cw_id, change.idempotency_key)]
        body = to_body(change.entity, self._record(change))
        return [self._client.prepare("PUT", change.entity, change.cw_id, change.idempotency_key, body)]

    async def _put(self, change: OutboundChange) -> PushResult:
        body = CanonicalJson.of(to_body(change.entity, self._record(change)))
        resp = await self._client.request("PUT", change.entity, change.cw_id, change.idempotency_key, body)
        if resp.status == 404:
            # The interface never answers 404 to a PUT (it creates): this is not the interface.
            detail = describe_error(resp) or _text(resp)
            raise ProviderRejected(
                f"404 at {self._client.url(change.entity, change.cw_id)}: is the base URL right? "
                f"(PUT {change.entity.value}/{change.cw_id}: {detail})"
            )
        external_id, version = _write_result(resp, f"PUT {change.entity.value}/{change.cw_id}")
        return PushResult(
            outcome="created" if resp.status == 201 else "updated",
            external_id=external_id,
            version=version,
            content_hash=body.content_hash,
        )

    async def _delete(self, change: OutboundChange) -> PushResult:
        resp = await self._client.request("DELETE", change.entity, change.cw_id, change.idempotency_key)
        if resp.status == 404:
            # Already gone, the outcome we want, but only where the interface is known to be: at
            # a wrong base URL every path is 404, and the probe says so (ProviderRejected).
            await self.probe()
        return PushResult(outcome="deleted", external_id=change.known_external_id)

    # The inbound side (InboundProvider): the ERP's record IS the CW record.

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        # The interface reads records by CW id only, and its webhooks carry the record (all but
        # deletions), so the inbound path never needs to read one by the ERP's id.
        raise NotSupported(
            f"generic_rest reads records by CW id only, not by external id {external_id!r}: "
            "its webhooks must carry the record (contracts/generic_rest.openapi.json, WebhookChange)"
        )

    # Reconciliation: the interface's listing, and reads by CW id.

    def list_records(
        self, entity: Entity, since: str | None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[ListedPage]:
        self._require_token()
        return listing.list_records(self._client, entity, since, page_size)

    async def read_record(
        self, entity: Entity, *, external_id: str | None, cw_id: str | None, number: str | None
    ) -> Listed | None:
        self._require_token()
        return None if cw_id is None else await listing.read_by_cw_id(self._client, entity, cw_id)

    def anchor_at(self, when: dt.datetime) -> str:
        return listing.anchor_at(when)

    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft:
        fields = {k: v for k, v in value.items() if k != "id"}
        try:
            record = RECORD_TYPES[entity].model_validate_json(json.dumps({**fields, "id": "-"}, default=str))
        except ValidationError as exc:
            problems = "; ".join(describe_errors(exc))
            raise MappingError(f"generic_rest {entity.value} is not a valid CW record: {problems}") from None
        body = record.model_dump(mode="json")
        del body["id"]
        return CWDraft(body)  # the record carries CW's own ids: nothing to resolve

    def _record(self, change: OutboundChange) -> CWRecord:
        if change.record is None:
            raise MappingError(
                f"{change.entity.value}.{change.action.value} for {change.cw_id!r} carries no record"
            )
        return change.record

    def _require_token(self) -> None:
        if not self._spec.credentials.get("token"):
            client = self._spec.client_id
            raise AuthenticationFailed(
                f"connection for client {client} has no 'token' credential: {self._token_hint()}"
            )

    def _refused(self, exc: AuthenticationFailed) -> AuthenticationFailed:
        client = self._spec.client_id
        return AuthenticationFailed(
            f"{exc} (the ERP refused the 'token' credential of client {client}: {self._token_hint()})"
        )

    def _token_hint(self) -> str:
        return f"set it with `cwi connections set {self._spec.client_id} {self.kind} --credential token=…`"


def _write_result(resp: HttpResponse, what: str) -> tuple[str, str]:
    """``external_id`` and ``version`` of a PUT answer; a body without them breaks the interface."""
    body = resp.json()
    if isinstance(body, dict):
        external_id, version = body.get("external_id"), body.get("version")
        if isinstance(external_id, str) and external_id and type(version) is int:
            return external_id, str(version)
    raise ProviderRejected(
        f"generic_rest {what}: HTTP {resp.status} answer lacks external_id/version "
        f"(see contracts/generic_rest.openapi.json): {_text(resp)}"
    )


def _text(resp: HttpResponse) -> str:
    return resp.text(200) or "(empty body)"
