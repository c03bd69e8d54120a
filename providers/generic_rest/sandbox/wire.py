"""Pieces of the sandbox's interface that need no state: rate limit, request fingerprints, the listing's
items and cursors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from typing import Any

from contracts.interface import VERSION
from providers.generic_rest.sandbox.rules import ListQuery
from providers.generic_rest.sandbox.store import StoredRecord

#: the key of a record created in the ERP by a user: CW has no id for it (the webhook names none).
ERP_CREATED = "erp:"
#: a PUT body that is not JSON (fingerprinted too: its key may not be reused for another body).
NOT_JSON = object()


class RateLimit:
    """A token bucket: ``per_s`` requests a second on average, as many at once."""

    def __init__(self, per_s: float) -> None:
        if not per_s > 0:
            raise ValueError(f"rate_limit must be a positive number of requests a second, not {per_s}")
        self.per_s = per_s
        self._capacity = max(1.0, per_s)
        self._tokens = self._capacity
        self._at = time.monotonic()

    def wait_s(self) -> float:
        """0 when a request may go now (and take its token), else the seconds until it may."""
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.per_s


def fingerprint(method: str, entity: str, cw_id: str, body: Any) -> str:
    """The request, for key reuse: method, path, and the body as a JSON value (not its bytes)."""
    digest = hashlib.sha256(f"{method} /v1/{entity}/{cw_id}\n".encode())
    if body is NOT_JSON:
        digest.update(b"\x00not json")
    elif body is not None:
        digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def change_item(record: StoredRecord) -> dict[str, Any]:
    erp_created = record.cw_id.startswith(ERP_CREATED)
    return {
        "cw_id": None if erp_created else record.cw_id,
        "external_id": record.external_id,
        "version": record.version,
        "deleted": record.deleted,
        "changed_at": record.changed_at,
        "data": None if record.deleted else record.data,
    }


def cursor(seq: int, since: str | None) -> str:
    return base64.urlsafe_b64encode(f"{VERSION}.{seq}.{since or ''}".encode()).decode().rstrip("=")


def position(query: ListQuery) -> tuple[int, str | None] | None:
    """Where a listing starts: (after this seq, changed at or after this time); None: bad cursor."""
    if query.cursor is None:
        since = None if query.since is None else query.since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return 0, since
    try:
        raw = base64.urlsafe_b64decode(query.cursor + "=" * (-len(query.cursor) % 4)).decode()
        version, seq, since = raw.split(".", 2)
        if version != VERSION or not seq.isdigit():
            return None
        return int(seq), since or None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
