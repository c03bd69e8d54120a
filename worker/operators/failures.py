"""Dead letters grouped as operators think of them, and what a replay of them would do.

A group is (reason, provider, fingerprint): the fingerprint is the description with its ids,
numbers and quoted values masked, so "customer 1042 not found" and "customer 77 not found" are one
failure. A letter whose envelope an operator replayed before and that is dead-lettered again is
marked ``failed_again``. Replays go through ``DeadLetterOperations`` (the CLI's code).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config_db import clients, history
from contracts import InvalidEnvelopeError, parse_envelope
from worker.db import Database
from worker.operators.dlq import DeadLetterOperations, Outcome, superseded_by
from worker.operators.letters import Letter, Selection
from worker.publisher.messages import KIND as WEBHOOK_DELIVERY
from worker.publisher.steps import replay_superseded

_MASKS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<id>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<value>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.I), "<id>"),
    (re.compile(r"\b[\w.-]*\d[\w.-]*\b"), "<n>"),
)


def fingerprint(description: str) -> str:
    """The description with ids, URLs, quoted values and numbers masked."""
    text = description.strip()
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return re.sub(r"\s+", " ", text)[:300]


def group_key(reason: str, provider: str, masked: str) -> str:
    return hashlib.sha256(f"{reason}\x00{provider}\x00{masked}".encode()).hexdigest()[:12]


@dataclass(slots=True)
class Group:
    key: str
    reason: str
    provider: str
    fingerprint: str
    letters: list[Letter] = field(default_factory=list)
    failed_again: set[str] = field(default_factory=set)

    def as_dict(self, *, with_letters: bool = False) -> dict[str, Any]:
        times = [x.at for x in self.letters]
        out: dict[str, Any] = {
            "key": self.key,
            "reason": self.reason,
            "provider": self.provider,
            "fingerprint": self.fingerprint,
            "count": len(self.letters),
            "first_seen": min(times).isoformat(),
            "last_seen": max(times).isoformat(),
            "clients": sorted({x.client_id or "" for x in self.letters}),
            "failed_again": len(self.failed_again),
            "example": self.letters[0].summary(),
        }
        if with_letters:
            out["messages"] = [
                {**x.summary(), "failed_again": x.id in self.failed_again} for x in self.letters
            ]
        return out


class Failures:
    """Grouping, dry-run and replay of dead letters for the console and the admin API."""

    def __init__(self, ops: DeadLetterOperations) -> None:
        self.ops = ops
        self.db: Database = ops.db

    async def groups(self, selection: Selection | None = None) -> list[Group]:
        letters = await self.ops.select(selection or Selection())
        kinds = await self.db.run(lambda conn: {c.client_id: c.kind for c in clients.list_connections(conn)})
        envelope_ids = {x.envelope_id for x in letters if x.envelope_id}
        again = await self.db.run(lambda conn: history.replayed_envelopes(conn, envelope_ids))
        found: dict[str, Group] = {}
        for letter in letters:
            provider = kinds.get(letter.client_id or "", "") or "-"
            if letter.type == WEBHOOK_DELIVERY:
                provider = "webhooks"  # a subscriber's endpoint failed, not the client's ERP
            masked = fingerprint(letter.dead.description)
            key = group_key(letter.dead.reason, provider, masked)
            group = found.setdefault(key, Group(key, letter.dead.reason, provider, masked))
            group.letters.append(letter)
            if letter.envelope_id in again:
                group.failed_again.add(letter.id)
        return sorted(found.values(), key=lambda g: (-len(g.letters), g.reason, g.key))

    async def group(self, key: str) -> Group | None:
        return next((g for g in await self.groups() if g.key == key), None)

    async def dry_run(self, letters: Sequence[Letter]) -> list[dict[str, Any]]:
        """What a replay of each letter would do, without doing it."""
        envelope_ids = {x.envelope_id for x in letters if x.envelope_id}
        again = await self.db.run(lambda conn: history.replayed_envelopes(conn, envelope_ids))
        kinds = await self.db.run(lambda conn: {c.client_id: c.kind for c in clients.list_connections(conn)})
        return [await self._would(x, kinds.get(x.client_id or ""), x.envelope_id in again) for x in letters]

    async def _would(self, letter: Letter, provider: str | None, again: bool) -> dict[str, Any]:
        notes = []
        if again:
            notes.append("failed again after an earlier retry")
        if letter.type == WEBHOOK_DELIVERY:
            newer = await self.db.run(lambda conn: replay_superseded(conn, letter.dead.body))
            would = "deliver the webhook again"
            if newer:
                would = "complete without sending: the subscriber has a newer delivery of the record"
            return {**letter.summary(), "would": would, "notes": notes}
        try:
            env = parse_envelope(letter.dead.body)
        except InvalidEnvelopeError as exc:
            return {**letter.summary(), "would": "dead-letter again (InvalidEnvelope)", "notes": [str(exc)]}
        would = "replay"
        if provider is None:
            notes.append(f"client {env.client_id!r} has no connection: it would dead-letter again")
        else:
            stale = await self.db.run(lambda conn: superseded_by(conn, letter))
            if stale is not None:
                would = "complete without a push: superseded by a newer change"
                notes.append(stale)
        return {**letter.summary(), "would": would, "notes": notes}

    async def replay(self, letters: Iterable[Letter]) -> list[Outcome]:
        return [await self.ops.replay(letter) for letter in letters]

    async def purge(self, letters: Iterable[Letter]) -> list[Outcome]:
        return [await self.ops.purge(letter) for letter in letters]
