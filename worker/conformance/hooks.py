"""Schemathesis hooks for the interface: a generated write names one record, with a fresh key.

- The interface refuses a body whose ``id`` differs from ``cw_id`` in the path (422
  ``id_mismatch``), which no JSON Schema can say; generated independently, the two almost never
  agree, and nearly every generated write would test only that rule.
- An implementation may invoice in any subset of ISO 4217 that includes NOK (422 ``currency``
  otherwise), so generated invoices are in NOK: other currencies would test only that rule.
- Generated ``Idempotency-Key`` values repeat ("0", "00", …), and a key used again for another
  request is refused (422 ``idempotency_key_reused``), as the interface requires; a valid key is
  therefore replaced by a fresh one. Replays and key reuse are the kit's own checks.

Schemathesis revalidates a case after a hook, so a negative case that this makes valid is then
sent as a positive one. Imported by the conformance kit; for a ``schemathesis run`` of your own:
``SCHEMATHESIS_HOOKS=worker.conformance.hooks schemathesis run …``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

import schemathesis

from contracts.codes import CURRENCY_CODES

KEY = "Idempotency-Key"


def _valid_id(value: Any) -> bool:
    """As the document has it: 1–255 characters, no white space around them."""
    return isinstance(value, str) and 1 <= len(value) <= 255 and value == value.strip()


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    return one_record_fresh_key(case)


@schemathesis.hook
def before_add_examples(context: schemathesis.HookContext, examples: list[schemathesis.Case[Any]]) -> None:
    # The examples phase builds its cases without map_case.
    for case in examples:
        one_record_fresh_key(case)


def one_record_fresh_key(case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    if case.method.upper() not in ("PUT", "DELETE"):
        return case
    body: Any = case.body
    # Schemathesis keeps path parameters percent-encoded, as they go on the wire.
    quoted = (case.path_parameters or {}).get("cw_id")
    cw_id = unquote(quoted) if isinstance(quoted, str) else None
    if isinstance(body, dict) and _valid_id(body.get("id")) and _valid_id(cw_id) and cw_id not in (".", ".."):
        body["id"] = cw_id  # only a valid id for another: a case meant to be invalid stays so
    currency = body.get("currency") if isinstance(body, dict) else None
    if isinstance(currency, str) and currency in CURRENCY_CODES:
        body["currency"] = "NOK"  # only a valid code for another, as above
    headers = case.headers
    if headers is not None:
        key = headers.get(KEY)
        if _valid_id(key):
            headers[KEY] = f"st-{uuid.uuid4()}"
    return case
