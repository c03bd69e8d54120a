"""Signing deliveries per Standard Webhooks, with the ``standardwebhooks`` library.

A subscription's secrets are kept encrypted (``SecretBox``, as connection credentials are) as
``{"current", "previous"?, "previous_until"?}``. After a rotation, until ``previous_until``, every
delivery carries both signatures (space-separated in ``webhook-signature``, as the standard
allows): a subscriber verifying with either secret accepts it, so it can switch at its own pace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from standardwebhooks import Webhook

from config_db.secrets import SecretBox
from providers.kind import standard_webhooks_secret
from worker.logging import redactor

USER_AGENT = "cwi-webhooks/1"


@dataclass(frozen=True, slots=True)
class Secrets:
    current: str
    previous: str | None = None
    previous_until: dt.datetime | None = None

    def signing(self, now: dt.datetime) -> list[str]:
        """The secrets that sign a delivery made at ``now``: the current one, and the previous one
        during its grace period."""
        found = [self.current]
        if self.previous and self.previous_until is not None and now < self.previous_until:
            found.append(self.previous)
        return found

    def rotated(self, now: dt.datetime, grace_s: float) -> Secrets:
        """A new current secret; the current one signs beside it for ``grace_s`` more seconds."""
        if grace_s <= 0:
            return Secrets(standard_webhooks_secret())
        return Secrets(standard_webhooks_secret(), self.current, now + dt.timedelta(seconds=grace_s))

    def encrypt(self, box: SecretBox) -> str:
        plain = {"current": self.current}
        if self.previous and self.previous_until is not None:
            plain.update(previous=self.previous, previous_until=self.previous_until.isoformat())
        return box.encrypt(plain)

    @classmethod
    def decrypt(cls, box: SecretBox, token: str, *, owner: str) -> Secrets:
        """SecretKeyError when CWI_SECRET_KEY cannot read them. The values are registered with the
        log redactor: a subscriber quoting one back is stored and logged masked."""
        plain = box.decrypt(token, owner=owner)
        until = plain.get("previous_until")
        found = cls(
            plain["current"], plain.get("previous"), dt.datetime.fromisoformat(until) if until else None
        )
        redactor.register(found.current, found.previous)
        return found


def new_secrets() -> Secrets:
    return Secrets(standard_webhooks_secret())


def headers(secrets: Sequence[str], webhook_id: str, at: dt.datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (``at``: aware, its whole seconds are signed)."""
    at = at.astimezone(dt.UTC)
    signatures = " ".join(Webhook(secret).sign(webhook_id, at, body) for secret in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
