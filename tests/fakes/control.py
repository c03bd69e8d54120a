"""Control endpoints of the fake ERPs, for tests that cannot call the fake's methods directly.

A fake served in another thread or process is changed "as an ERP user would" through HTTP on its
own event loop (never from the test's thread):

- ``POST /_control/webhook``      ``{"url", "secret"}``: where and how the fake calls back;
- ``POST /_control/user_create``  ``{"kind", "value"}``: a user creates a record (answer: the record);
- ``POST /_control/user_update``  ``{"kind", "id", "fields"}``: a user edits one;
- ``POST /_control/user_delete``  ``{"kind", "id"}``: a user deletes one.

``kind`` and ``id`` are the fake's own (Tripletex ``customer`` and an int id, Uni ``customers`` and
an int ID, Visma ``customer`` and the number). These paths are not the vendor's API: the fakes
serve them without auth and without checking them against the vendor's spec.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Protocol

from aiohttp import web

PREFIX = "/_control/"


class Controllable(Protocol):
    def set_webhook(self, url: str, secret: str) -> None: ...

    def user_create(self, kind: str, value: dict[str, Any], /) -> dict[str, Any]: ...

    def user_update(self, kind: str, key: Any, /, **fields: Any) -> dict[str, Any]: ...

    def user_delete(self, kind: str, key: Any, /) -> None: ...


def add_control_routes(app: web.Application, fake: Controllable) -> None:
    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        action = request.match_info["action"]
        try:
            if action == "webhook":
                fake.set_webhook(body["url"], body["secret"])
                return web.json_response({})
            if action == "user_create":
                return web.json_response(fake.user_create(body["kind"], body["value"]))
            if action == "user_update":
                return web.json_response(fake.user_update(body["kind"], body["id"], **body.get("fields", {})))
            if action == "user_delete":
                fake.user_delete(body["kind"], body["id"])
                return web.json_response({})
        except KeyError as exc:
            return web.json_response({"error": f"unknown or missing {exc}"}, status=404)
        return web.json_response({"error": f"no control action {action!r}"}, status=404)

    app.router.add_post(PREFIX + "{action}", control)


def control(base_url: str, action: str, body: dict[str, Any]) -> Any:
    """Call a fake's control endpoint from a test's (synchronous) thread; ``base_url`` is the fake's
    base URL as a connection holds it; the answer is the decoded JSON."""
    root = base_url.rstrip("/").removesuffix("/v2")  # Tripletex's base URL ends in its API version
    request = urllib.request.Request(  # noqa: S310 - a fake on 127.0.0.1
        root + PREFIX + action,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read() or b"null")
