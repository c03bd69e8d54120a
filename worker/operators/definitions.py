"""Provider administration: integrators' systems behind the generic REST interface, as named
definitions in the configuration database, validated by a conformance run (``worker.conformance``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from config_db import definitions as repo
from config_db.definitions import Definition
from config_db.models import BASE_URL_LENGTH
from contracts.interface import ENTITIES
from worker.db import Database
from worker.operators.actors import Actor, audit

AUTH_SCHEMES = ("bearer",)  # the interface v1: Authorization: Bearer <token>
WEBHOOK_SIGNING = ("standard-webhooks", "none")
ACTIONS = ("created", "updated", "deleted")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class DefinitionError(Exception):
    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def fill(template: str, values: Mapping[str, str]) -> str:
    """The base URL from the template; DefinitionError naming each placeholder without a value."""
    missing = [p for p in placeholders(template) if not values.get(p)]
    if missing:
        raise DefinitionError(f"give a value for {', '.join('{' + m + '}' for m in missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def validate(raw: Mapping[str, Any]) -> Definition:
    """A definition from form or JSON fields; DefinitionError with one line per problem."""
    problems = []
    name = str(raw.get("name") or "").strip()
    if not _NAME.match(name):
        problems.append("name: 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit")
    template = str(raw.get("base_url_template") or "").strip()
    parts = urlsplit(_PLACEHOLDER.sub("x", template))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        problems.append("base_url_template: an http(s) URL (everything before /v1), {placeholders} allowed")
    elif len(template) > BASE_URL_LENGTH:
        problems.append(f"base_url_template: at most {BASE_URL_LENGTH} characters")
    auth = str(raw.get("auth_scheme") or "bearer")
    if auth not in AUTH_SCHEMES:
        problems.append(
            f"auth_scheme: one of {', '.join(AUTH_SCHEMES)} (the interface v1 uses bearer tokens)"
        )
    entities = _list(raw.get("entities"))
    if not entities or set(entities) - set(ENTITIES):
        problems.append(f"entities: one or more of {', '.join(ENTITIES)}")
    actions = _list(raw.get("actions"))
    if not actions or set(actions) - set(ACTIONS):
        problems.append(f"actions: one or more of {', '.join(ACTIONS)}")
    signing = str(raw.get("webhook_signing") or "standard-webhooks")
    if signing not in WEBHOOK_SIGNING:
        problems.append(f"webhook_signing: one of {', '.join(WEBHOOK_SIGNING)}")
    if problems:
        raise DefinitionError(f"{len(problems)} field(s) need fixing", problems)
    return Definition(
        name=name,
        description=str(raw.get("description") or "").strip(),
        base_url_template=template.rstrip("/"),
        auth_scheme=auth,
        entities=tuple(e for e in ENTITIES if e in entities),
        actions=tuple(a for a in ACTIONS if a in actions),
        webhook_signing=signing,
    )


def _list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def as_dict(d: Definition) -> dict[str, Any]:
    return {
        **d.values(),
        "placeholders": placeholders(d.base_url_template),
        "validated_at": d.validated_at.isoformat() if d.validated_at else None,
        "report": d.report,
    }


class Definitions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[Definition]:
        return await self.db.run(repo.list_definitions)

    async def get(self, name: str) -> Definition | None:
        return await self.db.run(partial(repo.get_definition, name=name))

    async def save(self, actor: Actor, raw: Mapping[str, Any]) -> Definition:
        actor.require("admin", "provider administration")
        definition = validate(raw)
        new = await self.db.run(partial(repo.save_definition, definition=definition))
        await audit(self.db, actor, "provider_defined" if new else "provider_changed", **definition.values())
        return definition

    async def delete(self, actor: Actor, name: str) -> bool:
        actor.require("admin", "provider administration")
        gone = await self.db.run(partial(repo.delete_definition, name=name))
        if gone:
            await audit(self.db, actor, "provider_deleted", name=name)
        return gone

    @staticmethod
    def examples_of(value: object, most: int | None = None) -> int:
        """The generated cases asked for (a JSON number, or a form's text) as the kit takes them, at
        most `most` (default: the kit's own bound)."""
        from worker.conformance.kit import MAX_EXAMPLES

        most = MAX_EXAMPLES if most is None else min(most, MAX_EXAMPLES)
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
            raise DefinitionError(f"examples must be a whole number from 0 to {most}, not {value!r}")
        return value

    async def validate_endpoint(
        self,
        actor: Actor,
        name: str,
        base_url: str,
        token: str,
        *,
        examples: object = 0,
        most_examples: int | None = None,
    ) -> dict[str, Any]:
        """Run the conformance kit against the integrator's endpoint; the report is stored and returned."""
        actor.require("admin", "provider administration")
        definition = await self.get(name)
        if definition is None:
            raise DefinitionError(f"no provider definition named {name!r}")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or not token:
            raise DefinitionError("give the endpoint's http(s) base URL and a token it issued for CW")
        cases = self.examples_of(examples, most_examples)  # a JSON number, or a form's text
        try:
            from worker.conformance.run import Options, run_conformance
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("schemathesis", "hypothesis"):
                raise DefinitionError("the conformance run needs: pip install 'cwi[conformance]'") from None
            raise
        options = Options(
            url=base_url,
            token=token,
            entities=tuple(definition.entities),
            examples=cases,
        )
        report = await run_conformance(options)
        data = report.as_json()
        passed = report.exit_code == 0
        await self.db.run(partial(repo.save_report, name=name, report=data, passed=passed))
        await audit(self.db, actor, "provider_validated", name=name, url=base_url, passed=passed,
                    summary=data["summary"])  # fmt: skip
        return data
