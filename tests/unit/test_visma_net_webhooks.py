"""Visma.net webhook verification (base64 HMAC-SHA256 of the body) and the tolerant payload reader."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import Action, Entity
from providers.base import WebhookRejected
from providers.visma_net.webhooks import parse_webhook, sign, signed_headers

SECRET = "whsec-visma-test"
NOW = 1_717_000_000.0


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def rejected(headers: dict[str, str], body: bytes, **kw: Any) -> str:
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(headers, body, secret=kw.pop("secret", SECRET), now=NOW, **kw)
    return caught.value.reason


def test_signature_is_base64_hmac_sha256_of_the_body() -> None:
    # Independent value: printf '{}' | openssl dgst -sha256 -hmac key -binary | base64
    assert sign(b"{}", "key") == "p3dyTZQ+tI3Gm8qKSm1XoE2z+ex+HeTlgehgJlvfMDI="


def test_good_signature_is_accepted_and_parsed() -> None:
    body = body_of({"tenantId": "tenant-42", "event": "Customer.Created", "entityId": "10001", "id": "evt-1"})

    [change] = parse_webhook(
        signed_headers(body, SECRET), body, secret=SECRET, settings={"tenant_id": "tenant-42"}
    )

    assert (change.entity, change.action, change.external_id, change.event_id) == (
        Entity.customer,
        Action.created,
        "10001",
        "evt-1",
    )
    assert change.author is None and change.value is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"entity": "AR Invoice", "event": "Status Changed", "id": "000042"},
            (Entity.invoice, Action.updated, "000042"),
        ),
        ({"eventType": "SupplierDeleted", "entityId": 20001}, (Entity.supplier, Action.deleted, "20001")),
        (
            {"topic": "pm project:updated", "data": {"projectID": "P1", "id": "P1"}},
            (Entity.project, Action.updated, "P1"),
        ),
        ({"Event": "Customer Changed", "EntityId": "10002"}, (Entity.customer, Action.updated, "10002")),
    ],
)
def test_tolerated_payload_shapes(payload: dict[str, Any], expected: tuple[Entity, Action, str]) -> None:
    body = body_of(payload)
    [change] = parse_webhook(signed_headers(body, SECRET), body, secret=SECRET)
    assert (change.entity, change.action, change.external_id) == expected


def test_nested_value_and_version_are_returned() -> None:
    value = {"number": "10001", "lastModifiedDateTime": "2024-05-01T10:00:00"}
    body = body_of({"event": "Customer.Updated", "entityId": "10001", "data": value})
    [change] = parse_webhook(signed_headers(body, SECRET), body, secret=SECRET)
    assert (change.value, change.version) == (value, "2024-05-01T10:00:00")


def test_a_list_of_notifications_gives_one_change_each() -> None:
    body = body_of(
        [{"event": "Customer.Created", "entityId": "1"}, {"event": "Customer.Deleted", "entityId": "2"}]
    )
    changes = parse_webhook(signed_headers(body, SECRET), body, secret=SECRET)
    assert [(c.action, c.external_id) for c in changes] == [(Action.created, "1"), (Action.deleted, "2")]


def test_tampered_body_is_rejected() -> None:
    body = body_of({"event": "Customer.Created", "entityId": "10001"})
    assert rejected(signed_headers(body, SECRET), body.replace(b"10001", b"10009")) == "bad_signature"


def test_wrong_secret_is_rejected() -> None:
    body = body_of({"event": "Customer.Created", "entityId": "10001"})
    assert rejected(signed_headers(body, "another-secret"), body) == "bad_signature"


def test_missing_header_is_rejected() -> None:
    body = body_of({"event": "Customer.Created", "entityId": "10001"})
    assert rejected({"Content-Type": "application/json"}, body) == "missing_signature"


def test_header_name_comes_from_settings() -> None:
    body = body_of({"event": "Customer.Created", "entityId": "10001"})
    settings = {"webhook_signature_header": "Visma-Signature"}
    assert rejected(signed_headers(body, SECRET), body, settings=settings) == "missing_signature"

    headers = signed_headers(body, SECRET, header="visma-signature")
    assert len(parse_webhook(headers, body, secret=SECRET, settings=settings)) == 1


def test_no_configured_secret_fails_closed() -> None:
    body = body_of({"event": "Customer.Created", "entityId": "10001"})
    assert rejected(signed_headers(body, ""), body, secret="") == "bad_signature"


def test_stale_timestamp_is_rejected_when_a_tolerance_is_set() -> None:
    body = body_of({"event": "Customer.Created", "entityId": "10001", "timestamp": "2024-05-29T15:00:00Z"})
    settings = {"webhook_tolerance_seconds": "300"}
    assert rejected(signed_headers(body, SECRET), body, settings=settings) == "stale_timestamp"

    fresh = body_of({"event": "Customer.Created", "entityId": "10001", "timestamp": NOW - 60})
    assert (
        len(parse_webhook(signed_headers(fresh, SECRET), fresh, secret=SECRET, settings=settings, now=NOW))
        == 1
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"event": "Account.Created", "entityId": "3000"},
        {"event": "Customer.Frobnicated", "entityId": "10001"},
        {"event": "Customer.Created"},
        {"entityId": "10001"},
        ["not an object"],
    ],
)
def test_unmappable_payload_is_malformed(payload: Any) -> None:
    body = body_of(payload)
    assert rejected(signed_headers(body, SECRET), body) == "malformed"


def test_non_json_body_is_malformed() -> None:
    assert rejected(signed_headers(b"<xml/>", SECRET), b"<xml/>") == "malformed"


def test_other_tenant_is_malformed() -> None:
    body = body_of({"tenantId": "tenant-7", "event": "Customer.Created", "entityId": "10001"})
    assert rejected(signed_headers(body, SECRET), body, settings={"tenant_id": "tenant-42"}) == "malformed"
