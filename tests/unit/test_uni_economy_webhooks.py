"""Uni Economy webhook verification (Unimicro-/Softrig-Signature) and payload parsing."""

from __future__ import annotations

import json

import pytest

from contracts import Action, Entity
from providers.base import WebhookRejected
from providers.errors import MappingError
from providers.uni_economy.webhooks import parse_webhook, sign

SECRET = "whsec-uni-test"
NOW = 1_714_650_000
EVENT = {
    "EntityName": "Customer",
    "EventType": "Update",
    "EntityID": 1042,
    "Entity": {
        "ID": 1042,
        "UpdatedAt": "2024-05-02T11:40:00Z",
        "UpdatedBy": "user-guid",
        "CustomerNumber": 1001,
    },
}
BODY = json.dumps(EVENT).encode()


def test_good_signature_is_accepted_and_parsed() -> None:
    [change] = parse_webhook(sign(BODY, SECRET, timestamp=NOW), BODY, secret=SECRET, now=NOW)
    assert (change.entity, change.action, change.external_id) == (Entity.customer, Action.updated, "1042")
    assert (change.version, change.author) == ("2024-05-02T11:40:00Z", "user-guid")
    assert change.value is not None and change.value["CustomerNumber"] == 1001


def test_softrig_header_and_any_case_are_accepted() -> None:
    events = [
        {"entityName": "CUSTOMERINVOICE", "eventType": "create", "entityID": "7"},
        {"EntityName": "Supplier", "EventType": "Delete", "EntityID": 8, "Entity": None},
        {"EntityName": "Product", "EventType": "Create", "EntityID": 9},  # not synced: skipped
    ]
    body = json.dumps(events).encode()
    headers = {k.lower(): v for k, v in sign(body, SECRET, timestamp=NOW, header="Softrig-Signature").items()}
    changes = parse_webhook(headers, body, secret=SECRET, now=NOW)
    assert [(c.entity, c.action, c.external_id) for c in changes] == [
        (Entity.invoice, Action.created, "7"),
        (Entity.supplier, Action.deleted, "8"),
    ]
    assert changes[1].value is None and changes[1].version is None


def test_a_rotated_key_may_add_a_second_v1() -> None:
    [header] = sign(BODY, SECRET, timestamp=NOW).values()
    stale = sign(BODY, "old-secret", timestamp=NOW)["Unimicro-Signature"].split("v1=")[1]
    headers = {"Unimicro-Signature": f"{header},v1={stale}"}
    assert len(parse_webhook(headers, BODY, secret=SECRET, now=NOW)) == 1


@pytest.mark.parametrize(
    ("headers", "body", "secret", "reason"),
    [
        (sign(BODY, SECRET, timestamp=NOW), BODY.replace(b"1042", b"1043"), SECRET, "bad_signature"),
        (sign(BODY, SECRET, timestamp=NOW), BODY, "another-secret", "bad_signature"),
        (
            {
                "Unimicro-Signature": f"t={NOW + 1},v1="
                + sign(BODY, SECRET, timestamp=NOW)["Unimicro-Signature"][-64:]
            },
            BODY,
            SECRET,
            "bad_signature",
        ),
        ({}, BODY, SECRET, "missing_signature"),
        ({"Unimicro-Signature": "sha256=abc"}, BODY, SECRET, "malformed"),
        (sign(BODY, SECRET, timestamp=NOW - 301), BODY, SECRET, "stale_timestamp"),
        (sign(BODY, SECRET, timestamp=NOW + 301), BODY, SECRET, "stale_timestamp"),
        (sign(b"not json", SECRET, timestamp=NOW), b"not json", SECRET, "malformed"),
        (
            sign(b'{"EntityName": "Customer"}', SECRET, timestamp=NOW),
            b'{"EntityName": "Customer"}',
            SECRET,
            "malformed",
        ),
    ],
    ids=[
        "tampered-body",
        "wrong-secret",
        "moved-timestamp",
        "missing",
        "garbled-header",
        "stale",
        "future",
        "not-json",
        "no-entity-id",
    ],
)
def test_rejections(headers: dict[str, str], body: bytes, secret: str, reason: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, body, secret=secret, now=NOW)
    assert caught.value.reason == reason


def test_tolerance_is_a_setting() -> None:
    headers = sign(BODY, SECRET, timestamp=NOW - 600)
    assert parse_webhook(headers, BODY, secret=SECRET, settings={"webhook_tolerance_s": "900"}, now=NOW)
    with pytest.raises(WebhookRejected, match="±60 s"):
        parse_webhook(headers, BODY, secret=SECRET, settings={"webhook_tolerance_s": "60"}, now=NOW)
    with pytest.raises(MappingError, match="webhook_tolerance_s"):
        parse_webhook(headers, BODY, secret=SECRET, settings={"webhook_tolerance_s": "soon"}, now=NOW)


def test_unknown_event_type_is_malformed() -> None:
    body = json.dumps({**EVENT, "EventType": "Archive"}).encode()
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(sign(body, SECRET, timestamp=NOW), body, secret=SECRET, now=NOW)
    assert caught.value.reason == "malformed"
