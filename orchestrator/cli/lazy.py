"""The ``farm`` group with its commands loaded on first use: ``farm --help`` imports no command module.

Building every command up front (importing its module, and typer turning each signature into options)
cost more than the rest of ``farm --help``, and ``farm results`` paid for ``farm report``'s imports. Here
each command is named with the module that defines it and its one-line help; the group lists the names
and their help from that table, and imports a command's module only when the command line runs it (or
its ``--help``). tests/test_cli_imports.py checks that each line of the table is its command's own help.

The group's own help page is click's plain layout: Rich's, with the Markdown parser typer loads for it,
took longer to import than the rest of ``farm --help``. A command's own ``--help`` keeps Rich's panels.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, ClassVar, NamedTuple

import typer
from typer.core import TyperGroup

from ..gc_pause import collector_paused
from .quick_values import install


class Entry(NamedTuple):
    """A command of ``farm``: ``module`` (under orchestrator.cli) defines ``attribute``, a command function or a
    typer app (a command group); ``factory``: ``attribute`` is called to make the click command itself."""

    module: str
    attribute: str
    help: str
    factory: bool = False


def click_command(name: str, target: Any, **settings: Any) -> Any:
    """The click command typer makes of ``target`` (a function or a typer app) registered under ``name``."""
    # A holder app with a callback is a group, so its one member keeps its name (typer's public API only).
    holder = typer.Typer(add_completion=False)
    holder.callback()(_nothing)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name, **settings)
    else:
        holder.command(name, **settings)(target)
    command = typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]
    install(command)
    return command


def _nothing() -> None:
    pass


def load(name: str, entry: Entry) -> Any:
    with collector_paused():  # an import and typer's build of its options: many objects, no garbage
        target = getattr(importlib.import_module(f"{__package__}.{entry.module}"), entry.attribute)
        return target() if entry.factory else click_command(name, target)


class LazyCommands(MutableMapping[str, Any]):
    """A group's ``commands``: every name of the table is there; its command is built when first read."""

    def __init__(self, table: dict[str, Entry], loader: Callable[[str, Entry], Any] = load) -> None:
        self.table = table
        self.loader = loader
        self.loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded:
            if name not in self.table:
                raise KeyError(name)
            self.loaded[name] = self.loader(name, self.table[name])
        return self.loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self.table or name in self.loaded  # without building it (Mapping's would)

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self.loaded.pop(name, None)
        self.table.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self.table
        yield from (name for name in self.loaded if name not in self.table)

    def __len__(self) -> int:
        return len(set(self.table) | set(self.loaded))


class LazyGroup(TyperGroup):
    """typer's group over a ``LazyCommands``; set ``table`` on a subclass (``typer.Typer(cls=...)`` takes a class)."""

    table: ClassVar[dict[str, Entry]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        commands = LazyCommands(dict(self.table))
        for name, command in self.commands.items():  # any registered on the app itself the usual way
            commands[name] = command
        self.commands = commands

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            # typer's Rich error printer drops the help that no_args_is_help raises, Rich's help having printed
            # itself: print this plain one, and exit 2 as before.
            typer.echo(ctx.get_help())
            ctx.exit(2)
        # The group's own options (--verbose, and the completion ones typer adds after building the group); its
        # commands get theirs when loaded.
        install(self, below=False)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # click's own layout (usage, text, options, commands, epilog), past TyperGroup's Rich one: see above.
        super(TyperGroup, self).format_help(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The commands with their help from the table, none of them loaded."""
        commands = self.commands
        rows = [(name, commands.table[name].help if name in commands.table else
                 (commands[name].short_help or commands[name].help or "").split("\n\n")[0].strip())
                for name in commands]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
