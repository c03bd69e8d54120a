"""The kit's own checks of single records: what a schema cannot say about the interface.

Each check returns one CheckResult; a finding names the rule of the document it breaks (its
section in docs/interface.md).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError

from contracts.records import Customer, Invoice, Project, Supplier
from worker.conformance.kit import Kit
from worker.conformance.report import CheckResult, Exchange

_MODELS: dict[str, Any] = {"customer": Customer, "supplier": Supplier, "project": Project, "invoice": Invoice}
R_VERSIONS = (
    "Versions: version starts at 1 and grows by exactly 1 with every change; external_id never changes"
)
R_REPLAY = "Idempotency: the same key with the same request gets the stored answer, and nothing changes"
R_REUSE = "Idempotency: the same key with another request gets 422 idempotency_key_reused, nothing changes"
R_FLIGHT = "Idempotency: a key whose first request is still in flight gets 409 idempotency_key_in_flight"
R_NOT_FOUND = "Not found: GET and DELETE of a record that does not exist answer 404, never 2xx"
R_RULES = "Records and rules: a refusal answers the stated status, and 409/422 name their rule"


def expect(result: CheckResult, exchange: Exchange, statuses: tuple[int, ...], what: str, rule: str) -> bool:
    if exchange.status in statuses:
        return True
    wanted = " or ".join(str(s) for s in statuses)
    result.fail(f"{what}: expected HTTP {wanted}, got {exchange.status}", rule, exchange)
    return False


def _version(exchange: Exchange) -> int | None:
    body = exchange.json()
    version = body.get("version") if isinstance(body, dict) else None
    return version if isinstance(version, int) else None


def _external_id(exchange: Exchange) -> Any:
    body = exchange.json()
    return body.get("external_id") if isinstance(body, dict) else None


def _rule(exchange: Exchange) -> Any:
    body = exchange.json()
    return body.get("rule") if isinstance(body, dict) else None


def _same_record(entity: str, sent: dict[str, Any], held: Any) -> bool:
    model = _MODELS[entity]
    try:
        return bool(model.model_validate_json(_json(sent)) == model.model_validate_json(_json(held)))
    except ValidationError:
        return False


def _json(value: Any) -> str:
    return json.dumps(value)


async def probe(kit: Kit) -> CheckResult:
    result = CheckResult("probe", "GET /v1/_ping answers who the token belongs to; a bad token gets 401")
    ping = await kit.client.call("GET", "/v1/_ping", "/v1/_ping")
    if expect(result, ping, (200,), "GET /v1/_ping with the token", "Authentication: the probe answers 200"):
        body = ping.json()
        if isinstance(body, dict) and isinstance(body.get("subject"), str):
            kit.subject = body["subject"]
        if not isinstance(body, dict) or body.get("interface") != "v1":
            result.fail(
                "the probe does not say interface v1", "Base URL: this document is interface v1", ping
            )
    for token, what in (("cwi-conformance-wrong-token", "a wrong token"), (None, "no token")):
        answer = await kit.client.call("GET", "/v1/_ping", "/v1/_ping", token=token)
        expect(
            result,
            answer,
            (401,),
            f"GET /v1/_ping with {what}",
            "Authentication: a missing or wrong token gets 401",
        )
    return result


async def records(kit: Kit) -> CheckResult:
    result = CheckResult("records", "create, read, update, delete and create again, with versions")
    for entity in kit.options.entities:
        await _lifecycle(kit, result, entity)
    return result


async def _lifecycle(kit: Kit, result: CheckResult, entity: str) -> None:
    cw_id = kit.cw_id(f"{entity}-life")
    body = kit.record(entity, cw_id)
    created = await kit.put(entity, cw_id, body)
    if not expect(result, created, (201,), f"PUT a new {entity}", R_RULES):
        return
    first, external_id = _version(created), (created.json() or {}).get("external_id")
    if first != 1:
        result.fail(f"a new {entity} has version {first}, not 1", R_VERSIONS, created)
    read = await kit.get(entity, cw_id)
    if expect(result, read, (200,), f"GET the {entity} just created", R_NOT_FOUND):
        held = read.json() or {}
        if not _same_record(entity, body, held.get("data")):
            result.fail(
                "GET answers other data than the PUT sent",
                "Records and rules: GET answers the record as held",
                read,
            )
        if held.get("version") != first or held.get("external_id") != external_id:
            result.fail("GET answers another version or external_id than the PUT", R_VERSIONS, read)
    updated = await kit.put(entity, cw_id, kit.changed(body))
    ok = expect(result, updated, (200,), f"PUT a changed {entity}", R_VERSIONS)
    if ok and (_version(updated) != (first or 0) + 1 or _external_id(updated) != external_id):
        result.fail("an update did not give version + 1 under the same external_id", R_VERSIONS, updated)
    deleted = await kit.delete(entity, cw_id)
    expect(result, deleted, (204,), f"DELETE the {entity}", R_NOT_FOUND)
    expect(result, await kit.get(entity, cw_id), (404,), f"GET the deleted {entity}", R_NOT_FOUND)
    again = await kit.put(entity, cw_id, body)
    ok = expect(result, again, (201,), f"PUT the deleted {entity} again", R_VERSIONS)
    if ok and (_version(again) != (first or 0) + 3 or _external_id(again) != external_id):
        result.fail(
            "a record put again after its delete is not created under its old external_id with "
            "version continuing (create 1, update 2, delete 3, create 4)",
            R_VERSIONS,
            again,
        )


async def _created(
    kit: Kit, result: CheckResult, label: str
) -> tuple[str, str, str, dict[str, Any], Exchange] | None:
    """A new record of the first entity, put with a key of its own (None: the PUT failed)."""
    entity = kit.options.entities[0]
    cw_id, key = kit.cw_id(f"{entity}-{label}"), kit.key()
    body = kit.record(entity, cw_id)
    first = await kit.put(entity, cw_id, body, key=key)
    if not expect(result, first, (201,), f"PUT a new {entity}", R_RULES):
        return None
    return entity, cw_id, key, body, first


async def replay(kit: Kit) -> CheckResult:
    result = CheckResult(
        "idempotent-replay", "a repeated PUT or DELETE gets the stored answer and changes nothing"
    )
    created = await _created(kit, result, "replay")
    if created is None:
        return result
    entity, cw_id, key, body, first = created
    second = await kit.put(entity, cw_id, body, key=key)
    if (second.status, second.json()) != (first.status, first.json()):
        result.fail(
            f"the repeat got HTTP {second.status} {second.response_body}, not the stored answer",
            R_REPLAY,
            second,
        )
    if await kit.version(entity, cw_id) != _version(first):
        result.fail("the repeated PUT changed the record's version", R_REPLAY, second)
    delete_key = kit.key()
    expect(result, await kit.delete(entity, cw_id, key=delete_key), (204,), "DELETE", R_NOT_FOUND)
    repeated = await kit.delete(entity, cw_id, key=delete_key)
    expect(result, repeated, (204,), "the repeated DELETE (same key) gets the stored 204, not 404", R_REPLAY)
    return result


async def key_reuse(kit: Kit) -> CheckResult:
    result = CheckResult(
        "key-reuse", "a key used again for another request is refused (422) and changes nothing"
    )
    created = await _created(kit, result, "reuse")
    if created is None:
        return result
    entity, cw_id, key, body, first = created
    for what, call in (
        ("PUT another body", kit.put(entity, cw_id, kit.changed(body), key=key)),
        (
            "PUT a body that is not JSON",
            kit.client.call(
                "PUT", f"/v1/{entity}/{cw_id}", f"/v1/{entity}/{{cw_id}}", raw_body=b"\x00", key=key
            ),
        ),
        ("DELETE", kit.delete(entity, cw_id, key=key)),
    ):
        answer = await call
        ok = expect(result, answer, (422,), f"{what} with the key of the first PUT", R_REUSE)
        if ok and _rule(answer) != "idempotency_key_reused":
            result.fail("the 422 does not name rule idempotency_key_reused", R_REUSE, answer)
    held = await kit.get(entity, cw_id)
    if (held.json() or {}).get("version") != _version(first) or not _same_record(
        entity, body, (held.json() or {}).get("data")
    ):
        result.fail("a refused reuse of the key changed the record", R_REUSE, held)
    return result


async def in_flight(kit: Kit, rounds: int = 3) -> CheckResult:
    result = CheckResult(
        "key-in-flight", "two identical requests at once: one change; the other 409 or the same answer"
    )
    entity = kit.options.entities[0]
    cw_id = kit.cw_id(f"{entity}-flight")
    body = kit.record(entity, cw_id)
    expected = 0
    for n in range(rounds):
        key = kit.key()
        variant = body if n == 0 else {**body, "number": f"{body['number']}-{n}"}
        answers = await asyncio.gather(
            kit.put(entity, cw_id, variant, key=key), kit.put(entity, cw_id, variant, key=key)
        )
        done = [a for a in answers if a.status in (200, 201)]
        for answer in answers:
            if answer.status == 409:
                if (answer.json() or {}).get("rule") != "idempotency_key_in_flight":
                    result.fail("the 409 does not name rule idempotency_key_in_flight", R_FLIGHT, answer)
            elif answer.status not in (200, 201):
                result.fail(f"HTTP {answer.status} to one of two identical requests", R_FLIGHT, answer)
        if len(done) == 2 and (done[0].status, done[0].json()) != (done[1].status, done[1].json()):
            result.fail(
                "two identical requests with one key got different answers: both were applied",
                R_FLIGHT,
                done[1],
            )
        expected += 1 if done else 0
    version = await kit.version(entity, cw_id)
    if version != expected:
        result.fail(
            f"after {rounds} rounds of duplicate pairs the version is {version}, not {expected}", R_FLIGHT
        )
    return result


async def not_found(kit: Kit) -> CheckResult:
    result = CheckResult("not-found", "GET and DELETE of a record that does not exist answer 404")
    for entity in kit.options.entities:
        cw_id = kit.cw_id(f"{entity}-never")
        for answer, what in (
            (await kit.get(entity, cw_id), "GET"),
            (await kit.delete(entity, cw_id), "DELETE"),
        ):
            expect(result, answer, (404,), f"{what} of a {entity} that never existed", R_NOT_FOUND)
    return result


async def rules(kit: Kit) -> CheckResult:
    result = CheckResult("rules", "unreadable requests get 400; refused records 422 with the rule")
    entity = kit.options.entities[0]
    cw_id = kit.cw_id(f"{entity}-rules")
    body = kit.record(entity, cw_id)
    template = f"/v1/{entity}/{{cw_id}}"
    cases: list[tuple[str, Any, tuple[int, ...], str | None]] = [
        (
            "a body whose id differs from cw_id",
            kit.put(entity, cw_id, {**body, "id": cw_id + "-other"}),
            (422,),
            "id_mismatch",
        ),
        (
            "a body with an unknown field",
            kit.put(entity, cw_id, {**body, "cwi_unknown": 1}),
            (422,),
            "schema",
        ),
        (
            "a body without its required number",
            kit.put(entity, cw_id, {k: v for k, v in body.items() if k != "number"}),
            (422,),
            "schema",
        ),
        (
            "a body that is not JSON",
            kit.client.call("PUT", f"/v1/{entity}/{cw_id}", template, raw_body=b"{nope", key=kit.key()),
            (400,),
            None,
        ),
        (
            "a PUT without Idempotency-Key",
            kit.client.call("PUT", f"/v1/{entity}/{cw_id}", template, body=body),
            (400,),
            None,
        ),
        ("a cw_id of 256 characters", kit.put(entity, "x" * 256, {**body, "id": "x" * 256}), (400,), None),
        (
            "a listing cursor the ERP never issued",
            kit.client.call(
                "GET", f"/v1/{entity}", f"/v1/{entity}", query={"cursor": "cwi-conformance-not-a-cursor"}
            ),
            (422,),
            "cursor",
        ),
    ]
    for what, call, statuses, rule in cases:
        answer = await call
        ok = expect(result, answer, statuses, what, R_RULES)
        if ok and rule is not None and _rule(answer) != rule:
            result.fail(f"{what}: the {answer.status} does not name rule {rule}", R_RULES, answer)
    return result
