"""The fake Tripletex's event subscriptions: ``/event/subscription``, and the signed callbacks every
change to a subscribed kind sends (``tests/fakes/tripletex.py`` is the fake; this is its mixin).

GET responses and callbacks render references (country, customer, an invoice's orders) as
``fields`` would: ``render``.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from providers.tripletex.webhooks import signed_headers
from tests.fakes.callbacks import CallbackSender
from tests.fakes.tripletex_wire import BODY, COUNTRIES, EVENTS, SUBSCRIPTIONS, error


class TripletexWebhooks:
    """Subscriptions and callbacks; the fake (a dataclass) holds the state named here."""

    store: dict[str, dict[int, dict[str, Any]]]
    writes: Counter[str]
    subscriptions: dict[int, dict[str, Any]]
    callbacks: CallbackSender
    _ids: itertools.count[int]

    def subscribe(self, url: str, secret: str, events: tuple[str, ...]) -> None:
        """Subscriptions as if made through the API, without a request."""
        for event in events:
            sub_id = next(self._ids)
            self.subscriptions[sub_id] = {
                "id": sub_id,
                "event": event,
                "targetUrl": url,
                "fields": "*,version,changes",
                "hmacSharedSecret": secret,
                "status": "ACTIVE",
            }

    def set_webhook(self, url: str, secret: str) -> None:
        """Subscriptions to every event CW syncs (the control endpoint's ``webhook``)."""
        self.subscribe(url, secret, EVENTS)

    def render(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as a GET with nested ``fields`` shows it: references carry their numbers."""
        out = copy.deepcopy(obj)
        for key in ("postalAddress", "physicalAddress"):
            address = out.get(key)
            if isinstance(address, dict) and isinstance(address.get("country"), dict):
                country = address["country"].get("id")
                code = next((c for c, i in COUNTRIES.items() if i == country), None)
                address["country"] = {"id": country, "isoAlpha2Code": code}
        ref = out.get("customer")
        ref_id = ref.get("id") if isinstance(ref, dict) else None
        customer = self.store.get("customer", {}).get(ref_id) if isinstance(ref_id, int) else None
        if customer is not None:
            out["customer"] = {"id": customer["id"], "customerNumber": customer.get("customerNumber")}
        if kind == "invoice":
            orders = self.store.get("order", {})
            out["orders"] = [
                self.render("order", orders[o["id"]]) for o in out.get("orders", []) if o["id"] in orders
            ]
        return out

    def _emit(self, kind: str, verb: str, obj: dict[str, Any]) -> None:
        event = "invoice.charged" if kind == "invoice" else f"{kind}.{verb}"
        value = None if verb == "delete" else self.render(kind, obj)
        for sub in self.subscriptions.values():
            if sub["event"] != event or sub["status"] != "ACTIVE":
                continue
            body = json.dumps(
                {"subscriptionId": sub["id"], "event": event, "id": obj["id"], "value": value}
            ).encode()
            key = str(uuid.uuid4())
            if sub.get("hmacSharedSecret"):
                headers = signed_headers(body, sub["hmacSharedSecret"], idempotency_key=key)
            else:
                headers = {"Content-Type": "application/json", "idempotency-key": key}
            self.callbacks.send(sub["targetUrl"], body, headers)

    def callback(self, event: str, kind: str, obj_id: int, secret: str) -> tuple[dict[str, str], bytes]:
        """A signed webhook callback for an object (fields ``*,version,changes``)."""
        value = None if event.endswith(".delete") else self.store[kind][obj_id]
        body = json.dumps({"subscriptionId": 5, "event": event, "id": obj_id, "value": value}).encode()
        return signed_headers(body, secret, idempotency_key=str(uuid.uuid4())), body

    # -- the /event/subscription endpoints ------------------------------------------------------

    def add_subscription_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"/v2{SUBSCRIPTIONS}", self._list_subscriptions)
        router.add_post(f"/v2{SUBSCRIPTIONS}", self._subscribe)
        router.add_put(f"/v2{SUBSCRIPTIONS}/{{id}}", self._resubscribe)

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        values = [
            {k: v for k, v in s.items() if k != "hmacSharedSecret"} for s in self.subscriptions.values()
        ]
        return web.json_response(
            {"fullResultSize": len(values), "from": 0, "count": len(values), "values": values}
        )

    def _subscription_problem(self, body: dict[str, Any]) -> web.Response | None:
        target = str(body.get("targetUrl") or "")
        # Tripletex wants absolute HTTPS; the fake lets the loopback address through for tests.
        if not (target.startswith("https://") or target.startswith("http://127.0.0.1")):
            return error(422, 18000, "Validation failed", {"targetUrl": "Must be absolute and use HTTPS"})
        if not str(body.get("event") or "").count("."):
            return error(422, 18000, "Validation failed", {"event": "Form should be subject.verb"})
        return None

    async def _subscribe(self, request: web.Request) -> web.Response:
        body = request[BODY]
        problem = self._subscription_problem(body)
        if problem is not None:
            return problem
        sub_id = next(self._ids)
        self.subscriptions[sub_id] = {**body, "id": sub_id, "version": 0, "status": "ACTIVE"}
        self.writes["subscription"] += 1
        shown = {k: v for k, v in self.subscriptions[sub_id].items() if k != "hmacSharedSecret"}
        return web.json_response({"value": shown}, status=201)

    async def _resubscribe(self, request: web.Request) -> web.Response:
        found = self.subscriptions.get(int(request.match_info["id"]))
        body = request[BODY]
        if found is None:
            return error(404, 6000, "Object not found")
        problem = self._subscription_problem({**found, **body})
        if problem is not None:
            return problem
        found.update({k: v for k, v in body.items() if k not in ("id", "version")})
        found["version"] += 1
        self.writes["subscription"] += 1
        return web.json_response({"value": {k: v for k, v in found.items() if k != "hmacSharedSecret"}})
