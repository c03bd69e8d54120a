"""The parts every provider shares: versions, the connection throttle, the token cache, settings."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from providers.errors import AuthenticationFailed, MappingError, TransientError
from providers.http import (
    MAX_WAIT_HINT_S,
    ConnectionThrottle,
    HttpResponse,
    RateHeaders,
    Token,
    TokenCache,
    reset_seconds,
    retry_after_seconds,
    token_lifetime,
)
from providers.registry import KINDS, kind
from providers.settings import SettingsReader
from providers.versions import compare_versions

# -- versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind_", "a", "b", "expected"),
    [
        ("integer", "9", "10", -1),
        ("integer", "10", "9", 1),
        ("integer", "7", "7", 0),
        ("integer", "-1", "0", -1),
        ("integer", "x", "1", None),
        ("timestamp", "2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00", 0),
        ("timestamp", "2024-05-01T10:00:00.123Z", "2024-05-01T10:00:00.124Z", -1),
        ("timestamp", "2024-05-01T10:00:01+00:00", "2024-05-01T12:00:00+02:00", 1),
        ("timestamp", "2024-05-01T10:00:00", "2024-05-01T10:00:00Z", 0),  # no offset: UTC
        ("timestamp", "2024-05-01T09:59:59-00:30", "2024-05-01T10:00:00Z", 1),
        ("timestamp", "yesterday", "2024-05-01T10:00:00Z", None),
        ("opaque", "etag-1", "etag-1", 0),
        ("opaque", "etag-1", "etag-2", None),
    ],
)
def test_versions_compare_by_their_kind(kind_: str, a: str, b: str, expected: int | None) -> None:
    found = compare_versions(kind_, a, b)  # type: ignore[arg-type]
    assert (None if found is None else (found > 0) - (found < 0)) == expected


def test_every_kind_declares_its_version_kind() -> None:
    assert {name: kind(name).version_kind for name in KINDS} == {
        "generic_rest": "integer",
        "tripletex": "integer",
        "visma_net": "timestamp",
        "uni_economy": "timestamp",
    }


# -- the connection throttle -----------------------------------------------------------------------


def response(status: int, **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, b"")


@pytest.mark.parametrize("status", [200, 422, 503])
def test_remaining_zero_closes_the_window_whatever_the_status(status: int) -> None:
    throttle = ConnectionThrottle(None, RateHeaders("X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"))
    throttle.note(response(status, **{"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "30"}))
    assert 29 < throttle.closed_for <= 30


def test_a_429_closes_the_window_by_retry_after_then_reset_then_default() -> None:
    throttle = ConnectionThrottle(None, RateHeaders(default_429_wait=5.0))
    assert throttle.note(response(429, **{"Retry-After": "2", "X-RateLimit-Reset": "30"})) == 2
    assert throttle.note(response(429, **{"X-RateLimit-Reset": str(int(time.time()) + 20)})) == pytest.approx(
        20, abs=1.5
    )
    assert throttle.note(response(429)) == 5.0
    assert 18 < throttle.closed_for <= 20  # the latest reopening wins


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        ("-5", 0.0),
        ("inf", MAX_WAIT_HINT_S),
        ("1e12", MAX_WAIT_HINT_S),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_WAIT_HINT_S),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("nan", None),
        ("soon", None),
    ],
)
def test_a_wait_header_is_taken_at_most_at_a_day(value: str, expected: float | None) -> None:
    assert retry_after_seconds({"Retry-After": value}) == expected
    if not value.startswith(("Fri", "Thu")):
        assert reset_seconds({"X-RateLimit-Reset": value}, "X-RateLimit-Reset") == expected


def test_a_429_asking_for_ever_closes_the_window_for_a_day() -> None:
    throttle = ConnectionThrottle(None)
    assert throttle.note(response(429, **{"Retry-After": "1e300"})) == MAX_WAIT_HINT_S
    assert MAX_WAIT_HINT_S - 5 < throttle.closed_for <= MAX_WAIT_HINT_S


@pytest.mark.parametrize(
    ("answered", "expected"),
    [(3600, 3600.0), ("120", 120.0), (None, 300.0), ("soon", 300.0), ("NaN", 300.0), (-5, 300.0),
     (0, 300.0), (float("inf"), 300.0), ([1], 300.0)],
)  # fmt: skip
def test_a_token_lifetime_that_is_no_lifetime_is_the_default(answered: object, expected: float) -> None:
    assert token_lifetime(answered, 300.0) == expected


async def test_a_long_closed_window_is_handed_to_the_retry_without_waiting() -> None:
    throttle = ConnectionThrottle(None, max_wait_s=5.0)
    throttle.note(response(429, **{"Retry-After": "40"}))
    with pytest.raises(TransientError, match="rate limit used up") as caught:
        await throttle.acquire()
    assert caught.value.retry_after is not None and 39 < caught.value.retry_after <= 40


async def test_a_short_closed_window_is_waited_for() -> None:
    throttle = ConnectionThrottle(None)
    throttle.note(response(429, **{"Retry-After": "0.05"}))
    await throttle.acquire()
    assert throttle.closed_for == 0


def test_a_bad_rate_cap_setting_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="max_requests_per_minute"):
        ConnectionThrottle.from_settings(reader(max_requests_per_minute="0"))


# -- the token cache -------------------------------------------------------------------------------


async def test_concurrent_401s_refresh_the_token_once() -> None:
    issued: list[str] = []

    async def fetch() -> Token:
        issued.append(f"t{len(issued)}")
        return Token(issued[-1], lambda: True)

    cache = TokenCache(fetch)
    await cache.get()

    async def send(token: str) -> HttpResponse:
        await asyncio.sleep(0)
        return response(401 if token == "t0" else 200)

    answers = await asyncio.gather(*(cache.call(send) for _ in range(5)))
    assert [a.status for a in answers] == [200] * 5 and issued == ["t0", "t1"]


async def test_a_stale_token_is_replaced_before_use() -> None:
    fresh = {"t0": False}
    issued: list[str] = []

    async def fetch() -> Token:
        issued.append(f"t{len(issued)}")
        return Token(issued[-1], lambda: fresh.get(issued[-1], True))

    cache = TokenCache(fetch)
    assert await cache.get() == "t0"
    assert await cache.get() == "t1"


# -- settings ----------------------------------------------------------------------------------------


def reader(**settings: str) -> SettingsReader:
    return SettingsReader("acme", "visma_net", settings, {"client_id": "x"})


def test_vat_codes_by_rate_and_back_name_the_fix() -> None:
    settings = reader(**{"vat_code.25.00": "3", "vat_code.0": "5"})
    assert settings.vat_code(Decimal("25")) == "3" and settings.vat_rate("5", "Visma.net VAT code") == "0"
    with pytest.raises(MappingError, match=r"vat_code\.15 \(cwi connections set acme visma_net --setting"):
        settings.vat_code(Decimal("15.0"))
    with pytest.raises(MappingError, match=r"'9' is named by 0 .*cwi connections set acme visma_net"):
        settings.vat_rate("9", "Visma.net VAT code")


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("release_invoices", "yes", lambda s: s.flag("release_invoices")),
        ("department_id", "four", lambda s: s.integer("department_id")),
        ("timeout_s", "-1", lambda s: s.positive_number("timeout_s", 30.0)),
        ("reconcile_schedule", "0 0 31 2 *", lambda s: s.cron("reconcile_schedule")),  # never fires
    ],
)
def test_every_setting_error_names_the_command_that_fixes_it(name: str, value: str, read: object) -> None:
    with pytest.raises(
        MappingError, match=rf"setting {name}: .*cwi connections set acme visma_net --setting"
    ):
        read(reader(**{name: value}))  # type: ignore[operator]


def test_a_missing_credential_names_the_command() -> None:
    with pytest.raises(
        AuthenticationFailed, match=r"no credential client_secret.*--credential client_secret="
    ):
        reader().credential("client_secret")


def test_each_kind_validates_its_settings_when_they_are_set() -> None:
    assert kind("tripletex").setting_problems({"vat_code.25": "3", "send_invoices": "true"}) == []
    assert kind("tripletex").setting_problems({"vat_code.25": "high", "vat_code.x": "3"}) == [
        "setting vat_code.25: 'high' is not a whole number",
        "setting vat_code.x: 'x' after 'vat_code.' is not a VAT rate in percent",
    ]
    assert kind("visma_net").setting_problems({"release_invoices": "maybe"}) == [
        "setting release_invoices: 'maybe' must be true or false"
    ]


async def test_a_canonical_json_body_is_sent_as_encoded_and_hashed_as_the_payload() -> None:
    """A real local server reads what ``send`` put on the wire."""
    import json

    import aiohttp
    from aiohttp import web

    from providers.base import CanonicalJson, content_hash
    from providers.http import send

    seen: dict[str, object] = {}

    async def put(request: web.Request) -> web.Response:
        seen["type"], seen["body"] = request.content_type, await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_put("/x", put)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    payload = {"name": "Ærø AS", "b": [1, 2.5, None], "a": {"z": True, "y": "x"}}
    body = CanonicalJson.of(payload)
    try:
        async with aiohttp.ClientSession() as session:
            resp = await send(session, "PUT", f"http://127.0.0.1:{port}/x", json_body=body)
    finally:
        await runner.cleanup()
    assert resp.status == 200
    assert seen["type"] == "application/json"
    assert seen["body"] == b'{"a":{"y":"x","z":true},"b":[1,2.5,null],"name":"\\u00c6r\\u00f8 AS"}'
    assert json.loads(body) == payload
    assert body.content_hash == content_hash(payload) == content_hash(json.loads(body))
