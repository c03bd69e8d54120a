"""The life of a record: every step either system took for it, oldest first, and its current link.

Sources: the sync log (pushes, webhooks applied, echoes ignored, retries, failures, operator acts),
the values each message carried (``record_values``), and the dead letters still on the bus.
Secrets are redacted from every text shown.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Connection

from config_db import history, values
from providers.registry import KINDS as PROVIDER_KINDS
from worker.db import Database
from worker.logging import REDACTED, redactor
from worker.operators.dlq import DeadLetterOperations
from worker.operators.letters import Selection

_BEARER = re.compile(r"(?i)(bearer\s+|token=|secret=|password=)[^\s,;&\"']+")

KINDS = {
    "pending": "push started",
    "created": "written to the ERP (created)",
    "updated": "written to the ERP (updated)",
    "deleted": "deleted in the ERP",
    "unchanged": "the ERP already held it",
    "retry": "retry scheduled",
    "failed": "failed",
    "duplicate": "duplicate delivery ignored",
    "superseded": "superseded by a newer change",
    "echo_ignored": "echo ignored",
    "inbound": "ERP change written to CW",
    "replayed": "replayed by an operator",
    "replay_resumed": "replay resumed by an operator",
    "purged": "purged by an operator",
    "edited": "edited and sent again by an operator",
}


def scrub(text: str | None) -> str | None:
    if text is None:
        return None
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, redactor.scrub(text))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


class Timeline:
    def __init__(self, db: Database, ops: DeadLetterOperations) -> None:
        self.db = db
        self.ops = ops

    async def search(self, client_id: str, text: str) -> list[dict[str, Any]]:
        """Records of the client whose CW id, external id, number or name is ``text``."""
        text = text.strip()
        if not text:
            return []

        def read(conn: Connection) -> list[dict[str, Any]]:
            found = {(r["entity"], r["cw_id"]): dict(r) for r in history.find_records(conn, client_id, text)}
            for entity, cw_id, number, name in values.find(conn, client_id, text):
                row = found.setdefault((entity, cw_id), {"entity": entity, "cw_id": cw_id})
                row.update(number=number, name=name)
            return list(found.values())

        found = await self.db.run(read)
        letters = await self.ops.select(Selection(client=client_id))
        for letter in letters:
            data = (letter.envelope or {}).get("data") or {}
            cw_id = data.get("id") or (letter.envelope or {}).get("record_id")
            if cw_id and text in (cw_id, data.get("number"), data.get("name")) and letter.type:
                entity = letter.type.partition(".")[0]
                if not any(r["entity"] == entity and r["cw_id"] == cw_id for r in found):
                    found.append({"entity": entity, "cw_id": cw_id, "number": data.get("number")})
        return found

    async def life(self, client_id: str, entity: str, cw_id: str) -> dict[str, Any]:
        letters = [
            x
            for x in await self.ops.select(Selection(client=client_id))
            if x.type
            and x.type.startswith(entity + ".")
            and ((x.envelope or {}).get("data") or {}).get("id", (x.envelope or {}).get("record_id")) == cw_id
        ]

        def read(conn: Connection) -> dict[str, Any]:
            links = history.record_links(conn, client_id, entity, cw_id, PROVIDER_KINDS)
            external = {str(x["external_id"]) for x in links if x["external_id"]}
            ids = {x.envelope_id for x in letters if x.envelope_id}
            rows = history.record_entries(conn, client_id, entity, cw_id, external, ids)
            written = {v.message_id: v.data for v in values.of_record(conn, client_id, entity, cw_id)}
            return {"links": links, "rows": rows, "values": written}

        found = await self.db.run(read)
        steps = []
        for row in found["rows"]:
            step = _jsonable(row)
            step["what"] = KINDS.get(str(row["action"]), str(row["action"]))
            step["detail"] = scrub(row.get("detail"))
            if row["action"] in ("created", "updated", "deleted", "unchanged", "inbound"):
                data = found["values"].get(row["message_id"])
                step["written"] = None if data is None else json.loads(scrub(data) or "null")
            steps.append(step)
        dead = [
            {
                **x.summary(),
                "description": scrub(x.dead.description),
                "written": json.loads(scrub(json.dumps((x.envelope or {}).get("data"))) or "null"),
            }
            for x in letters
        ]
        return {
            "client_id": client_id,
            "entity": entity,
            "cw_id": cw_id,
            "links": [_jsonable(x) for x in found["links"]],
            "timeline": steps,
            "dead_letters": dead,
        }
