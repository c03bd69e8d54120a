"""The sandbox ERP's control API under ``/_sandbox`` (no auth), for tests and the demo: inject
failures, make a change as an ERP user would, subscribe to webhooks, read and reset the state.
"""

from __future__ import annotations

from aiohttp import web

from providers.generic_rest.sandbox.app import InjectedFailure, Sandbox, Stats, error


class Control:
    """The views of ``/_sandbox/…`` over one sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/_sandbox/fail-next", self.fail_next)
        app.router.add_get("/_sandbox/stats", self.stats)
        app.router.add_get("/_sandbox/records", self.records)
        app.router.add_post("/_sandbox/reset", self.reset)
        app.router.add_post("/_sandbox/user-change", self.user_change)
        app.router.add_post("/_sandbox/webhook", self.webhook)
        app.router.add_get("/_sandbox/webhook", self.webhook_stats)

    async def fail_next(self, request: web.Request) -> web.Response:
        """``{"status": 429|503|…, "count": n, "retry_after": s?, "error": "…"?}``."""
        try:
            spec = await request.json()
            failure = InjectedFailure(
                status=int(spec["status"]),
                remaining=int(spec.get("count", 1)),
                retry_after=None if spec.get("retry_after") is None else float(spec["retry_after"]),
                error=None if spec.get("error") is None else str(spec["error"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, f"fail-next needs {{'status': int, 'count'?: int, …}}: {exc}")
        if not 400 <= failure.status <= 599 or failure.remaining < 1:
            return error(400, "status must be 400-599 and count at least 1")
        self.sandbox.failures.append(failure)
        return web.json_response({"queued": failure.remaining})

    async def user_change(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
        except ValueError:
            return error(400, "body: not valid JSON")
        if not isinstance(spec, dict):
            return error(400, "body must be a JSON object")
        status, body = self.sandbox.user_change(spec)
        return web.json_response(body, status=status)

    async def webhook(self, request: web.Request) -> web.Response:
        """``{"url": "…", "secret": "whsec_…"}``: where every change is announced from now on."""
        try:
            spec = await request.json()
            self.sandbox.webhooks.subscribe(str(spec["url"]), str(spec["secret"]))
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, f"webhook needs {{'url': 'http…', 'secret': 'whsec_…'}}: {exc}")
        return web.json_response(self.sandbox.webhooks.as_json())

    async def webhook_stats(self, request: web.Request) -> web.Response:
        """The subscription, webhooks sent, failed and pending, and the user changes made."""
        sandbox = self.sandbox
        return web.json_response({**sandbox.webhooks.as_json(), "user_changes": sandbox.stats.user_changes})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.sandbox.stats.as_json())

    async def records(self, request: web.Request) -> web.Response:
        return web.json_response([record.as_json() for record in self.sandbox.store.records()])

    async def reset(self, request: web.Request) -> web.Response:
        self.sandbox.store.reset()
        self.sandbox.stats = Stats()
        self.sandbox.failures.clear()
        return web.Response(status=204)
