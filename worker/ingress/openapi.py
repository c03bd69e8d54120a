"""The admin API as an OpenAPI 3.1 document (served at ``/admin/openapi.json``).

Written out here rather than generated from docstrings: the routes are few, and a test checks
that every route of the app is in the document and that the document is valid OpenAPI.
"""

from __future__ import annotations

from typing import Any

from worker.conformance.kit import MAX_EXAMPLES

OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}},
    "required": ["error"],
}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
IDS = {"type": "array", "items": {"type": "string"}}


def _param(name: str, where: str = "path", required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


def _op(
    summary: str,
    role: str,
    *,
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    ok: int = 200,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(ok): {"description": "done", "content": {"application/json": {"schema": OBJECT}}}
        if ok != 204
        else {"description": "done"},
        "400": {"description": "bad input", "content": {"application/json": {"schema": ERROR}}},
        "401": {"description": "no valid key", "content": {"application/json": {"schema": ERROR}}},
        "403": {"description": f"needs the {role} role", "content": {"application/json": {"schema": ERROR}}},
        "503": {"description": "no admin key configured", "content": {"application/json": {"schema": ERROR}}},
    }
    op: dict[str, Any] = {"summary": summary, "description": f"Role: {role}.", "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


CLIENT = _param("id")
KEY = _param("key")
NAME = _param("name")
FILTERS = tuple(_param(n, "query", False) for n in ("client", "reason", "type", "since", "limit"))
SELECT = _obj(
    ids=IDS,
    all={"type": "boolean"},
    older_than={"type": "string"},
    client={"type": "string"},
    reason={"type": "string"},
    type={"type": "string"},
    since={"type": "string"},
    dry_run={"type": "boolean"},
    operator={"type": "string"},
)
CONNECTION = _obj(
    kind={"type": "string", "enum": ["generic_rest", "tripletex", "visma_net", "uni_economy"]},
    base_url={"type": "string"},
    settings=STRINGS,
    credentials=STRINGS,
    unset=IDS,
    enabled={"type": "boolean"},
)
DEFINITION = _obj(
    description={"type": "string"},
    base_url_template={"type": "string"},
    auth_scheme={"type": "string", "enum": ["bearer"]},
    entities=IDS,
    actions=IDS,
    webhook_signing={"type": "string", "enum": ["standard-webhooks", "none"]},
)


SUBSCRIPTION = (_param("id"),)


def _subscription_paths() -> dict[str, Any]:
    """Webhook subscriptions of third parties (``worker/ingress/admin_subscriptions.py``)."""
    return {
        "/subscriptions": {
            "get": _op(
                "Webhook subscriptions with their delivery counts",
                "viewer",
                params=(_param("client", "query", False),),
            ),
            "post": _op(
                "Add a subscription; answers its signing secret once",
                "admin",
                body=_obj(
                    client_id={"type": "string"},
                    url={"type": "string"},
                    events=IDS,
                    fields=IDS,
                    description={"type": "string"},
                ),
                ok=201,
            ),
        },
        "/subscriptions/{id}": {
            "get": _op("One subscription (never its secrets)", "viewer", params=SUBSCRIPTION),
            "delete": _op("Remove it; its waiting deliveries are dropped", "admin", params=SUBSCRIPTION),
        },
        "/subscriptions/{id}/rotate-secret": {
            "post": _op(
                "A new secret (answered once); the old one signs beside it for grace_s",
                "admin",
                params=SUBSCRIPTION,
                body=_obj(grace_s={"type": "number", "minimum": 0}),
            )
        },
        "/subscriptions/{id}/pause": {
            "post": _op("Pause: its deliveries wait, kept", "operator", params=SUBSCRIPTION)
        },
        "/subscriptions/{id}/resume": {
            "post": _op("Resume: the backlog is delivered, in order", "operator", params=SUBSCRIPTION)
        },
        "/subscriptions/{id}/deliveries": {
            "get": _op(
                "The delivery log, newest first: status, attempts, latency, the answer's start",
                "viewer",
                params=(*SUBSCRIPTION, _param("status", "query", False), _param("limit", "query", False)),
            )
        },
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/openapi.json": {"get": _op("This document", "viewer")},
        "/overview": {
            "get": _op("Per client and provider: messages, outcomes, dead letters, latency", "viewer")
        },
        "/dlq": {"get": _op("Dead letters and a summary by client and reason", "viewer", params=FILTERS)},
        "/dlq/{id}": {"get": _op("One dead letter with its journal", "viewer", params=(_param("id"),))},
        "/dlq/replay": {
            "post": _op("Replay dead letters (dry_run: what would be replayed)", "operator", body=SELECT)
        },
        "/dlq/purge": {"post": _op("Purge dead letters (bodies journalled first)", "operator", body=SELECT)},
        "/dlq/{id}/edit": {
            "post": _op(
                "Edit and retry: the envelope validated, sent as a new message naming the original "
                "(off unless CWI_CONSOLE_EDIT_RETRY=true)",
                "operator",
                params=(_param("id"),),
                body=_obj(envelope=OBJECT),
            )
        },
        "/failures": {
            "get": _op("Dead letters grouped by reason, provider and masked description", "viewer")
        },
        "/failures/{key}": {"get": _op("One failure group with its messages", "viewer", params=(KEY,))},
        "/failures/{key}/{verb}": {
            "post": _op(
                "dry-run, retry or purge the group (ids: only those; purge needs confirm: true)",
                "operator (dry-run: viewer)",
                params=(
                    KEY,
                    {
                        "name": "verb",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["dry-run", "retry", "purge"]},
                    },
                ),
                body=_obj(ids=IDS, confirm={"type": "boolean"}),
            )
        },
        "/records": {
            "get": _op(
                "Find records by CW id, external id, number or name",
                "viewer",
                params=(_param("client", "query"), _param("q", "query")),
            )
        },
        "/records/{client}/{entity}/{cw_id}": {
            "get": _op(
                "The life of a record: timeline, values written, ERP answers, current link",
                "viewer",
                params=(_param("client"), _param("entity"), _param("cw_id")),
            )
        },
        "/clients": {
            "get": _op("Clients with their provider", "viewer"),
            "post": _op(
                "Add a client", "admin", body=_obj(id={"type": "string"}, name={"type": "string"}), ok=201
            ),
        },
        "/clients/{id}/enabled": {
            "post": _op(
                "Disable or enable a client's connection",
                "admin",
                params=(CLIENT,),
                body=_obj(enabled={"type": "boolean"}),
            )
        },
        "/clients/{id}/connection": {
            "get": _op("The connection; credentials only as set/unset", "viewer", params=(CLIENT,)),
            "put": _op(
                "Create or change the connection (settings validated, credentials write-only)",
                "admin",
                params=(CLIENT,),
                body=CONNECTION,
            ),
        },
        "/clients/{id}/connection/test": {
            "post": _op("Test the connection: the provider's own answer", "operator", params=(CLIENT,))
        },
        "/clients/{id}/mapping": {
            "get": _op("The mapping settings as form fields", "viewer", params=(CLIENT,))
        },
        "/clients/{id}/webhooks": {
            "post": _op(
                "Issue (or rotate) the webhook URL; answers the URL and secret once",
                "admin",
                params=(CLIENT,),
                body=_obj(rotate={"type": "boolean"}),
            )
        },
        "/clients/{id}/webhooks/register": {
            "post": _op(
                "Subscribe the ERP to a new webhook URL, or the steps (Visma's portal)",
                "admin",
                params=(CLIENT,),
            )
        },
        "/providers": {"get": _op("Provider definitions (generic REST integrators)", "viewer")},
        "/providers/{name}": {
            "get": _op("One provider definition with its last conformance report", "viewer", params=(NAME,)),
            "put": _op("Create or change a provider definition", "admin", params=(NAME,), body=DEFINITION),
            "delete": _op("Delete a provider definition", "admin", params=(NAME,), ok=204),
        },
        "/providers/{name}/conformance": {
            "post": _op(
                "Validate an endpoint: a conformance run; the report is stored",
                "admin",
                params=(NAME,),
                body=_obj(
                    base_url={"type": "string"},
                    placeholders=STRINGS,
                    token={"type": "string"},
                    examples={"type": "integer", "minimum": 0, "maximum": MAX_EXAMPLES},
                ),
            )
        },
        "/audit": {
            "get": _op(
                "Every operator action: who, what, when", "viewer", params=(_param("client", "query", False),)
            )
        },
        **_subscription_paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cwi admin API",
            "version": "1",
            "description": "What the operator console does, as JSON. Keys: CWI_ADMIN_API_KEY (admin), "
            "CWI_OPERATOR_API_KEY (operator), CWI_VIEWER_API_KEY (viewer).",
        },
        "servers": [{"url": "/admin"}],
        "components": {
            "securitySchemes": {
                "key": {"type": "http", "scheme": "bearer"},
                "header": {"type": "apiKey", "in": "header", "name": "X-Admin-Key"},
            }
        },
        "security": [{"key": []}, {"header": []}],
        "paths": paths,
    }
