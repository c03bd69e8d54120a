"""The publisher's edges against a real receiver: secret rotation (both signatures during the grace
period, verified by the ``standardwebhooks`` library), server-side request forgery refused when a
subscription is added and at the connection itself, and redirects not followed."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from config_db import clients, subscriptions
from config_db.database import make_engine
from config_db.secrets import SecretBox
from tests.integration.publishing import ADMIN, FAST
from tests.integration.webhook_receiver import Receiver, always
from tests.integration.worker_rig import KEY
from worker.buses.local import LocalBus
from worker.db import Database
from worker.operators.subscriptions import SubscriptionError, Subscriptions
from worker.publisher import PublisherSettings, Sender
from worker.publisher.signing import Secrets
from worker.settings import Settings

GUARDED = FAST.model_copy(update={"allow_private": False})


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(make_engine(db_url))
    database.run_sync(lambda conn: clients.add_client(conn, "acme", "Acme"))
    yield database
    await database.close()


def service(db: Database, settings: PublisherSettings) -> Subscriptions:
    return Subscriptions(db, LocalBus(db), Settings(secret_key=KEY), settings)


async def test_rotation_signs_with_both_secrets_during_the_grace_period(db: Database) -> None:
    async with Receiver() as receiver:
        subs = service(db, FAST)
        added = await subs.add(ADMIN, "acme", receiver.url, ["*"])
        sub_id = added.subscription["id"]
        rotated = await subs.rotate_secret(ADMIN, sub_id, grace_s=3600)
        assert rotated.secret != added.secret and rotated.previous_valid_until is not None
        receiver.secrets[:] = [added.secret, rotated.secret]

        async def call() -> tuple[int, ...]:
            stored = db.run_sync(lambda c: subscriptions.get(c, sub_id))
            assert stored is not None and added.secret not in stored.secrets, "kept encrypted"
            secrets = Secrets.decrypt(SecretBox(KEY), stored.secrets, owner="test")
            sender = Sender(FAST)
            try:
                attempt = await sender.send(
                    receiver.url, "msg_1", '{"type":"x"}', secrets.signing(dt.datetime.now(dt.UTC))
                )
            finally:
                await sender.close()
            assert attempt.ok
            return receiver.calls[-1].verified_by

        assert await call() == (0, 1), "a subscriber with either secret accepts the call"
        assert receiver.calls[-1].signatures == 2
        await subs.rotate_secret(ADMIN, sub_id, grace_s=0)
        third = db.run_sync(lambda c: subscriptions.get(c, sub_id))
        assert third is not None
        newest = Secrets.decrypt(SecretBox(KEY), third.secrets, owner="test").current
        receiver.secrets[:] = [added.secret, rotated.secret, newest]
        assert await call() == (2,), "after the grace period only the newest signs"


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://127.0.0.1:9/hooks", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3/hooks", "is a private address"),
        ("http://169.254.169.254/latest/meta-data", "is a link-local address"),
        ("http://[::1]/hooks", "is a loopback address"),
        ("http://[::ffff:127.0.0.1]/hooks", "is a loopback address"),
        ("http://localhost:9/hooks", "localhost (127.0.0.1) is a loopback address"),
        ("http://user:pw@example.com/hooks", "must not carry a user or password"),
        ("ftp://example.com/hooks", "must be an http:// or https:// URL"),
    ],
)
async def test_endpoints_in_our_own_network_are_refused(db: Database, url: str, refusal: str) -> None:
    with pytest.raises(SubscriptionError) as caught:
        await service(db, GUARDED).add(ADMIN, "acme", url, ["*"])
    assert refusal in str(caught.value)
    assert "\n" not in str(caught.value)
    assert db.run_sync(subscriptions.listed) == []


async def test_plain_http_needs_its_setting_and_an_allowed_address_is_accepted(db: Database) -> None:
    strict = GUARDED.model_copy(update={"allow_http": False})
    with pytest.raises(SubscriptionError, match="CWI_PUBLISHER_ALLOW_HTTP"):
        await service(db, strict).add(ADMIN, "acme", "http://93.184.215.14/hooks", ["*"])
    added = await service(db, FAST).add(ADMIN, "acme", "http://127.0.0.1:9/hooks", ["invoice.*"])
    assert added.subscription["status"] == "active" and added.secret.startswith("whsec_")


async def test_the_connection_refuses_a_name_that_resolves_inside_and_never_follows_redirects() -> None:
    async with Receiver(behave=always("redirect"), secrets=["whsec_" + "A" * 32]) as receiver:
        guarded = Sender(GUARDED)
        open_ = Sender(FAST)
        try:
            # A name that passed the check when added may resolve elsewhere later (DNS rebinding):
            # the connector's own resolver refuses the address it would connect to.
            refused = await guarded.send(
                f"http://localhost:{receiver.port}/hooks", "msg_1", "{}", receiver.secrets
            )
            redirected = await open_.send(receiver.url, "msg_2", "{}", receiver.secrets)
        finally:
            await guarded.close()
            await open_.close()
    assert refused.status is None and "(127.0.0.1) is a loopback address" in (refused.error or "")
    assert [c.webhook_id for c in receiver.calls] == ["msg_2"], "the refused call never reached it"
    assert redirected.status == 302 and not redirected.ok
    assert "redirect to /elsewhere not followed" in redirected.summary
    assert receiver.stray == [], "the redirect's target was never called"
