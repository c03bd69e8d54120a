"""``cwi subscriptions``: third parties' webhook subscriptions (``worker.operators.subscriptions``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from worker.bootstrap import open_app
from worker.cli.common import console, fail, require_migrated, run_async, settings
from worker.operators.actors import Actor
from worker.operators.dlq import default_operator
from worker.operators.letters import SelectionError, parse_duration
from worker.operators.subscriptions import Issued, SubscriptionError, Subscriptions
from worker.publisher.settings import load_publisher_settings
from worker.settings import SettingsError

T = TypeVar("T")

app = typer.Typer(
    help="Webhook subscriptions: third parties receiving a client's changes, signed.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output")]
IdArg = Annotated[str, typer.Argument(help="Subscription id (cwi subscriptions list)")]


def _run(act: Callable[[Subscriptions, Actor], Awaitable[T]]) -> T:
    s = settings()
    require_migrated(s)
    try:
        publisher = load_publisher_settings()
    except SettingsError as exc:
        fail(f"configuration error: {exc}", 2)

    @asynccontextmanager
    async def service() -> AsyncIterator[Subscriptions]:
        async with open_app(s) as app:
            yield Subscriptions(app.db, app.bus, s, publisher)

    async def main() -> T:
        async with service() as subs:
            return await act(subs, Actor(default_operator(), "admin", via="cli"))

    try:
        return run_async(main())
    except SubscriptionError as exc:
        fail(str(exc))


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _print_issued(issued: Issued, json_out: bool, what: str) -> None:
    if json_out:
        print(
            json.dumps(
                {
                    **issued.subscription,
                    "secret": issued.secret,
                    "previous_valid_until": issued.previous_valid_until,
                }
            )
        )
        return
    sub = issued.subscription
    print(f"subscription: {sub['id']}")
    print(f"secret: {issued.secret}")
    if issued.previous_valid_until:
        print(f"the previous secret signs too until {issued.previous_valid_until}")
    print(f"{what} Give the secret to the subscriber; it is kept encrypted and shown only now.")


@app.command("add")
def add(
    client_id: Annotated[str, typer.Argument(help="Client id whose changes are sent")],
    url: Annotated[str, typer.Argument(help="The subscriber's https:// endpoint")],
    events: Annotated[
        list[str],
        typer.Option("--events", "-e", help="Event patterns: invoice.created, customer.*, *.deleted, *"),
    ],
    fields: Annotated[
        list[str] | None,
        typer.Option("--fields", "-f", help="Only these record fields (id always); default all"),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="What the subscriber is")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Subscribe an endpoint to a client's events; prints the signing secret (once)."""
    issued = _run(
        lambda subs, actor: subs.add(actor, client_id, url, _split(events), _split(fields), description)
    )
    _print_issued(issued, json_out, f"Subscribed {url} to {', '.join(issued.subscription['events'])}.")


@app.command("list")
def list_(
    client: Annotated[str | None, typer.Option("--client", help="Only this client's")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Subscriptions, their state and their deliveries by status."""
    found = _run(lambda subs, actor: subs.listed(client))
    if json_out:
        for sub in found:
            print(json.dumps(sub))
        return
    table = Table("id", "client", "url", "events", "status", "deliveries")
    for sub in found:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(sub["deliveries"].items())) or "—"
        status = sub["status"] + (f": {sub['paused_reason']}" if sub["paused_reason"] else "")
        table.add_row(sub["id"], sub["client_id"], sub["url"], ", ".join(sub["events"]), status, counts)
    console.print(table)


@app.command("rotate-secret")
def rotate_secret(
    subscription_id: IdArg,
    grace: Annotated[
        str | None,
        typer.Option(
            "--grace", help="How long the old secret keeps signing, like 24h (CWI_PUBLISHER_ROTATION_GRACE_S)"
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """A new signing secret; both are sent during the grace period."""
    try:
        grace_s = None if grace is None else parse_duration(grace, "--grace").total_seconds()
    except SelectionError as exc:
        fail(str(exc))
    issued = _run(lambda subs, actor: subs.rotate_secret(actor, subscription_id, grace_s))
    _print_issued(issued, json_out, "Rotated.")


def _state(sub: dict[str, Any]) -> str:
    reason = sub.get("paused_reason")
    return f"{sub['status']} ({reason})" if reason else str(sub["status"])


@app.command("pause")
def pause(subscription_id: IdArg) -> None:
    """Stop delivering; deliveries wait, kept, until it is resumed."""
    sub = _run(lambda subs, actor: subs.pause(actor, subscription_id))
    print(f"{subscription_id}: {_state(sub)}")


@app.command("resume")
def resume(subscription_id: IdArg) -> None:
    """Deliver again, the waiting deliveries first, in order."""
    sub = _run(lambda subs, actor: subs.resume(actor, subscription_id))
    print(f"{subscription_id}: {_state(sub)}; {sub['woken']} record(s) with waiting deliveries resumed")


@app.command("remove")
def remove(subscription_id: IdArg) -> None:
    """Remove it; deliveries still waiting are dropped (its delivery log stays)."""
    dropped = _run(lambda subs, actor: subs.remove(actor, subscription_id))
    print(f"{subscription_id} removed; {dropped} waiting deliver{'y' if dropped == 1 else 'ies'} dropped")


@app.command("deliveries")
def deliveries(
    subscription_id: IdArg,
    status: Annotated[
        str | None,
        typer.Option("--status", help="queued, retrying, parked, delivered, dead, superseded, dropped"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many, newest first")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """The delivery log: status, attempts, latency and the start of the last answer."""
    found = _run(lambda subs, actor: subs.log(subscription_id, status=status, limit=limit))
    if json_out:
        for row in found:
            print(json.dumps(row))
        return
    table = Table("created", "event", "record", "status", "attempts", "last answer", "latency")
    for d in found:
        answer = f"HTTP {d['last_status']}" if d["last_status"] is not None else (d["last_error"] or "—")
        if d["response_excerpt"]:
            answer += f": {d['response_excerpt'][:60]}"
        latency = f"{d['latency_ms']} ms" if d["latency_ms"] is not None else "—"
        table.add_row(
            d["created_at"][:19],
            d["event_type"],
            d["record_id"],
            d["status"],
            str(d["attempts"]),
            answer,
            latency,
        )
    console.print(table)
