"""The contract every provider keeps, run against each vendor's fake over real HTTP.

Each vendor's test module subclasses ``ProviderContract`` and gives it an ``erp`` fixture: a
``Harness`` around that vendor's fake (faststream's ``tests/brokers/base`` pattern). What only
one vendor does stays in its own module. Every fake checks each request against the vendor's
spec; the ``erp`` fixtures fail a test whose requests violated it. The vendor fakes' modules also
share ``change``, the ``http`` fixture and ``deleted_between_lookup_and_put``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest

from contracts import Action, CWRecord, Entity, Invoice
from providers.base import InboundChange, OutboundChange, PushResult
from providers.catalogues import mapping_problems
from providers.errors import AuthenticationFailed, DependencyMissing, MappingError, TransientError
from providers.plan import is_placeholder
from providers.registry import kind as provider_kind
from providers.vendor import VendorProvider

Provider = Any
"""A built provider (``providers.base.Provider``, with ``fetch`` where the vendor reads records)."""


def change(
    record: CWRecord, action: Action = Action.created, *, known: str | None = None, **kwargs: Any
) -> OutboundChange:
    """A change of ``record`` with a fresh idempotency key (each one a new message)."""
    return OutboundChange(
        idempotency_key=uuid.uuid4().hex,
        entity=Entity(type(record).__name__.lower()),
        action=action,
        cw_id=record.id,
        record=record,
        known_external_id=known,
        **kwargs,
    )


def same_target(shown_url: str, sent_path: str) -> bool:
    """Does a previewed URL name the path a push sent, a placeholder (``<id of …>``) standing for an id?"""
    shown = unquote(urlsplit(shown_url).path).strip("/").split("/")
    sent = unquote(sent_path.split("?")[0]).strip("/").split("/")
    tail = shown[len(shown) - len(sent) :]
    return len(shown) >= len(sent) and all(
        a == b or is_placeholder(a) for a, b in zip(tail, sent, strict=True)
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The client session a vendor fake's provider is built with (the vendors' modules import it)."""
    async with aiohttp.ClientSession() as session:
        yield session


async def deleted_between_lookup_and_put(
    provider: Provider, fake: Any, record: CWRecord, updated: CWRecord, *, kind: str, vendor: str
) -> None:
    """A user deletes ``record`` in the ERP just before our PUT of ``updated``: a transient error;
    the next attempt looks again and re-creates it. ``kind``: the fake's name of the collection."""
    created = await provider.push(change(record))
    fake.fail_next(1, 404, on=f"PUT /{kind}")  # a user deleted it just before our PUT
    with pytest.raises(TransientError, match=f"deleted in {vendor} while we wrote it"):
        await provider.push(change(updated, Action.updated, known=created.external_id))

    assert created.external_id is not None
    fake.user_delete(kind, int(created.external_id))
    again = await provider.push(change(updated, Action.updated, known=created.external_id))
    assert again.outcome == "created", "the next attempt looks again: CW's change re-creates it"


