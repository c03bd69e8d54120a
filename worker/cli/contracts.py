"""``cwi contracts``: the data contracts (no database, no settings)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The data contracts.", no_args_is_help=True)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the envelope."""
    from contracts import envelope_json_schema

    print(json.dumps(envelope_json_schema(), indent=2))
