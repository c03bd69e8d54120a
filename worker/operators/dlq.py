"""Dead-letter operations on any bus: list, show, replay, purge.

Replay puts a dead letter back as a new transport message (``source: "replay"``, the envelope id
kept so that the inbox and the intent journal still prevent a double write). The order per
message, so that an interruption anywhere leaves it dead-lettered or replayed, never neither and
never twice:

1. claim the dead letter and journal ``replayed`` (who, which copy) in one transaction: a second
   operator finds the claim and skips it;
2. resend the copy under a transport id derived from the dead letter's (the replay key), and
   remove the dead letter only once the copy is acknowledged (one transaction on the local bus);
3. close the claim.

A rerun that finds an abandoned claim (its process died, or it failed part-way) looks for the copy
first (on the bus, or already processed by the worker): if it is there, only the dead letter goes.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from config_db import clients, sync_log
from config_db.sync_log import Entry
from contracts import InvalidEnvelopeError, parse_envelope
from worker.buses.base import DEAD_LETTER_PROPERTIES, DeadLetterQueue, OutgoingMessage
from worker.db import Database
from worker.logging import get_logger
from worker.messaging import order
from worker.messaging.retry import ATTEMPT_PROPERTY
from worker.operators import claims
from worker.operators.claims import Claim, Taken
from worker.operators.letters import Letter, Selection

log = get_logger()

REPLAY_OF_PROPERTY = "cwi-replay-of"
REPLAYED_BY_PROPERTY = "cwi-replayed-by"
#: transport properties a copy does not inherit: the dead-letter ones, and the retry bookkeeping.
_DROPPED = DEAD_LETTER_PROPERTIES | {ATTEMPT_PROPERTY, "cwi-retry-for"}
_REPLAY_NAMESPACE = uuid.UUID("6f1d3c1e-8a51-4f3e-9d55-2c0b8f1a7e01")
DEFAULT_LEASE_S = 300.0
SCAN_LIMIT = 100_000

Status = Literal["replayed", "purged", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    status: Status
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status, "detail": self.detail}


def default_operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid-{os.getuid()}"


def replay_id(transport_id: str) -> str:
    """The replay key: the same dead letter always gets the same copy id (bus duplicate detection)."""
    return str(uuid.uuid5(_REPLAY_NAMESPACE, transport_id))


def replay_body(letter: Letter) -> bytes:
    """The body with ``source: "replay"``. An event carrying ``external`` (an ERP change) keeps its
    source: the contract allows ``external`` on webhook and operator events only (its copy is
    marked by ``cwi-replay-of`` instead)."""
    envelope = letter.envelope
    if envelope is None or envelope.get("external") is not None:
        return letter.dead.body
    return json.dumps({**envelope, "source": "replay"}, ensure_ascii=False).encode("utf-8")


def replay_copy(letter: Letter, operator: str) -> OutgoingMessage:
    properties = {k: v for k, v in letter.dead.properties.items() if k not in _DROPPED}
    properties[REPLAY_OF_PROPERTY] = letter.id
    properties[REPLAYED_BY_PROPERTY] = operator
    return OutgoingMessage(replay_body(letter), replay_id(letter.id), letter.dead.session_id, properties)


Halt = Callable[[str], None]
"""Called at each step of a replay ("claimed", "sent", "resent"): tests stop the process there."""


def _no_halt(stage: str) -> None:
    return None


class DeadLetterOperations:
    """The operations behind ``cwi dlq`` and the admin API. ``operator`` is journalled with each act."""

    def __init__(
        self,
        db: Database,
        bus: DeadLetterQueue,
        *,
        operator: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        halt: Halt = _no_halt,
    ) -> None:
        self.db = db
        self.bus = bus
        self.operator = operator or default_operator()
        self.lease_s = lease_s
        self._halt = halt
        # Unique per instance: two operations in one process (the admin API) are two owners.
        self._owner = f"{claims.owner_token()}:{uuid.uuid4().hex[:6]}"

    # --- reading --------------------------------------------------------------------------------

    async def select(self, selection: Selection) -> list[Letter]:
        letters = [Letter.of(d) for d in await self.bus.dead_letters(SCAN_LIMIT)]
        return selection.pick(letters)

    async def preview(self, letters: list[Letter]) -> list[dict[str, Any]]:
        """What a dry run shows: each letter's summary, with ``superseded`` (why a replay would
        write nothing: a newer change of its record is already in the ERP) or None."""

        def work(conn: Connection) -> list[dict[str, Any]]:
            return [{**letter.summary(), "superseded": superseded_by(conn, letter)} for letter in letters]

        return await self.db.run(work)

    async def show(self, transport_id: str) -> dict[str, Any] | None:
        dead = await self.bus.find_dead_letter(transport_id)
        if dead is None:
            return None
        letter = Letter.of(dead)
        history: list[dict[str, object]] = []
        if letter.envelope_id is not None:
            envelope_id = letter.envelope_id
            history = await self.db.run(
                lambda conn: sync_log.entries(
                    conn, client_id=letter.client_id, message_id=envelope_id, limit=1000
                )
            )
            history.reverse()
        return {
            **letter.summary(),
            "session_id": dead.session_id,
            "envelope": letter.envelope,
            "body": None if letter.envelope is not None else _raw(dead.body),
            "properties": {k: _jsonable(v) for k, v in dead.properties.items()},
            "history": [{k: _jsonable(v) for k, v in row.items()} for row in history],
        }

    # --- acting ---------------------------------------------------------------------------------

    def _entry(self, letter: Letter, action: str, **detail: Any) -> Entry:
        info = {"operator": self.operator, "dead_letter": letter.id, "reason": letter.dead.reason, **detail}
        return Entry(
            direction="operator",
            action=action,
            message_id=letter.envelope_id or letter.id,
            client_id=letter.client_id,
            entity=letter.entity,
            cw_id=letter.cw_id,
            detail=json.dumps(info, ensure_ascii=False, default=str),
        )

    async def _claim(self, letter: Letter, first: Entry, resumed: Entry) -> Claim:
        """Claim the dead letter and journal ``first`` (or ``resumed``) in one transaction."""

        def work(conn: Connection) -> Claim:
            claim = claims.take(conn, letter.id, owner=self._owner, lease_s=self.lease_s)
            if claim.taken is Taken.NEW:
                sync_log.record(conn, first)
            elif claim.taken is Taken.RESUMED:
                sync_log.record(conn, resumed)
            return claim

        try:
            return await self.db.run(work)
        except IntegrityError:  # another operator inserted the same claim first
            return await self.db.run(work)

    async def _close(self, letter: Letter, outcome: str) -> None:
        await self.db.run(lambda conn: claims.finish(conn, letter.id, owner=self._owner, outcome=outcome))

    async def replay(self, letter: Letter) -> Outcome:
        copy = replay_copy(letter, self.operator)
        first = self._entry(letter, "replayed", copy=copy.message_id)
        claim = await self._claim(letter, first, dataclasses.replace(first, action="replay_resumed"))
        if claim.taken is Taken.BUSY:
            return Outcome(letter.id, "skipped", f"another operator is acting on it (since {claim.since})")
        if claim.taken is Taken.DONE:
            if await self.bus.purge_dead_letter(letter.dead.sequence_number):
                return Outcome(
                    letter.id, "skipped", f"already {claim.outcome}; removed its leftover dead letter"
                )
            return Outcome(letter.id, "skipped", f"already {claim.outcome}")
        self._halt("claimed")
        # Asked before the copy goes: once the worker has applied it, it would look superseded too.
        stale = await self.db.run(lambda conn: superseded_by(conn, letter))
        try:
            removed = await self._resend(letter, copy, resumed=claim.taken is Taken.RESUMED)
        except Exception as exc:  # noqa: BLE001 - reported per message; the claim says to check on resume
            await self.db.run(lambda conn: claims.fail(conn, letter.id, owner=self._owner))
            log.warning("replay failed", transport_message_id=letter.id, error=str(exc))
            return Outcome(letter.id, "failed", f"{exc.__class__.__name__}: {exc}")
        self._halt("resent")
        await self._close(letter, "replayed" if removed else "gone")
        if not removed:
            return Outcome(letter.id, "skipped", "no longer dead-lettered")
        log.info("dead letter replayed", transport_message_id=letter.id, copy=copy.message_id)
        if stale is not None:
            note = f"{copy.message_id}; superseded by a newer change ({stale}): journalled, not written"
            return Outcome(letter.id, "replayed", note)
        return Outcome(letter.id, "replayed", copy.message_id)

    async def _resend(self, letter: Letter, copy: OutgoingMessage, *, resumed: bool) -> bool:
        seq = letter.dead.sequence_number
        if resumed and await self._copy_sent(letter, copy):
            return await self.bus.purge_dead_letter(seq)
        return await self.bus.resend_dead_letter(
            seq, copy.body, copy.properties, message_id=copy.message_id, sent=lambda: self._halt("sent")
        )

    async def _copy_sent(self, letter: Letter, copy: OutgoingMessage) -> bool:
        """An earlier attempt's copy is on the bus, or the worker already took it."""
        if await self.bus.holds_message(copy.message_id, copy.session_id):
            return True
        envelope_id, client_id = letter.envelope_id, letter.client_id
        if envelope_id is None:
            return False

        def processed(conn: Connection) -> bool:
            mark = sync_log.latest_id(conn, client_id, envelope_id, direction="operator", action="replayed")
            return mark is not None and sync_log.worked_on_after(conn, client_id, envelope_id, mark)

        return await self.db.run(processed)

    async def purge(self, letter: Letter) -> Outcome:
        """Journal ``purged`` (with the body, so nothing is lost), then delete the dead letter."""
        entry = self._entry(letter, "purged", body=letter.dead.body.decode("utf-8", "replace"))
        claim = await self._claim(letter, entry, entry)
        if claim.taken is Taken.BUSY:
            return Outcome(letter.id, "skipped", f"another operator is acting on it (since {claim.since})")
        if claim.taken is Taken.DONE and claim.outcome == "purged":
            return Outcome(letter.id, "skipped", "already purged")
        try:
            removed = await self.bus.purge_dead_letter(letter.dead.sequence_number)
        except Exception as exc:  # noqa: BLE001 - reported per message
            await self.db.run(lambda conn: claims.fail(conn, letter.id, owner=self._owner))
            return Outcome(letter.id, "failed", f"{exc.__class__.__name__}: {exc}")
        await self._close(letter, "purged" if removed else "gone")
        return Outcome(
            letter.id, "purged" if removed else "skipped", "" if removed else "no longer dead-lettered"
        )


def superseded_by(conn: Connection, letter: Letter) -> str | None:
    """Why replaying this dead letter will write nothing: the ERP already holds a newer state of its
    record (the worker journals the copy ``superseded``). None when it would be pushed."""
    try:
        env = parse_envelope(letter.dead.body)
    except InvalidEnvelopeError:
        return None
    if env.inbound or (env.data is None and env.record_id is None):
        return None
    stored = clients.get_connection(conn, env.client_id)
    if stored is None:
        return None
    link = sync_log.get_link(conn, env.client_id, stored.kind, env.entity.value, env.cw_id)
    return order.superseded(env, link)


_RAW_SHOWN = 64 * 1024


def _raw(body: bytes) -> str:
    """A body that is not an envelope, as text, bounded (a bus can hold megabytes)."""
    text = body[:_RAW_SHOWN].decode("utf-8", "replace")
    return text if len(body) <= _RAW_SHOWN else f"{text}… ({len(body) - _RAW_SHOWN} more bytes)"


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
