"""Option values that already have their type skip typer's pydantic coercion.

typer (0.2x) coerces every option value through a pydantic TypeAdapter, built per option when the command
runs: on ``farm results`` that was pydantic's import plus some twenty adapters, most of them for options left
at None, about a sixth of the command's time. A string given for a ``str`` option (or ints for an ``int``
one) is returned as it is by that adapter, so here it is returned without asking it; every other value
(a number still in text, a path, a choice) goes to typer's own coercion, built then, as before.

This reaches into one private attribute of typer's parameters (``_runtime_param``, which typer fills on first
use); on a typer without it, nothing is installed and typer coerces everything itself.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

SIMPLE = (str, int, float)


def install(command: Any, *, below: bool = True) -> None:
    """Put the quick path on every parameter of ``command`` and (``below``) of the commands of a group."""
    for param in getattr(command, "params", ()):
        _install_on(param)
    made = getattr(command, "get_help_option", None)
    if made is not None and not getattr(made, "quick_values", False):
        # --help is made on first use; its value, None when not given, went to pydantic too.
        def get_help_option(ctx: Any) -> Any:
            option = made(ctx)
            _install_on(option)
            return option

        get_help_option.quick_values = True  # type: ignore[attr-defined]
        command.get_help_option = get_help_option
    if below:
        for sub in getattr(command, "commands", {}).values():
            install(sub)


def _install_on(param: Any) -> None:
    if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
        param._runtime_param = QuickValues()


def already_typed(annotation: Any, value: Any) -> bool:
    """True when typer's coercion would return ``value`` as it is (a list for a tuple)."""
    if annotation in SIMPLE:
        return type(value) is annotation
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        return item in SIMPLE and isinstance(value, (list, tuple)) and all(type(v) is item for v in value)
    return False


class QuickValues:
    """A parameter's coercion: values of their type as they are, the rest by typer's own (built on first need)."""

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None  # what typer's own coercion returns for a value left out
        if already_typed(param.type_descriptor.annotation, value):
            return list(value) if isinstance(value, tuple) else value
        param._runtime_param = None  # typer builds its own in place of this one, and keeps it
        return param.get_runtime_param().coerce(value, param=param, ctx=ctx)
