"""``cwi``: the command line of the integration worker."""

from __future__ import annotations

import sys

import typer

from worker.cli import admin, conformance, dlq, messages, serve, subscriptions, tools, webhooks_register
from worker.cli.common import CliError, err_console
from worker.cli.webhooks import webhooks_app
from worker.settings import SettingsError

app = typer.Typer(
    name="cwi",
    help="Contracting Works integration worker: keeps CW and each client's ERP in step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.clients_app, name="clients")
app.add_typer(admin.connections_app, name="connections")
app.add_typer(admin.contracts_app, name="contracts")
webhooks_app.command("register")(webhooks_register.register)
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(dlq.dlq_app, name="dlq")
app.add_typer(subscriptions.subscriptions_app, name="subscriptions")
app.command()(messages.send)
app.command()(messages.run)
app.command()(messages.status)
app.command()(messages.synclog)
app.command()(messages.preview)
app.command()(tools.sandbox)
app.command()(tools.demo)
app.command()(tools.bench)
app.command()(serve.serve)
app.command()(conformance.conformance)


def main() -> None:
    try:
        app()
    except CliError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(exc.code)
    except SettingsError as exc:  # settings read when a command starts its work (CWI_PUBLISHER_*)
        err_console.print(f"error: configuration error: {exc}", markup=False, highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
