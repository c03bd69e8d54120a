"""The webhook check: the kit listens, the ERP calls it for the kit's own changes, and each call must
be signed per Standard Webhooks, match the document's WebhookEvent, and name the token's subject
as its author and the version the interface answered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from contracts import jsontext
from providers.base import WebhookRejected
from providers.generic_rest.webhooks import decode_secret, verify
from worker.conformance.kit import Kit
from worker.conformance.report import CheckResult, Exchange

R_SIGNED = (
    "Webhooks: every call is signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)"
)
R_EVENT = (
    "Webhooks: the body is a WebhookEvent; a change made through the interface names the token's "
    "subject as author"
)


@dataclass(slots=True)
class Received:
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def listening(kit: Kit) -> AsyncIterator[Received | None]:
    """The kit's webhook receiver while the checks run (None without --webhook-listen)."""
    options = kit.options
    if not options.webhook_listen or not options.webhook_secret:
        yield None
        return
    decode_secret(options.webhook_secret)  # a bad secret is a usage error, before anything runs
    host, _, port = options.webhook_listen.rpartition(":")
    received = Received()

    async def receive(request: web.Request) -> web.Response:
        received.calls.append((dict(request.headers), await request.read()))
        received.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    bound_host, bound_port = runner.addresses[0][:2]
    if options.on_webhook_url is not None:
        await options.on_webhook_url(f"http://{bound_host}:{bound_port}/cwi-conformance")
    try:
        yield received
    finally:
        await runner.cleanup()


async def webhooks(kit: Kit, received: Received | None) -> CheckResult:
    result = CheckResult("webhooks", "the ERP's webhooks of the kit's changes: signed, well-formed, authored")
    if received is None:
        result.skip("give --webhook-listen HOST:PORT and --webhook-secret whsec_… (and point the ERP there)")
        return result
    secret = kit.options.webhook_secret or ""
    wanted = {(w.entity, w.cw_id, w.version) for w in kit.written if w.version > 0}
    deadline = asyncio.get_running_loop().time() + kit.options.webhook_wait_s
    seen: set[tuple[str, str, int]] = set()
    checked = 0
    while True:
        for headers, body in received.calls[checked:]:
            checked += 1
            event = _check_call(kit, result, headers, body, secret)
            if event is not None:
                seen.add(event)
        if wanted <= seen or asyncio.get_running_loop().time() > deadline:
            break
        received.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(received.arrived.wait(), timeout=0.2)
    if not received.calls:
        result.fail(
            f"no webhook arrived within {kit.options.webhook_wait_s:g} s of the kit's changes", R_EVENT
        )
    elif missing := sorted(wanted - seen):
        shown = ", ".join(f"{e} {c} v{v}" for e, c, v in missing[:5])
        result.fail(f"{len(missing)} change(s) of the kit had no webhook, e.g. {shown}", R_EVENT)
    return result


def _check_call(
    kit: Kit, result: CheckResult, headers: dict[str, str], body: bytes, secret: str
) -> tuple[str, str, int] | None:
    exchange = Exchange(
        "POST",
        "(the kit's webhook URL)",
        {k: v for k, v in headers.items() if k.lower().startswith("webhook-")},
        body.decode("utf-8", "replace"),
        204,
        {},
        None,
    )
    try:
        verify(headers, body, secret=secret)
    except WebhookRejected as exc:
        result.fail(f"webhook refused ({exc.reason}): {exc}", R_SIGNED, exchange)
        return None
    try:
        event = jsontext.loads(body)
    except ValueError as exc:  # jsontext.BadText too: nested deeper than any event
        result.fail(f"webhook body is not JSON: {exc}", R_EVENT, exchange)
        return None
    errors = list(kit.document.validator("#/components/schemas/WebhookEvent").iter_errors(event))
    if errors:
        result.fail(f"webhook body is not a WebhookEvent: {errors[0].message}", R_EVENT, exchange)
        return None
    data = event["data"]
    cw_id = data.get("cw_id")
    if not isinstance(cw_id, str) or not cw_id.startswith(kit.cw_id("")):
        return None  # another change in the ERP: not the kit's to judge
    if data.get("author") != kit.subject:
        result.fail(
            f"the author of the kit's change is {data.get('author')!r}, "
            f"not the token's subject {kit.subject!r}",
            R_EVENT,
            exchange,
        )
    return data["entity"], cw_id, data["version"]