class Harness(ABC):
    """One vendor's fake as the contract drives it."""

    kind: ClassVar[str]
    customer: CWRecord
    supplier: CWRecord
    invoice: Invoice
    required_credential: ClassVar[str]
    """A credential without which nothing can be sent."""
    has_tokens: ClassVar[bool] = True
    has_vat_codes: ClassVar[bool] = True
    looks_up_parents: ClassVar[bool] = True
    """False where a record names its parent by CW id and the ERP does the rest (generic REST)."""
    reads_records: ClassVar[bool] = True

    @abstractmethod
    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> Provider:
        """A provider of the connection to the fake, ``settings``/``credentials`` merged over the defaults."""

    @abstractmethod
    async def count(self, entity: Entity) -> int:
        """How many records of ``entity`` the ERP holds."""

    @abstractmethod
    async def fail_next_429(self, retry_after: int) -> None:
        """The next API request is answered 429 with ``Retry-After``."""

    @abstractmethod
    def sent(self) -> list[float]:
        """When each API request reached the ERP (``time.monotonic()``), in order."""

    @abstractmethod
    def writes(self) -> list[str]:
        """The API writes (not GETs, not token requests) that reached the ERP: "METHOD /path"."""

    @abstractmethod
    def secrets(self) -> list[str]:
        """Credential values that must never appear in a preview."""

    def expire_tokens(self) -> None:
        raise NotImplementedError

    def token_requests(self) -> int:
        raise NotImplementedError

    async def with_customer(self, provider: Provider) -> PushResult:
        """Make sure the ERP holds ``customer`` (an invoice needs it)."""
        result: PushResult = await provider.push(change(self.customer))
        return result

    def orphan(self) -> CWRecord:
        """A record whose parent (its customer) is not in the ERP."""
        return self.invoice.model_copy(update={"customer_number": "4040"})

    def listen(self) -> None:  # noqa: B027 - optional: most fakes render a callback on demand
        """Subscribe to the ERP's webhooks (before ``our_webhook_author``)."""

    async def our_webhook_author(self, provider: Provider, pushed: PushResult) -> str | None:
        """The author the ERP's webhook names for our write ``pushed``."""
        raise NotImplementedError

    def read(self, provider: Provider) -> Awaitable[Any]:
        """A read of this connection that is not a push (``fetch`` where the ERP offers it)."""
        read: Awaitable[Any] = (
            provider.fetch(Entity.customer, "1") if self.reads_records else provider.check()
        )
        return read


class FakeHarness(Harness):
    """A harness around one of the vendor fakes of ``tests/fakes``: they record when each request
    came, count token requests, and keep the webhooks they fired (``callbacks``)."""

    fake: Any
    hook_secret = "s3cret"

    def sent(self) -> list[float]:
        times: list[float] = self.fake.times
        return times

    def expire_tokens(self) -> None:
        self.fake.expire_tokens()

    def token_requests(self) -> int:
        count: int = self.fake.token_requests
        return count

    async def delivered_author(
        self, parse: Callable[..., list[InboundChange]], pushed: PushResult
    ) -> str | None:
        """The author of the last webhook the fake fired (at a URL nobody listens on), which must be
        the one of our write ``pushed``."""
        await self.fake.callbacks.drain()
        delivery = self.fake.callbacks.deliveries[-1]
        [inbound] = parse(delivery.headers, delivery.body, secret=self.hook_secret)
        assert inbound.external_id == pushed.external_id
        return inbound.author


