"""``cwi conformance URL --token T``: check an ERP endpoint against the generic REST interface."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated
from urllib.parse import urlsplit

import typer

from worker.cli.common import exit_with, fail
from worker.conformance.kit import MAX_EXAMPLES
from worker.extras import MissingExtraError, extra_needed


def conformance(
    url: Annotated[str, typer.Argument(help="The ERP's base URL: everything before /v1")],
    token: Annotated[
        str, typer.Option(help="Bearer token the ERP issued for CW", envvar="CWI_CONFORMANCE_TOKEN")
    ],
    entities: Annotated[
        str | None, typer.Option(help="Comma-separated entities to check (default: all four)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    examples: Annotated[
        int,
        typer.Option(
            min=0, max=MAX_EXAMPLES, help="Generated cases per operation and phase (0: no schema-driven part)"
        ),
    ] = 20,
    seed: Annotated[int | None, typer.Option(help="Seed of the generated cases, to repeat a run")] = None,
    webhook_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT where the kit receives the ERP's webhooks")
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            help="whsec_… secret the ERP signs its webhooks with", envvar="CWI_CONFORMANCE_WEBHOOK_SECRET"
        ),
    ] = None,
    webhook_wait: Annotated[
        float, typer.Option(min=0, max=600, help="Seconds to wait for the webhooks (at most 600)")
    ] = 5.0,
) -> None:
    """Check an ERP endpoint against the generic REST interface (docs/interface.md).

    Writes test records (ids cwi-conformance-…): run it against a test company. Exit code 0
    when every check passed, 1 when any failed, 2 for a usage error.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        fail(f"URL must be the http(s) base URL of the ERP (everything before /v1), not {url!r}", 2)
    from contracts.interface import ENTITIES

    chosen = tuple(e.strip() for e in entities.split(",")) if entities else ENTITIES
    unknown = [e for e in chosen if e not in ENTITIES]
    if unknown or not chosen:
        fail(f"--entities takes a comma-separated subset of {', '.join(ENTITIES)}, not {entities!r}", 2)
    if bool(webhook_listen) != bool(webhook_secret):
        fail("--webhook-listen and --webhook-secret go together", 2)
    if webhook_listen and not webhook_listen.rpartition(":")[2].isdigit():
        fail(f"--webhook-listen takes HOST:PORT, not {webhook_listen!r}", 2)
    try:
        with extra_needed("cwi conformance"):
            from worker.conformance.run import Options, run_conformance
    except MissingExtraError as exc:
        fail(str(exc), 2)
    if webhook_secret:
        from providers.generic_rest.webhooks import decode_secret

        try:
            decode_secret(webhook_secret)
        except ValueError as exc:
            fail(f"--webhook-secret: {exc}", 2)
    options = Options(
        url=url,
        token=token,
        entities=chosen,
        examples=examples,
        seed=seed,
        webhook_listen=webhook_listen,
        webhook_secret=webhook_secret,
        webhook_wait_s=webhook_wait,
    )
    report = asyncio.run(run_conformance(options))
    print(json.dumps(report.as_json(), indent=2) if as_json else report.render())
    exit_with(report.exit_code)
