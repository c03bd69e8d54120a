"""A command group whose commands are imported on first use.

Each command's module is named in a registry with the short help ``cwi --help`` shows, so listing
the commands imports none of them, and running one imports only its own module (``cwi contracts
schema`` needs neither the database nor the HTTP stack). ``tests/unit/test_cli_lazy.py`` checks
that each registered help is the command's own.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

from worker.cli.errors import explain

if TYPE_CHECKING:
    from typer import _click as click  # typer's own click, which its command classes derive from


@dataclass(frozen=True, slots=True)
class Lazy:
    """``target`` is ``module:attribute``: a ``typer.Typer`` (a command group) or a command function."""

    target: str
    help: str
    panel: str | None = None

    def load(self, name: str) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        obj = getattr(importlib.import_module(module_name), attribute)
        holder = typer.Typer()
        if isinstance(obj, typer.Typer):
            holder.add_typer(obj, name=name, rich_help_panel=self.panel)
            group = typer.main.get_command(holder)
            assert isinstance(group, TyperGroup)
            return reflowed(group.commands[name])
        holder.command(name, rich_help_panel=self.panel)(obj)
        return reflowed(typer.main.get_command(holder))

    def listed(self, name: str) -> click.Command:
        """What the group's help shows, without importing the command."""
        return TyperCommand(name, help=self.help, short_help=self.help, rich_help_panel=self.panel)


def reflowed(command: click.Command) -> click.Command:
    """``command`` (and its subcommands) with each paragraph of its help on one line. Typer shows
    the line breaks of a docstring's paragraphs (all but the first) and of a command's summary in
    its group's list as they are in the source: joined, the terminal's width wraps them."""
    if command.help:
        shown, cut, hidden = command.help.partition("\f")  # click hides what follows a form feed
        paragraphs = inspect.cleandoc(shown).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split()) for p in paragraphs) + cut + hidden
    for sub in getattr(command, "commands", {}).values():
        reflowed(sub)
    return command


class LazyGroup(TyperGroup):
    """Subclass with ``lazy`` set to the registry; errors of every command become one line."""

    lazy: ClassVar[Mapping[str, Lazy]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        entry = self.lazy.get(cmd_name)
        if command is not None or entry is None:
            return command
        if self._listing:
            return entry.listed(cmd_name)
        command = entry.load(cmd_name)
        self.add_command(command, cmd_name)
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: click.Context) -> Any:
        """Every error a command lets through becomes one line on stderr and an exit code (2 for
        usage and configuration, 1 for runtime failures); never a traceback. CWI_TRACEBACK=1 shows
        the traceback as well (for a bug report)."""
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader left (`cwi synclog --json | head -1`): typer's main
            raise  # then stops quietly with exit 1, as it does for `cwi --help | head -1`
        except Exception as exc:
            if _is_click_exception(exc):
                raise
            message, code = explain(exc)
            if os.environ.get("CWI_TRACEBACK"):
                traceback.print_exc()
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise typer.Exit(code) from None


def _is_click_exception(exc: BaseException) -> bool:
    """Usage errors click reports itself (a missing argument, a bad option value: exit 2)."""
    return any(cls.__name__ in ("ClickException", "Exit", "Abort") for cls in type(exc).__mro__)
