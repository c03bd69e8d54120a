"""Standard Webhooks verification and parsing of the generic REST callbacks, cross-checked with the
``standardwebhooks`` reference package."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contracts import Action, Entity
from providers.base import WebhookRejected
from providers.generic_rest.webhooks import parse_webhook, sign

SECRET = "whsec_" + base64.b64encode(b"a 32-byte key for the unit tests").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody else's key, not ours!!!").decode()
NOW = 1_750_000_000


def event(type_: str = "customer.updated", **data: Any) -> bytes:
    payload = {
        "type": type_,
        "timestamp": "2025-06-15T15:06:40+00:00",
        "data": {
            "entity": type_.partition(".")[0],
            "cw_id": "c-1",
            "external_id": "GR-customer-1",
            "version": 3,
            "author": "anna@erp",
            "record": {"id": "c-1", "number": "1001", "name": "Acme AS"},
            **data,
        },
    }
    return json.dumps(payload).encode()


def signed(body: bytes, *, secret: str = SECRET, msg_id: str = "msg_1", ts: int = NOW) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def rejection(headers: dict[str, str], body: bytes, **kwargs: Any) -> str:
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, body, secret=SECRET, now=NOW, **kwargs)
    return caught.value.reason


def test_a_good_signature_is_accepted_and_parsed() -> None:
    body = event()
    [change] = parse_webhook(signed(body), body, secret=SECRET, now=NOW)
    assert change.entity is Entity.customer
    assert change.action is Action.updated
    assert change.external_id == "GR-customer-1"
    assert change.version == "3"
    assert change.author == "anna@erp"
    assert change.value == {"id": "c-1", "number": "1001", "name": "Acme AS"}
    assert change.event_id == "msg_1"


def test_a_deletion_without_record_or_author_is_parsed() -> None:
    body = event("invoice.deleted", record=None, author=None, external_id="GR-invoice-9", version=4)
    [change] = parse_webhook(signed(body), body, secret=SECRET, now=NOW)
    assert (change.entity, change.action, change.external_id, change.value) == (
        Entity.invoice,
        Action.deleted,
        "GR-invoice-9",
        None,
    )


def test_header_names_are_case_insensitive() -> None:
    body = event()
    headers = {k.upper(): v for k, v in signed(body).items()}
    assert len(parse_webhook(headers, body, secret=SECRET, now=NOW)) == 1


def test_any_one_of_several_signatures_is_enough() -> None:
    body = event()
    headers = signed(body)
    ours = headers["webhook-signature"]
    theirs = sign(OTHER_SECRET, "msg_1", NOW, body)
    headers["webhook-signature"] = f"v1a,c29tZXRoaW5n {theirs} v1,!!notbase64 {ours}"
    assert len(parse_webhook(headers, body, secret=SECRET, now=NOW)) == 1


def test_a_tampered_body_is_rejected() -> None:
    body = event()
    headers = signed(body)
    assert rejection(headers, body.replace(b"Acme AS", b"Evil AS")) == "bad_signature"


def test_the_wrong_secret_is_rejected() -> None:
    body = event()
    assert rejection(signed(body, secret=OTHER_SECRET), body) == "bad_signature"


def test_a_signature_for_another_message_id_is_rejected() -> None:
    body = event()
    headers = signed(body)
    headers["webhook-id"] = "msg_2"
    assert rejection(headers, body) == "bad_signature"


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_rejected(header: str) -> None:
    body = event()
    headers = signed(body)
    del headers[header]
    assert rejection(headers, body) == "missing_signature"


def test_a_non_numeric_timestamp_is_rejected() -> None:
    body = event()
    headers = signed(body)
    headers["webhook-timestamp"] = "yesterday"
    assert rejection(headers, body) == "bad_signature"


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_stale(skew: int) -> None:
    body = event()
    assert rejection(signed(body, ts=NOW + skew), body) == "stale_timestamp"


def test_a_timestamp_inside_the_tolerance_is_accepted() -> None:
    body = event()
    assert len(parse_webhook(signed(body, ts=NOW - 299), body, secret=SECRET, now=NOW)) == 1


def test_the_tolerance_is_configurable() -> None:
    body = event()
    assert rejection(signed(body, ts=NOW - 61), body, tolerance_s=60) == "stale_timestamp"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"type": "customer.renamed", "timestamp": "2025-06-15T15:06:40Z", "data": {}}).encode(),
        event("customer.updated", entity="invoice"),
        event("customer.updated", version="3"),
        event("customer.updated", external_id=""),
        json.dumps({"type": "customer.created", "timestamp": "2025-06-15T15:06:40", "data": {}}).encode(),
    ],
    ids=["not-json", "array", "unknown-type", "entity-mismatch", "string-version", "empty-id", "naive-ts"],
)
def test_an_authentic_but_unreadable_body_is_malformed(body: bytes) -> None:
    assert rejection(signed(body), body) == "malformed"


# Interoperability with the reference implementation (standardwebhooks on PyPI).


def test_the_reference_signer_is_accepted_by_our_verifier() -> None:
    body = event()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    reference = Webhook(SECRET).sign("msg_ref", dt.datetime.fromtimestamp(now, dt.UTC), body.decode())
    headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(now), "webhook-signature": reference}
    assert parse_webhook(headers, body, secret=SECRET)[0].event_id == "msg_ref"


def test_our_signer_is_accepted_by_the_reference_verifier() -> None:
    body = event()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = signed(body, msg_id="msg_ours", ts=now)
    assert Webhook(SECRET).verify(body, headers)["data"]["external_id"] == "GR-customer-1"
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(body, headers)


def test_our_signature_equals_the_reference_signature() -> None:
    body = event()
    reference = Webhook(SECRET).sign("msg_x", dt.datetime.fromtimestamp(NOW, dt.UTC), body.decode())
    assert sign(SECRET, "msg_x", NOW, body) == reference


def test_a_secret_that_is_not_base64_is_a_configuration_error() -> None:
    body = event()
    with pytest.raises(ValueError, match="base64"):
        parse_webhook(signed(body), body, secret="whsec_not*base64", now=NOW)
