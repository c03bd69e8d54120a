"""The listener's ASGI app: webhook calls, health, readiness and metrics.

Built by ``create_app`` from an open ``App`` (database and bus) — it owns neither, so `cwi serve`
and the tests decide their lifetime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from config_db.webhooks import hash_token
from worker import tracing
from worker.bootstrap import App
from worker.console.app import console_app
from worker.health import RETRY_LATER
from worker.ingress.admin import admin_app
from worker.ingress.admin_routes import MAX_REQUEST_BYTES
from worker.ingress.bodies import BodyTooLarge, read_body
from worker.ingress.health import Health, starlette
from worker.ingress.ratelimit import RateLimiter
from worker.ingress.receiving import Accepted, Refused, lookup, parse, publish_new
from worker.logging import get_logger
from worker.metrics import Metrics, provider_label
from worker.outage import DatabaseUnavailable

log = get_logger()

MAX_BODY = 1024 * 1024  # bytes; vendors send single events, far below this
WEBHOOK_ROUTE = "/webhooks/{provider}/{token}"


@dataclass
class Ingress:
    app: App
    metrics: Metrics
    limiter: RateLimiter

    async def webhook(self, request: Request) -> Response:
        provider, token = request.path_params["provider"], request.path_params["token"]
        label = provider_label(provider)  # the path is the caller's: only known kinds become labels
        self.metrics.webhooks_received.labels(label).inc()
        # A trace starts here (or continues the caller's); the URL's token is never recorded.
        attributes = {"http.request.method": "POST", "http.route": WEBHOOK_ROUTE, "cwi.provider": label}
        with tracing.entering(f"POST /webhooks/{label}", request.headers, **attributes):
            try:
                accepted = await self._receive(request, provider, token)
            except Refused as refused:
                return self._refuse(label, refused)
            except DatabaseUnavailable as exc:  # never accepted and then lost: the vendor retries later
                return self._refuse(label, Refused(503, "unavailable", str(exc), headers=RETRY_LATER))
            except Exception as exc:  # the bus down: the vendor should retry
                log.exception(
                    "webhook not taken", provider=provider, error=f"{exc.__class__.__name__}: {exc}"
                )
                return self._refuse(
                    label,
                    Refused(503, "unavailable", "cannot take webhooks right now: retry", headers=RETRY_LATER),
                )
            tracing.annotate(**{"cwi.client": accepted.client_id, "http.response.status_code": 202})
        client = self.metrics.client(accepted.client_id)
        counted = self.metrics.webhooks_duplicates if accepted.duplicate else self.metrics.webhooks_accepted
        counted.labels(label, client).inc()
        self.metrics.webhook_envelopes.labels(label, client).inc(len(accepted.published))
        log.info(
            "webhook accepted", provider=provider, client_id=accepted.client_id,
            published=len(accepted.published), duplicates=len(accepted.duplicates),
        )  # fmt: skip
        return JSONResponse(
            {"published": accepted.published, "duplicates": accepted.duplicates}, status_code=202
        )

    def _refuse(self, label: str, refused: Refused) -> Response:
        self.metrics.webhooks_rejected.labels(label, refused.reason).inc()
        tracing.annotate(**{"http.response.status_code": refused.status, "cwi.refused": refused.reason})
        log.warning(
            "webhook refused", provider=label, status=refused.status, reason=refused.reason,
            detail=str(refused),
        )  # fmt: skip
        body = {"error": refused.reason, "message": str(refused)}
        return JSONResponse(body, status_code=refused.status, headers=refused.headers)

    async def _receive(self, request: Request, provider: str, token: str) -> Accepted:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise _too_large(int(declared))
        spec = await lookup(self.app.db, self.app.settings.secret, token, provider)
        wait = self.limiter.take(hash_token(token))
        if wait > 0:
            raise Refused(
                429,
                "rate_limited",
                f"too many calls on this webhook URL: retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        try:
            body = await read_body(request, MAX_BODY)
        except BodyTooLarge as exc:
            raise _too_large(exc.size) from None
        changes = parse(spec, request.headers, body)
        return await publish_new(self.app.db, self.app.bus, spec, changes, body)


def _too_large(size: int | None) -> Refused:
    got = f"{size} bytes" if size is not None else "more"
    return Refused(413, "too_large", f"webhook body is {got}; the limit is {MAX_BODY} bytes")


def create_app(app: App, metrics: Metrics, *, limiter: RateLimiter | None = None) -> Starlette:
    s = app.settings
    ingress = Ingress(app, metrics, limiter or RateLimiter(s.webhook_rate_per_s, s.webhook_rate_burst))
    return starlette(
        [
            Route(WEBHOOK_ROUTE, ingress.webhook, methods=["POST"]),
            *Health(app, metrics).routes(),  # /healthz, /readyz, /metrics
            # The operator API (dead letters): 401 without CWI_ADMIN_API_KEY's key, 503 when it is unset.
            Mount("/admin", app=admin_app(app.db, app.bus, s)),  # bounded as it reads (admin_routes)
            # The operator console: pages on the same services as the admin API (worker/console).
            # Its forms' bodies at most MAX_REQUEST_BYTES, as the admin API's (413 beyond).
            Mount("/console", app=console_app(app.db, app.bus, s), max_body_size=MAX_REQUEST_BYTES),
        ]
    )
