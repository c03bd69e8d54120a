"""Edit and retry: a dead letter's envelope corrected by an operator and sent as a new message.

Off unless the deployment enables it (``CWI_CONSOLE_EDIT_RETRY=true``). The edit is validated
against the envelope contract before anything is sent; the new message gets a new envelope id
(derived from the dead letter and the edit, so a double submit sends it once) and ``source:
"operator"``, and names the original in its transport properties (``cwi-edit-of``). The journal
row ``edited`` says who changed what (each changed field, before and after), in the same
transaction as the claim on the dead letter; the dead letter is then removed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from config_db import sync_log
from contracts import InvalidEnvelopeError, parse_envelope
from worker.buses.base import Bus, OutgoingMessage
from worker.db import Database
from worker.operators import claims
from worker.operators.actors import Actor, audit_entry
from worker.operators.claims import Taken
from worker.operators.letters import Letter

EDIT_OF_PROPERTY = "cwi-edit-of"
EDITED_BY_PROPERTY = "cwi-edited-by"
_NAMESPACE = uuid.UUID("0c7f3f8e-51b4-4d1e-9a59-d7b0f1de2a11")
FIXED = ("client_id", "type")  # an edit corrects the record, it does not move it elsewhere


class EditError(Exception):
    """The edit cannot be sent; ``problems`` names each bad field."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True, slots=True)
class Edited:
    original: str
    message_id: str
    envelope_id: str
    changes: list[dict[str, Any]]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field whose value differs: ``{"field", "before", "after"}`` (lists compared whole)."""
    old, new = flatten(before), flatten(after)
    return [
        {"field": name, "before": old.get(name), "after": new.get(name)}
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name) and name not in ("id", "source")
    ]


def prepare(letter: Letter, edited: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The envelope to send, and what changed; EditError naming each problem otherwise."""
    original = letter.envelope
    if original is None:
        raise EditError("this dead letter's body is not a JSON envelope: it cannot be edited, only purged")
    for name in FIXED:
        if edited.get(name) != original.get(name):
            raise EditError(f"{name} cannot be changed by an edit (was {original.get(name)!r})")
    diff = changes(original, edited)
    if not diff:
        raise EditError("nothing was changed: replay the message instead")
    canonical = json.dumps(edited, sort_keys=True, ensure_ascii=False, default=str)
    envelope = {
        **edited,
        "id": str(uuid.uuid5(_NAMESPACE, f"{letter.id}\x00{canonical}")),
        "source": "operator",
    }
    if original.get("source") == "webhook":
        envelope["source"] = "webhook"  # the contract allows external only on webhook events
    try:
        parse_envelope(json.dumps(envelope, ensure_ascii=False))
    except InvalidEnvelopeError as exc:
        raise EditError("the edited envelope breaks the contract", exc.problems) from None
    return envelope, diff


async def edit_and_retry(
    db: Database, bus: Bus, actor: Actor, letter: Letter, edited: dict[str, Any], *, enabled: bool
) -> Edited:
    actor.require("operator", "edit and retry")
    if not enabled:
        raise EditError("edit and retry is off in this deployment (set CWI_CONSOLE_EDIT_RETRY=true)")
    envelope, diff = prepare(letter, edited)
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    copy = OutgoingMessage(
        body,
        str(uuid.uuid5(_NAMESPACE, envelope["id"])),
        letter.dead.session_id or envelope.get("client_id"),
        {EDIT_OF_PROPERTY: letter.id, EDITED_BY_PROPERTY: actor.name},
    )
    owner = f"{claims.owner_token()}:{uuid.uuid4().hex[:6]}"
    entry = audit_entry(
        actor, "edited", client_id=letter.client_id, dead_letter=letter.id, reason=letter.dead.reason,
        new_envelope=envelope["id"], copy=copy.message_id, changes=diff,
    )  # fmt: skip
    entry = sync_log.Entry(
        **{
            **entry.row(),
            "message_id": letter.envelope_id or letter.id,
            "entity": letter.entity,
            "cw_id": letter.cw_id,
        }
    )

    def claim(conn: Connection) -> claims.Claim:
        taken = claims.take(conn, letter.id, owner=owner, lease_s=300.0)
        if taken.taken in (Taken.NEW, Taken.RESUMED):
            sync_log.record(conn, entry)
        return taken

    taken = await db.run(claim)
    if taken.taken is Taken.BUSY:
        raise EditError(f"another operator is acting on this dead letter (since {taken.since})")
    if taken.taken is Taken.DONE:
        raise EditError(f"this dead letter was already {taken.outcome}")
    try:
        await bus.publish([copy])
        await bus.purge_dead_letter(letter.dead.sequence_number)
    except Exception:
        await db.run(lambda conn: claims.fail(conn, letter.id, owner=owner))
        raise
    await db.run(lambda conn: claims.finish(conn, letter.id, owner=owner, outcome="replayed"))
    return Edited(letter.id, copy.message_id, envelope["id"], diff)
