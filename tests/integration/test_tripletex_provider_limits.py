"""The Tripletex provider against the fake Tripletex: its rate-limit window, errors, the session
token and its identity, the connections test, preview, and the webhook of our own write."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts import Action
from providers.errors import AuthenticationFailed, DependencyMissing, ProviderRejected, TransientError
from providers.tripletex.webhooks import parse_webhook
from tests.fakes.tripletex import FakeTripletex
from tests.integration.provider_contract import change, http
from tests.integration.tripletex_rig import CUSTOMER, INVOICE, PROJECT, SUPPLIER, Make, erp, fake, make

__all__ = ["erp", "fake", "http", "make"]  # the fixtures


async def test_429_carries_reset_and_closes_the_window(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    fake.fail_next(1, 429, reset=17)
    with pytest.raises(TransientError) as caught:
        await provider.push(change(CUSTOMER))
    assert caught.value.retry_after == 17.0

    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up") as again:
        await provider.push(change(SUPPLIER))
    assert again.value.retry_after is not None and 16 < again.value.retry_after <= 17
    assert len(fake.requests) == sent


async def test_remaining_zero_on_an_error_response_closes_the_window(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.push(change(CUSTOMER))
    fake.rate_remaining = 0  # on the failure only: the headers are fixed when it is injected
    fake.fail_next(1, 422, on="POST /supplier", reset=40, fields={"name": "Ugyldig"})
    fake.rate_remaining = 100
    with pytest.raises(ProviderRejected):
        await provider.push(change(SUPPLIER))
    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up"):
        await provider.push(change(CUSTOMER, Action.updated))
    assert len(fake.requests) == sent


async def test_429_without_reset_header_falls_back_to_default(fake: FakeTripletex, make: Make) -> None:
    fake.fail_next(1, 429, reset=None)
    with pytest.raises(TransientError) as caught:
        await make().push(change(CUSTOMER))
    assert caught.value.retry_after == 5.0


async def test_exhausted_window_is_not_spent_on_a_certain_429(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.push(change(CUSTOMER))
    fake.rate_remaining, fake.rate_reset = 0, 40
    await provider.check()  # one request, answered with "0 remaining, reset in 40 s"
    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up") as caught:
        await provider.push(change(SUPPLIER))
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 40
    assert len(fake.requests) == sent


async def test_server_error_is_transient(fake: FakeTripletex, make: Make) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(TransientError, match="HTTP 503"):
        await make().push(change(CUSTOMER))


async def test_validation_error_carries_tripletex_message(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    fake.fail_next(1, 422, on="POST /customer", fields={"organizationNumber": "Ugyldig organisasjonsnummer"})
    with pytest.raises(ProviderRejected, match=r"Injected failure; organizationNumber: Ugyldig.*requestId"):
        await provider.push(change(CUSTOMER))


async def test_token_is_replaced_a_day_before_it_expires(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.check()
    provider._client.today = lambda: fake.today + dt.timedelta(days=1)
    await provider.check()
    # session, whoAmI, session, whoAmI: the second token came before any 401 could
    assert fake.sessions_created == 2 and len(fake.requests) == 4


async def test_revoked_credentials_fail_with_operator_advice(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.push(change(CUSTOMER))
    fake.revoke()
    with pytest.raises(
        AuthenticationFailed, match=r"employee_token.*cwi connections set acme tripletex --credential"
    ):
        await provider.push(change(SUPPLIER))


async def test_check_ok(fake: FakeTripletex, make: Make) -> None:
    summary = await make().check()
    assert summary == (
        f"tripletex at {fake.base_url}: authenticated as employee 7 (API Integration) of company 42; "
        "changes we make carry author 7"
    )


async def test_api_employee_id_overrides_the_discovered_identity(fake: FakeTripletex, make: Make) -> None:
    provider = make({"api_employee_id": "12"})
    result = await provider.push(change(CUSTOMER))
    assert await provider.identity() == "12" == result.author
    assert not any("whoAmI" in request for request in fake.requests)


async def test_project_whose_customer_is_missing_waits(fake: FakeTripletex, make: Make) -> None:
    with pytest.raises(DependencyMissing, match="customer number 1001 is not in Tripletex yet") as caught:
        await make().push(change(PROJECT))
    assert caught.value.retry_after == 60.0 and fake.objects("project") == []


async def test_check_with_bad_credentials(make: Make) -> None:
    with pytest.raises(AuthenticationFailed, match="Invalid consumer or employee token"):
        await make(credentials={"consumer_token": "wrong", "employee_token": "wrong"}).check()


async def test_preview_names_what_push_would_look_up(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    [post, charge] = provider.preview(change(INVOICE))
    [create] = provider.preview(change(CUSTOMER))

    assert post.method == "POST" and post.url == f"{fake.base_url}/order"
    assert charge.url.endswith(":invoice?invoiceDate=2024-05-02&sendToCustomer=false")
    assert create.json["postalAddress"]["country"] == {"id": "<id of country NO>"}


async def test_webhook_for_our_own_write_names_us_and_the_version(fake: FakeTripletex, make: Make) -> None:
    result = await make().push(change(CUSTOMER))
    headers, body = fake.callback("customer.create", "customer", int(str(result.external_id)), "s3cret")

    [inbound] = parse_webhook(headers, body, secret="s3cret")
    assert (inbound.external_id, inbound.version, inbound.author) == (result.external_id, "0", result.author)
