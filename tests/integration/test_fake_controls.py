"""The fakes' control endpoints: a "user" changes records over HTTP and the fake calls back, signed."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import pytest

from providers.base import InboundChange
from providers.generic_rest.sandbox.firing import Disorder
from providers.tripletex.webhooks import parse_webhook as tripletex_parse
from providers.uni_economy.webhooks import parse_webhook as uni_parse
from providers.visma_net.webhooks import parse_webhook as visma_parse
from tests.fakes.control import control
from tests.fakes.receiver import serve_receiver
from tests.fakes.serve import KINDS, serve_fake, serve_in_thread

SECRET = "whsec-control-1"
Parse = Callable[..., list[InboundChange]]
# Per fake: its kind name for customers, a new customer as its UI would make it, the key of the
# answer that identifies it, a field to edit, and the vendor's webhook parser.
CASES: Mapping[str, tuple[str, dict[str, Any], str, dict[str, Any], Parse]] = {
    "tripletex": (
        "customer",
        {"name": "Hand AS", "customerNumber": 4242},
        "id",
        {"name": "Hand 2"},
        tripletex_parse,
    ),
    "uni_economy": (
        "customers",
        {"CustomerNumber": 4242, "Info": {"Name": "Hand AS"}},
        "ID",
        {"OrgNumber": "123456789"},
        uni_parse,
    ),
    "visma_net": (
        "customer",
        {"number": "4242", "name": "Hand AS"},
        "number",
        {"name": "Hand 2"},
        visma_parse,
    ),
}


async def post(http: aiohttp.ClientSession, base_url: str, action: str, body: dict[str, Any]) -> Any:
    root = base_url.removesuffix("/v2")
    async with http.post(f"{root}/_control/{action}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.mark.parametrize("kind", KINDS)
async def test_user_changes_through_the_control_endpoints_are_called_back(kind: str) -> None:
    entity, value, key, fields, parse = CASES[kind]
    async with serve_fake(kind) as served, serve_receiver() as hook, aiohttp.ClientSession() as http:
        await post(http, served.base_url, "webhook", {"url": hook.url, "secret": SECRET})
        made = await post(http, served.base_url, "user_create", {"kind": entity, "value": value})
        await post(http, served.base_url, "user_update", {"kind": entity, "id": made[key], "fields": fields})
        await post(http, served.base_url, "user_delete", {"kind": entity, "id": made[key]})

        changes = [parse(*await hook.next(), secret=SECRET, settings=served.settings)[0] for _ in range(3)]

    assert [c.action.value for c in changes] == ["created", "updated", "deleted"]
    assert {c.external_id for c in changes} == {str(made[key])}
    assert changes[0].version != changes[1].version


def test_the_control_helper_reaches_a_fake_in_another_thread() -> None:
    with serve_in_thread("visma_net") as served:
        made = control(
            served.base_url, "user_create", {"kind": "customer", "value": {"number": "7", "name": "T"}}
        )
        with pytest.raises(Exception, match="404"):
            control(served.base_url, "user_update", {"kind": "customer", "id": "nobody", "fields": {}})

    assert made["number"] == "7" and made["lastModifiedDateTime"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fakes_callbacks_can_come_late_out_of_order_and_twice_and_its_api_writes_are_logged(
    kind: str,
) -> None:
    entity, value, key, fields, parse = CASES[kind]
    async with serve_fake(kind) as served, serve_receiver() as hook, aiohttp.ClientSession() as http:
        served.fake.callbacks.disorder = Disorder(max_delay_s=0.2, duplicate_rate=0.5, rng=random.Random(4))
        await post(http, served.base_url, "webhook", {"url": hook.url, "secret": SECRET})
        made = await post(http, served.base_url, "user_create", {"kind": entity, "value": value})
        for _ in range(12):
            await post(
                http, served.base_url, "user_update", {"kind": entity, "id": made[key], "fields": fields}
            )
        await served.fake.callbacks.drain()
        calls = [hook.calls.get_nowait() for _ in range(hook.calls.qsize())]

    assert len(calls) > 13 and len({body for _, body in calls}) == 13, "each change came, some twice"
    versions = [parse(h, b, secret=SECRET, settings=served.settings)[0].version for h, b in calls]
    assert versions != sorted(versions, key=lambda v: (len(v or ""), v)), (
        "later changes overtook earlier ones"
    )
    assert served.fake.api_writes.writes == [], "a user's changes are not API writes"
