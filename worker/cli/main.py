"""``cwi``: the command line of the integration worker.

The commands are registered here by module and short help, and imported when used
(``worker.cli.lazy``): ``cwi --help`` imports no command, and each command only what it needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from worker.cli.lazy import Lazy, LazyGroup

SETUP, MESSAGES, OPERATING, DEVELOPMENT = "Configuration", "Messages", "Operating", "Development"

COMMANDS: Mapping[str, Lazy] = {
    "db": Lazy("worker.cli.db:app", "Database schema.", SETUP),
    "clients": Lazy("worker.cli.clients:app", "CW clients (tenants).", SETUP),
    "connections": Lazy("worker.cli.connections:app", "Each client's ERP connection.", SETUP),
    "webhooks": Lazy(
        "worker.cli.webhooks:app", "Webhook endpoints: where each client's ERP calls us.", SETUP
    ),
    "contracts": Lazy("worker.cli.contracts:app", "The data contracts.", SETUP),
    "secrets": Lazy(
        "worker.cli.secrets:app",
        "The keys that encrypt connection credentials and subscription secrets (CWI_SECRET_KEY).",
        SETUP,
    ),
    "send": Lazy(
        "worker.cli.messages:send",
        "Validate every envelope in FILE, then publish them all (or nothing, exit 2, if any is invalid).",
        MESSAGES,
    ),
    "run": Lazy(
        "worker.cli.messages:run",
        "Run the worker: receive, push to each client's ERP, settle. SIGINT/SIGTERM stop it gracefully.",
        MESSAGES,
    ),
    "serve": Lazy(
        "worker.cli.serve:serve",
        "Receive the ERPs' webhook calls (POST /webhooks/PROVIDER/TOKEN); /healthz, /readyz, /metrics.",
        MESSAGES,
    ),
    "preview": Lazy(
        "worker.cli.messages:preview",
        "Print the exact HTTP requests the client's provider would send for each event; send nothing.",
        MESSAGES,
    ),
    "status": Lazy(
        "worker.cli.messages:status",
        "Message counts on the bus (active, scheduled, locked, dead-lettered by reason), dead letters by "
        "client and reason, and the last success and failure per client and provider.",
        OPERATING,
    ),
    "synclog": Lazy(
        "worker.cli.synclog:app",
        "The synchronization log, oldest first among the newest LIMIT entries.",
        OPERATING,
    ),
    "dlq": Lazy("worker.cli.dlq:app", "Dead-lettered messages: list, show, replay, purge.", OPERATING),
    "subscriptions": Lazy(
        "worker.cli.subscriptions:app",
        "Webhook subscriptions: third parties receiving a client's changes, signed.",
        OPERATING,
    ),
    "conformance": Lazy(
        "worker.cli.conformance:conformance",
        "Check an ERP endpoint against the generic REST interface (docs/interface.md).",
        OPERATING,
    ),
    "reconcile": Lazy(
        "worker.cli.reconcile:reconcile",
        "Find records missing on a side, different (field by field), or linked to an ERP record that no "
        "longer exists. Exit 0 when in step (or every finding was repaired), 1 when drift remains.",
        OPERATING,
    ),
    "sandbox": Lazy(
        "worker.cli.dev:sandbox",
        "Run the sandbox ERP: the reference implementation of CW's generic REST interface.",
        DEVELOPMENT,
    ),
    "demo": Lazy(
        "worker.cli.dev:demo",
        "Run the worker end to end on a temporary SQLite database against the sandbox ERP.",
        DEVELOPMENT,
    ),
    "bench": Lazy(
        "worker.cli.dev:bench", "Benchmark the real pipeline over a bus; prints one JSON object.", DEVELOPMENT
    ),
}


class CwiGroup(LazyGroup):
    lazy = COMMANDS


app = typer.Typer(
    name="cwi",
    cls=CwiGroup,
    help="Contracting Works integration worker: keeps CW and each client's ERP in step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"cwi {version('cwi')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Contracting Works integration worker: keeps CW and each client's ERP in step."""


def main(argv: Sequence[str] | None = None) -> Any:
    """The ``cwi`` console script; ``argv`` (default: the process's arguments) for in-process use."""
    return app(args=None if argv is None else list(argv), prog_name="cwi")


if __name__ == "__main__":
    main()
