"""The listing check (cursors that neither skip nor repeat under concurrent writes) and the rate
limit check (a 429 carries Retry-After, and waiting it out is enough)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from worker.conformance.checks import expect
from worker.conformance.kit import Kit
from worker.conformance.report import CheckResult, Exchange

R_LISTING = (
    "Listing changes: following next_cursor yields every record changed since the start once at "
    "its latest version, again after a later change, never twice with one version"
)
R_RATE = "Errors: a 429 carries Retry-After, and the request succeeds once that time has passed"
PAGE = 3


async def _page(
    kit: Kit, entity: str, query: dict[str, str]
) -> tuple[Exchange, list[dict[str, Any]], str | None, bool]:
    answer = await kit.client.call("GET", f"/v1/{entity}", f"/v1/{entity}", query=query)
    body = answer.json() if answer.status == 200 else None
    if not isinstance(body, dict):
        return answer, [], None, False
    items = [i for i in body.get("items", []) if isinstance(i, dict)]
    cursor = body.get("next_cursor")
    return answer, items, cursor if isinstance(cursor, str) else None, body.get("has_more") is True


async def listing(kit: Kit) -> CheckResult:
    result = CheckResult(
        "listing", "GET /v1/{entity} pages by cursor without skipping or repeating under writes"
    )
    for entity in kit.options.entities:
        await _listing(kit, result, entity)
    return result


async def _listing(kit: Kit, result: CheckResult, entity: str) -> None:
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)).isoformat()
    start, items, cursor, _ = await _page(kit, entity, {"changed_since": future, "limit": str(PAGE)})
    if not expect(result, start, (200,), f"GET /v1/{entity}?changed_since=<in ten years>", R_LISTING):
        return
    if items:
        result.fail("a listing since a time ten years ahead is not empty", R_LISTING, start)
    if cursor is None:
        result.fail("the last page has no next_cursor to ask later from", R_LISTING, start)
        return
    ids = [kit.cw_id(f"{entity}-list-{n}") for n in range(7)]
    bodies = {cw_id: kit.record(entity, cw_id) for cw_id in ids}
    for cw_id in ids:
        expect(
            result, await kit.put(entity, cw_id, bodies[cw_id]), (201,), f"PUT {entity} {cw_id}", R_LISTING
        )
    ours = set(ids)
    seen: list[tuple[Any, Any, bool]] = []
    page_no, has_more, last = 0, True, start
    while has_more and page_no < 100:
        last, items, next_cursor, has_more = await _page(kit, entity, {"cursor": cursor, "limit": str(PAGE)})
        if not expect(result, last, (200,), f"GET /v1/{entity}?cursor=… (page {page_no + 1})", R_LISTING):
            return
        if next_cursor is None:
            result.fail("a page has no next_cursor", R_LISTING, last)
            return
        seen += [
            (i.get("cw_id"), i.get("version"), i.get("deleted") is True)
            for i in items
            if i.get("cw_id") in ours
        ]
        cursor = next_cursor
        page_no += 1
        if page_no == 1:
            # Writes between the pages: one already listed, one not yet, a delete, a new record.
            expect(
                result,
                await kit.put(entity, ids[1], kit.changed(bodies[ids[1]])),
                (200,),
                "update",
                R_LISTING,
            )
            expect(
                result,
                await kit.put(entity, ids[5], kit.changed(bodies[ids[5]])),
                (200,),
                "update",
                R_LISTING,
            )
            expect(result, await kit.delete(entity, ids[3]), (204,), "delete", R_LISTING)
            ids.append(kit.cw_id(f"{entity}-list-7"))
            ours.add(ids[-1])
            expect(
                result,
                await kit.put(entity, ids[-1], kit.record(entity, ids[-1])),
                (201,),
                "create",
                R_LISTING,
            )
    expected = {ids[0]: 1, ids[1]: 2, ids[2]: 1, ids[3]: 2, ids[4]: 1, ids[5]: 2, ids[6]: 1, ids[7]: 1}
    pairs = [(cw_id, version) for cw_id, version, _ in seen]
    for cw_id, version in sorted(set(pairs)):
        if pairs.count((cw_id, version)) > 1:
            result.fail(
                f"{cw_id} version {version} was listed {pairs.count((cw_id, version))} times", R_LISTING, last
            )
    for cw_id, version in expected.items():
        versions = [v for c, v in pairs if c == cw_id]
        if version not in versions:
            listed = ", ".join(str(v) for v in versions) or "never"
            result.fail(
                f"{cw_id} (changed to version {version} before the listing ended) was listed: {listed}",
                R_LISTING,
                last,
            )
    if any(cw_id == ids[3] and not deleted for cw_id, version, deleted in seen if version == 2):
        result.fail(f"the deleted {ids[3]} is not listed with deleted: true", R_LISTING, last)
    after, items, _, _ = await _page(kit, entity, {"cursor": cursor, "limit": str(PAGE)})
    if expect(result, after, (200,), "GET from the last next_cursor", R_LISTING) and any(
        i.get("cw_id") in ours for i in items
    ):
        result.fail("the last next_cursor lists again records that did not change since", R_LISTING, after)


async def rate_limit(kit: Kit) -> CheckResult:
    result = CheckResult("rate-limit", "a 429 carries Retry-After, and waiting it out is enough")
    burst = kit.options.burst
    answers = await asyncio.gather(
        *(kit.client.call("GET", "/v1/_ping", "/v1/_ping", honour_429=False) for _ in range(burst))
    )
    limited = [a for a in answers if a.status == 429] + kit.client.sent.rate_limited
    for answer in kit.client.sent.without_retry_after:
        result.fail("a 429 without Retry-After", R_RATE, answer)
    if not limited:
        result.note = f"no 429 in a burst of {burst} requests (nothing to wait out)"
        return result
    for answer in (a for a in answers if a.status == 429):
        if "Retry-After" not in answer.response_headers:
            result.fail("a 429 without Retry-After", R_RATE, answer)
    if any(a.status == 429 for a in answers):
        await kit.client.wait_out(max((a for a in answers if a.status == 429), key=_retry_after))
        after = await kit.client.call("GET", "/v1/_ping", "/v1/_ping", honour_429=False)
        expect(result, after, (200,), "GET /v1/_ping once Retry-After has passed", R_RATE)
    result.note = f"{len(limited)} answer(s) 429 met and waited out"
    return result


def _retry_after(exchange: Exchange) -> float:
    try:
        return float(exchange.response_headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0