class ProviderContract:
    """The shared tests; a subclass provides the ``erp`` fixture."""

    # -- exactly once in effect ----------------------------------------------------------------

    async def test_redelivery_without_known_id_does_not_duplicate(self, erp: Harness) -> None:
        first = await erp.make().push(change(erp.customer))
        again = await erp.make().push(change(erp.customer))
        assert first.outcome == "created" and again.outcome in ("updated", "unchanged")
        assert again.external_id == first.external_id and await erp.count(Entity.customer) == 1

    async def test_recovering_lookup_finds_what_reached_the_erp(self, erp: Harness) -> None:
        first = await erp.make().push(change(erp.supplier))
        again = await erp.make().push(change(erp.supplier, recovering=True))
        assert again.outcome in ("updated", "unchanged") and again.external_id == first.external_id
        assert await erp.count(Entity.supplier) == 1

    # -- the ERP's rate limit, shared by every message of the connection ------------------------

    async def test_429_with_retry_after_closes_the_window_for_the_next_push(self, erp: Harness) -> None:
        provider = erp.make()
        await erp.with_customer(provider)  # tokens and lookups out of the way
        await erp.fail_next_429(retry_after=1)
        with pytest.raises(TransientError) as caught:
            await provider.push(change(erp.customer, Action.updated))
        assert caught.value.retry_after == 1
        refused_at = erp.sent()[-1]

        # Another message's push waits for the window instead of earning a second 429.
        result = await provider.push(change(erp.supplier))
        assert result.outcome == "created"
        after = erp.sent()[erp.sent().index(refused_at) + 1 :]
        assert after and min(after) >= refused_at + 1.0

    async def test_rate_cap_holds_across_pushes_and_reads(self, erp: Harness) -> None:
        provider = erp.make({"max_requests_per_minute": "2"})
        tasks = [
            asyncio.ensure_future(provider.push(change(erp.customer))),
            asyncio.ensure_future(provider.push(change(erp.supplier))),
            asyncio.ensure_future(erp.read(provider)),
        ]
        for _ in range(200):
            if len(erp.sent()) >= 2:
                break
            await asyncio.sleep(0.005)
        for _ in range(20):
            await asyncio.sleep(0)
        try:
            assert len(erp.sent()) == 2 and not all(task.done() for task in tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- credentials -------------------------------------------------------------------------------

    async def test_expired_token_is_refreshed_once(self, erp: Harness) -> None:
        if not erp.has_tokens:
            pytest.skip(f"{erp.kind} sends a fixed token")
        provider = erp.make()
        await provider.push(change(erp.customer))
        erp.expire_tokens()
        result = await provider.push(change(erp.supplier))
        assert result.outcome == "created" and erp.token_requests() == 2

    async def test_missing_credential_is_named_with_its_fix(self, erp: Harness) -> None:
        name = erp.required_credential
        with pytest.raises(AuthenticationFailed) as caught:
            await erp.make(credentials={name: ""}).push(change(erp.customer))
        assert name in str(caught.value)
        assert f"cwi connections set acme {erp.kind} --credential {name}=" in str(caught.value)
        assert erp.sent() == []

    # -- settings ------------------------------------------------------------------------------------

    async def test_missing_vat_setting_names_the_setting_and_its_fix(self, erp: Harness) -> None:
        if not erp.has_vat_codes:
            pytest.skip(f"{erp.kind} takes the VAT rate itself")
        provider = erp.make()
        await erp.with_customer(provider)
        line = erp.invoice.lines[0].model_copy(update={"vat_rate": Decimal("15.00")})
        with pytest.raises(
            MappingError, match=rf"vat_code\.15 .*cwi connections set acme {erp.kind} --setting vat_code\.15="
        ):
            await provider.push(change(erp.invoice.model_copy(update={"lines": [line]})))
        assert await erp.count(Entity.invoice) == 0

    def test_setting_schema_rejects_bad_values_when_set(self, erp: Harness) -> None:
        problems = provider_kind(erp.kind).setting_problems(
            {"max_requests_per_minute": "soon", "no_such_setting": "1"}
        )
        assert any("max_requests_per_minute" in p and "'soon'" in p for p in problems)
        assert any(p.startswith("unknown setting no_such_setting") for p in problems)

    # -- a child before its parent -------------------------------------------------------------------

    async def test_child_whose_parent_is_missing_waits(self, erp: Harness) -> None:
        if not erp.looks_up_parents:
            pytest.skip(f"{erp.kind} keeps a record's references as CW ids")
        with pytest.raises(DependencyMissing, match=r"4040 is not in .* yet") as caught:
            await erp.make().push(change(erp.orphan()))
        assert isinstance(caught.value, TransientError) and caught.value.retry_after
        assert await erp.count(Entity.invoice) == 0

    # -- connections test, identity ------------------------------------------------------------------

    async def test_connections_test_names_the_identity_our_webhooks_carry(self, erp: Harness) -> None:
        provider = erp.make()
        summary = await provider.check()
        assert summary.startswith(f"{erp.kind} at ")
        if not isinstance(provider, VendorProvider):
            return  # generic REST discovers its identity by its own interface (_ping)
        identity = await provider.identity()
        assert identity and f"changes we make carry author {identity}" in summary
        erp.listen()
        pushed = await provider.push(change(erp.customer))
        assert await erp.our_webhook_author(provider, pushed) == identity

    async def test_connections_test_with_wrong_credentials_fails(self, erp: Harness) -> None:
        name = erp.required_credential
        with pytest.raises(AuthenticationFailed):
            await erp.make(credentials={name: "wrong-" + uuid.uuid4().hex[:8]}).check()

    # -- preview ---------------------------------------------------------------------------------------

    async def test_preview_redacts_secrets_and_sends_nothing(self, erp: Harness) -> None:
        provider = erp.make()
        requests = [*provider.preview(change(erp.customer)), *provider.preview(change(erp.invoice))]
        assert requests and all(r.headers.get("Authorization") == "***" for r in requests)
        shown = repr(requests)
        assert not [s for s in erp.secrets() if s in shown]
        assert erp.sent() == []

    async def test_preview_is_the_plan_push_executes(self, erp: Harness) -> None:
        provider = erp.make()
        await erp.with_customer(provider)
        for record in (erp.supplier, erp.invoice):
            shown = provider.preview(change(record))
            before = len(erp.writes())
            await provider.push(change(record))
            sent = erp.writes()[before:]
            assert [r.method for r in shown] == [w.split()[0] for w in sent], (shown, sent)
            # Each shown URL is the sent one, but for the ids a preview can only name.
            assert all(same_target(r.url, w.split()[1]) for r, w in zip(shown, sent, strict=True)), (
                shown,
                sent,
            )

    # -- reconciliation: listings, point reads -------------------------------------------------------

    async def test_listing_reads_every_record_then_only_those_changed_after_the_anchor(
        self, erp: Harness
    ) -> None:
        provider = erp.make()
        first = await erp.with_customer(provider)
        pages = [page async for page in provider.list_records(Entity.customer, None, page_size=1)]
        listed = {item.external_id: item for page in pages for item in page.items}
        assert first.external_id in listed and pages[-1].anchor
        draft = provider.to_cw(Entity.customer, listed[str(first.external_id)].value)
        assert draft.fields["number"] == erp.customer.number

        other = erp.customer.model_copy(update={"id": "c-other", "number": "10077"})
        second = await provider.push(change(other))
        since = [page async for page in provider.list_records(Entity.customer, pages[-1].anchor)]
        changed = [item.external_id for page in since for item in page.items]
        assert changed == [second.external_id]

    async def test_a_record_is_read_by_its_id_or_its_number_and_a_missing_one_is_none(
        self, erp: Harness
    ) -> None:
        provider = erp.make()
        pushed = await erp.with_customer(provider)
        number, cw_id = erp.customer.number, erp.customer.id
        by_id = await provider.read_record(
            Entity.customer, external_id=pushed.external_id, cw_id=cw_id, number=number
        )
        by_number = await provider.read_record(Entity.customer, external_id=None, cw_id=cw_id, number=number)
        assert by_id is not None and by_number is not None
        assert by_id.external_id == by_number.external_id == pushed.external_id
        missing = await provider.read_record(Entity.customer, external_id=None, cw_id="nope", number="4040")
        assert missing is None

    # -- mapping validation --------------------------------------------------------------------------

    async def test_mapping_validation_names_settings_the_erp_does_not_know(self, erp: Harness) -> None:
        provider = erp.make({"vat_code.25": "9999"})
        references = getattr(provider, "references", ())
        if not references:
            pytest.skip(f"{erp.kind}'s settings name nothing in the ERP")
        problems = await mapping_problems(provider, provider.settings, erp.kind)
        assert [p.setting for p in problems] == ["vat_code.25"]
        assert f"cwi connections set acme {erp.kind} --setting vat_code.25=" in problems[0].message
        assert await mapping_problems(erp.make(), erp.make().settings, erp.kind) == []
