"""The publisher's pure parts: event patterns, the payload, the retry schedule, address kinds, secrets."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook

from config_db.secrets import SecretBox
from contracts import parse_envelope
from worker.messaging.outcomes import Changed
from worker.publisher import PublisherSettings
from worker.publisher.events import PatternError, check_patterns, matches, payload
from worker.publisher.guard import address_kind
from worker.publisher.schedule import backoff_s, next_attempt
from worker.publisher.settings import load_publisher_settings
from worker.publisher.signing import Secrets, headers, new_secrets
from worker.settings import SettingsError

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "name",
    ["retry_first_s", "retry_max_s", "retry_for_s", "pause_after_s", "rotation_grace_s", "directory_s"],
)
@pytest.mark.parametrize("value", ["inf", "1e12", "nan"])
def test_a_publisher_duration_beyond_what_a_date_holds_is_refused_by_name(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepted, it overflowed the dates made from it: every delivery retried, or rotation, failed."""
    monkeypatch.setenv(f"CWI_PUBLISHER_{name.upper()}", value)
    with pytest.raises(SettingsError, match=f"CWI_PUBLISHER_{name.upper()}"):
        load_publisher_settings()


def test_patterns_are_checked_and_matched() -> None:
    assert check_patterns([" invoice.created ", "customer.*", "*.deleted", "customer.*"]) == [
        "invoice.created",
        "customer.*",
        "*.deleted",
    ]
    for bad in (["invoice"], ["invoice.paid"], ["order.*"], ["**"], [" "]):
        with pytest.raises(PatternError) as caught:
            check_patterns(bad)
        assert "invoice.created" in str(caught.value) or "<entity>.<action>" in str(caught.value)
    assert matches(["customer.*"], "customer.updated") and not matches(["customer.*"], "invoice.created")
    assert matches(["*.deleted"], "project.deleted") and not matches(["*.deleted"], "project.created")
    assert matches(["*"], "supplier.created") and matches(["invoice.created"], "invoice.created")


def _changed(**data: object) -> Changed:
    env = parse_envelope(
        json.dumps(
            {
                "id": "e-1",
                "client_id": "acme",
                "type": "customer.updated",
                "source": "frontend",
                "occurred_at": "2026-11-23T11:00:00+01:00",
                "sequence": 7,
                "data": {"id": "c-1", "number": "1001", "name": "Acme AS", **data},
            }
        )
    )
    return Changed(env, env.cw_id)


def test_the_payload_is_standard_webhooks_shaped_cut_to_the_fields_asked_and_without_secrets() -> None:
    full = json.loads(payload(_changed(), []))
    assert full["type"] == "customer.updated" and full["timestamp"] == "2026-11-23T10:00:00Z"
    assert (full["client_id"], full["event_id"], full["record_id"], full["sequence"]) == (
        "acme",
        "e-1",
        "c-1",
        7,
    )
    assert full["data"] == {"id": "c-1", "number": "1001", "name": "Acme AS"}
    assert json.loads(payload(_changed(), ["name"]))["data"] == {"id": "c-1", "name": "Acme AS"}
    inbound = Changed(_changed().envelope, "c-9", {"name": "From ERP", "api_token": "t0ps3cret"})
    written = json.loads(payload(inbound, []))["data"]
    assert written == {"id": "c-9", "name": "From ERP", "api_token": "***"}


def test_backoff_doubles_with_jitter_up_to_the_cap_and_stops_after_the_window() -> None:
    s = PublisherSettings(retry_first_s=30, retry_max_s=3600, retry_for_s=86400)
    assert [backoff_s(s, n, rand=lambda: 1.0) for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]
    assert backoff_s(s, 1, rand=lambda: 0.0) == 15, "a random half is taken off"
    assert next_attempt(s, failures=1, first_attempt_at=T0, now=T0, retry_after=None, rand=lambda: 1.0) == (
        T0 + dt.timedelta(seconds=30)
    )
    later = next_attempt(s, failures=1, first_attempt_at=T0, now=T0, retry_after=600, rand=lambda: 1.0)
    assert later == T0 + dt.timedelta(seconds=600), "Retry-After, when longer, wins"
    near_end = T0 + dt.timedelta(seconds=86400 - 10)
    last = next_attempt(s, failures=15, first_attempt_at=T0, now=near_end, retry_after=None)
    assert last == T0 + dt.timedelta(seconds=86400), "the last attempt at the window's end"
    done = T0 + dt.timedelta(seconds=86400)
    assert next_attempt(s, failures=16, first_attempt_at=T0, now=done, retry_after=None) is None

    def attempts_in_a_day(rand: Callable[[], float]) -> int:
        attempts, now = 1, T0
        while (
            found := next_attempt(
                s, failures=attempts, first_attempt_at=T0, now=now, retry_after=None, rand=rand
            )
        ) is not None:
            attempts, now = attempts + 1, found
        return attempts

    # Full waits (30 s doubling to the hour's cap) and halved ones bound every jittered run.
    fewest, most = attempts_in_a_day(lambda: 1.0), attempts_in_a_day(lambda: 0.0)
    assert (fewest, most) == (31, 55), "about a day of retries: one an hour once capped"
    assert fewest <= attempts_in_a_day(random.Random(7).random) <= most


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("192.168.1.20", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-global"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


def test_secrets_round_trip_encrypted_and_sign_with_the_previous_one_only_during_its_grace() -> None:
    box = SecretBox("unit-key-0123456789")
    first = new_secrets()
    rotated = first.rotated(T0, 3600)
    assert rotated.signing(T0) == [rotated.current, first.current]
    assert rotated.signing(T0 + dt.timedelta(hours=2)) == [rotated.current]
    token = rotated.encrypt(box)
    assert first.current not in token and rotated.current not in token
    assert Secrets.decrypt(box, token, owner="test") == rotated
    body = '{"a":1}'
    signed = headers(rotated.signing(T0), "msg_1", T0, body)
    assert signed["webhook-timestamp"] == str(int(T0.timestamp()))
    sent = signed["webhook-signature"].split(" ")
    assert sent == [
        Webhook(rotated.current).sign("msg_1", T0, body),
        Webhook(first.current).sign("msg_1", T0, body),
    ]
