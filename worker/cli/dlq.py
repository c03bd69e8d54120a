"""``cwi dlq``: inspect, replay and purge dead-lettered messages (worker.operators.dlq does the work)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from contracts.reasons import DeadLetterReason
from worker.bootstrap import open_app
from worker.cli.common import console, err_console, exit_with, fail, require_migrated, run_async, settings
from worker.operators.dlq import DeadLetterOperations, Halt, Outcome
from worker.operators.letters import (
    Letter,
    Selection,
    SelectionError,
    SelectionRequest,
    describe_invalid,
    grouped,
)
from worker.settings import MAX_LISTED

app = typer.Typer(help="Dead-lettered messages: list, show, replay, purge.", no_args_is_help=True)

ClientOpt = Annotated[str | None, typer.Option("--client", help="Only this client's messages")]
KNOWN_REASONS = frozenset(r.value for r in DeadLetterReason)
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Only this dead-letter reason code")]
TypeOpt = Annotated[str | None, typer.Option("--type", help="Only this event type, e.g. customer.created")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Dead-lettered at or after (ISO 8601)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]
OperatorOpt = Annotated[
    str | None, typer.Option("--operator", help="Who is acting, for the sync log (default: the OS user)")
]
HALT_ENV = "CWI_DLQ_HALT_AT"


def _halt_from_env() -> Halt:
    """``CWI_DLQ_HALT_AT=stage:n`` SIGKILLs this process the n-th time a replay reaches ``stage``
    (claimed, sent, resent): how the tests interrupt a replay at an exact point."""
    spec = os.environ.get(HALT_ENV, "")
    stage, _, count = spec.partition(":")
    reached: Counter[str] = Counter()

    def halt(at: str) -> None:
        reached[at] += 1
        if at == stage and reached[at] == int(count or 1):
            print(f"halted at {at} {reached[at]}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return halt


@asynccontextmanager
async def _operations(operator: str | None = None) -> AsyncIterator[DeadLetterOperations]:
    s = settings()
    require_migrated(s)
    async with open_app(s) as app:
        yield DeadLetterOperations(app.db, app.bus, operator=operator, halt=_halt_from_env())


def _selection(
    ids: Sequence[str] = (),
    *,
    client: str | None = None,
    reason: str | None = None,
    type_: str | None = None,
    since: str | None = None,
    older_than: str | None = None,
    limit: int | None = None,
) -> Selection:
    if reason is not None and reason not in KNOWN_REASONS:
        known = ", ".join(sorted(KNOWN_REASONS))
        fail(f"--reason {reason!r} is not a dead-letter reason; one of: {known}", code=2)
    given = {"client": client, "reason": reason, "type": type_, "since": since, "older_than": older_than}
    try:
        # The same model as the admin API's parameters.
        request = SelectionRequest(
            ids=list(ids) or None, limit=limit, **{k: v for k, v in given.items() if v}
        )
        return request.selection()
    except ValidationError as exc:
        fail(describe_invalid(exc), code=2)
    except SelectionError as exc:
        fail(str(exc), code=2)


@app.command("list")
def list_(
    client: ClientOpt = None,
    reason: ReasonOpt = None,
    type_: TypeOpt = None,
    since: SinceOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_LISTED, help="Show at most N messages")
    ] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Dead-lettered messages, oldest first, and a summary by client and reason."""
    selection = _selection(client=client, reason=reason, type_=type_, since=since)

    async def work() -> list[Letter]:
        async with _operations() as ops:
            return await ops.select(selection)

    letters = run_async(work())
    shown = letters[:limit]
    if json_out:
        data = {"total": len(letters), "messages": [x.summary() for x in shown], "summary": grouped(letters)}
        print(json.dumps(data))
        return
    # The id whole, never cut with an ellipsis: it is what `dlq show` and `dlq replay` take.
    id_column = Column("id", overflow="fold", min_width=36)
    table = Table(id_column, "client", "type", "reason", "description", "deliveries", "dead-lettered at")
    for letter in shown:
        row = letter.summary()
        table.add_row(
            row["id"], row["client_id"] or "", row["type"] or "", row["reason"],
            row["description"], str(row["delivery_count"]), letter.at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    console.print(table)
    summary = Table("client", "reason", "count", title="by client and reason")
    for group in grouped(letters):
        summary.add_row(group["client_id"], group["reason"], str(group["count"]))
    console.print(summary)
    more = f" (showing {len(shown)})" if len(shown) < len(letters) else ""
    console.print(f"{len(letters)} dead-lettered message(s){more}")


@app.command()
def show(
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter's transport message id")],
    json_out: JsonOpt = False,
) -> None:
    """One dead letter: envelope, reason, transport properties and its sync-log history."""

    async def work() -> dict[str, Any] | None:
        async with _operations() as ops:
            return await ops.show(message_id)

    data = run_async(work())
    if data is None:
        fail(f"no dead-lettered message with id {message_id!r}")
    if json_out:
        print(json.dumps(data, ensure_ascii=False))
        return
    for key in ("id", "client_id", "type", "envelope_id", "reason", "description", "delivery_count"):
        console.print(f"{key}: {data[key]}", markup=False, highlight=False)
    console.print(f"dead_lettered_at: {data['dead_lettered_at'] or data['enqueued_at']}", markup=False)
    console.print("properties:", json.dumps(data["properties"], indent=2), markup=False)
    console.print("envelope:", json.dumps(data["envelope"] or data["body"], indent=2), markup=False)
    history = Table("at", "dir", "provider", "action", "external id", "detail", title="history")
    for row in data["history"]:
        history.add_row(
            *(str(row[k] or "") for k in ("at", "direction", "provider", "action", "external_id", "detail"))
        )
    console.print(history)


def _confirm(question: str) -> None:
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # end of input: no answer is no
        err_console.print()
        agreed = False
    if not agreed:
        err_console.print("aborted: nothing was changed", markup=False)
        exit_with(1)


def _act(
    selection: Selection,
    *,
    verb: str,
    operator: str | None,
    dry_run: bool,
    yes: bool,
    confirm_single: bool,
    json_out: bool,
    act: Callable[[DeadLetterOperations, Letter], Awaitable[Outcome]],
) -> None:
    """Select, confirm, act on each with a progress bar, summarise."""

    async def work() -> tuple[list[Letter], list[Outcome]]:
        async with _operations(operator) as ops:
            letters = await ops.select(selection)
            missing = [i for i in selection.ids if i not in {x.id for x in letters}]
            gone = [Outcome(i, "skipped", "not dead-lettered") for i in missing]
            if dry_run or not letters:
                return letters, gone
            if not yes and (confirm_single or len(letters) > 1 or not selection.ids):
                _confirm(f"{verb.capitalize()} {len(letters)} dead-lettered message(s)?")
            return letters, gone + await _each(ops, letters, verb, act)

    letters, outcomes = run_async(work())
    if dry_run:
        _report_dry_run(letters, verb, json_out)
        return
    counts: Counter[str] = Counter(o.status for o in outcomes)
    done = "replayed" if verb == "replay" else "purged"
    summary = {done: counts[done], "skipped": counts["skipped"], "failed": counts["failed"]}
    if json_out:
        print(json.dumps({"summary": summary, "messages": [o.as_dict() for o in outcomes]}))
    else:
        for o in outcomes:
            if o.status in ("skipped", "failed"):
                console.print(f"{o.status}: {o.id}: {o.detail}", markup=False, highlight=False)
        console.print(", ".join(f"{k} {v}" for k, v in summary.items()), markup=False)
    if counts["failed"]:
        exit_with(1)


async def _each(
    ops: DeadLetterOperations,
    letters: Sequence[Letter],
    verb: str,
    act: Callable[[DeadLetterOperations, Letter], Awaitable[Outcome]],
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    columns = (TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(verb, total=len(letters))
        for letter in letters:
            outcomes.append(await act(ops, letter))
            progress.advance(task)
    return outcomes


def _report_dry_run(letters: Sequence[Letter], verb: str, json_out: bool) -> None:
    if json_out:
        print(json.dumps({"dry_run": True, "would": verb, "messages": [x.summary() for x in letters]}))
        return
    for letter in letters:
        console.print(f"would {verb} {letter.id} ({letter.client_id}, {letter.type}, {letter.dead.reason})",
                      markup=False, highlight=False)  # fmt: skip
    done = "replayed" if verb == "replay" else "purged"
    console.print(f"dry run: {len(letters)} message(s) would be {done}; nothing was changed", markup=False)


@app.command()
def replay(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Transport message ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter the filters select")] = False,
    client: ClientOpt = None,
    reason: ReasonOpt = None,
    type_: TypeOpt = None,
    since: SinceOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N messages")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be replayed; change nothing")
    ] = False,
    yes: YesOpt = False,
    operator: OperatorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resend dead letters as new messages (source "replay", same envelope id); each only once."""
    if bool(ids) == all_:
        fail("give the ids to replay, or --all (with filters to narrow it)", code=2)
    selection = _selection(ids or (), client=client, reason=reason, type_=type_, since=since, limit=limit)
    _act(selection, verb="replay", operator=operator, dry_run=dry_run, yes=yes, confirm_single=False,
         json_out=json_out, act=lambda ops, letter: ops.replay(letter))  # fmt: skip


@app.command()
def purge(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Transport message ids")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Dead-lettered longer ago than this: 7d, 12h, 30m")
    ] = None,
    client: ClientOpt = None,
    reason: ReasonOpt = None,
    type_: TypeOpt = None,
    since: SinceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be purged; change nothing")
    ] = False,
    yes: YesOpt = False,
    operator: OperatorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete dead letters (each journalled with its body in the sync log). Asks first unless --yes."""
    if bool(ids) == (older_than is not None):
        fail("give the ids to purge, or --older-than DURATION (with filters to narrow it)", code=2)
    selection = _selection(
        ids or (), client=client, reason=reason, type_=type_, since=since, older_than=older_than
    )
    _act(selection, verb="purge", operator=operator, dry_run=dry_run, yes=yes, confirm_single=True,
         json_out=json_out, act=lambda ops, letter: ops.purge(letter))  # fmt: skip
