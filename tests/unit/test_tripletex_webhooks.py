"""Verification and parsing of Tripletex webhook callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from contracts import Action, Entity
from providers.base import WebhookRejected
from providers.tripletex.webhooks import parse_webhook, sign, signed_headers

SECRET = "S5Yd3Dz6FWmj7q2uA4Uy9KcQMGBVpJHeCbTgEnaw"
KEY = "3f1c9a2e-7d4b-4e55-9d0c-6a1b2c3d4e5f"
CHANGES = [
    {"employeeId": 99, "timestamp": "2024-05-01T10:00:00", "changeType": "CREATE"},
    {"employeeId": 7, "timestamp": "2024-05-02T09:30:00", "changeType": "UPDATE"},
]


def callback(event: str = "customer.update", value: Any = None, obj_id: int = 4711) -> bytes:
    if value is None and not event.endswith(".delete"):
        value = {"id": obj_id, "version": 3, "name": "Acme AS", "changes": CHANGES}
    return json.dumps({"subscriptionId": 12, "event": event, "id": obj_id, "value": value}).encode()


def test_signature_is_the_documented_hmac() -> None:
    body = callback()
    expected = hmac.new(SECRET.encode(), f"{KEY}&".encode() + body, hashlib.sha512).digest()
    assert sign(body, SECRET, idempotency_key=KEY) == base64.b64encode(expected).decode()


def test_good_signature_is_accepted_and_parsed() -> None:
    body = callback()
    [change] = parse_webhook(signed_headers(body, SECRET, idempotency_key=KEY), body, secret=SECRET)

    assert (change.entity, change.action, change.external_id) == (Entity.customer, Action.updated, "4711")
    assert (change.version, change.author, change.event_id) == ("3", "7", KEY)
    assert change.value is not None and change.value["name"] == "Acme AS"


def test_header_names_are_case_insensitive() -> None:
    body = callback()
    headers = {k.upper(): v for k, v in signed_headers(body, SECRET, idempotency_key=KEY).items()}
    assert len(parse_webhook(headers, body, secret=SECRET)) == 1


def test_delete_has_no_value_version_or_author() -> None:
    body = callback("supplier.delete")
    [change] = parse_webhook(signed_headers(body, SECRET, idempotency_key=KEY), body, secret=SECRET)
    assert (change.entity, change.action) == (Entity.supplier, Action.deleted)
    assert (change.value, change.version, change.author) == (None, None, None)


def test_invoice_charged_is_a_created_invoice() -> None:
    body = callback("invoice.charged", {"id": 88, "version": 1})
    [change] = parse_webhook(signed_headers(body, SECRET, idempotency_key=KEY), body, secret=SECRET)
    assert (change.entity, change.action, change.author) == (Entity.invoice, Action.created, None)


def test_events_cw_does_not_sync_are_ignored() -> None:
    body = callback("product.create")
    assert parse_webhook(signed_headers(body, SECRET, idempotency_key=KEY), body, secret=SECRET) == []


def test_tampered_body_is_rejected() -> None:
    headers = signed_headers(callback(), SECRET, idempotency_key=KEY)
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, callback(obj_id=4712), secret=SECRET)
    assert caught.value.reason == "bad_signature"


def test_replayed_signature_under_another_idempotency_key_is_rejected() -> None:
    body = callback()
    headers = {**signed_headers(body, SECRET, idempotency_key=KEY), "idempotency-key": "another-event"}
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, body, secret=SECRET)
    assert caught.value.reason == "bad_signature"


def test_wrong_secret_is_rejected() -> None:
    body = callback()
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(signed_headers(body, "not-the-secret", idempotency_key=KEY), body, secret=SECRET)
    assert caught.value.reason == "bad_signature"


def test_missing_signature_is_rejected() -> None:
    body = callback()
    headers = signed_headers(body, SECRET, idempotency_key=KEY)
    del headers["x-request-signature"]
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, body, secret=SECRET)
    assert caught.value.reason == "missing_signature"


def test_missing_idempotency_key_is_malformed() -> None:
    body = callback()
    headers = signed_headers(body, SECRET, idempotency_key=KEY)
    del headers["idempotency-key"]
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, body, secret=SECRET)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", json.dumps({"event": "customer.update"}).encode(), callback(value=[1, 2])],
    ids=["not-json", "not-object", "no-id", "value-not-object"],
)
def test_signed_but_unreadable_body_is_malformed(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(signed_headers(body, SECRET, idempotency_key=KEY), body, secret=SECRET)
    assert caught.value.reason == "malformed"
