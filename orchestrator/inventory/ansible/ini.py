"""Ansible's INI inventory format, read the way ``ansible-core``'s ``ini`` plugin reads it.

``[group]`` lists hosts (``host k=v ...``, ranges, ``host:port``), ``[group:vars]``
sets one ``k=v`` per line, ``[group:children]`` lists groups; lines before any
section are ungrouped hosts. ``#`` and ``;`` start comment lines.
"""

from __future__ import annotations

import ast
import re
import shlex
from typing import Any

from .ranges import PatternError, expand, split_port
from .tree import AnsibleTree, Var

KIND = "Ansible INI inventory"
SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?\Z")
GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?\Z")
COMMENT_MARKERS = ("#", ";")


def read_ini(text: str, path: str) -> AnsibleTree:
    tree = AnsibleTree(path, KIND)
    defined = {"all", "ungrouped"}
    needs_definition: dict[str, tuple[str, int]] = {}  # group -> (the section that named it, its line)
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(COMMENT_MARKERS):
            continue
        section = SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "vars", "children"):
                raise tree.error(f"section [{group}:{state}] has an unknown type",
                                 number, expected="[group], [group:vars] or [group:children]")
            tree.group(group, number)
            if state == "vars":
                needs_definition.setdefault(group, (f"[{group}:vars]", number))
            else:
                defined.add(group)
            continue
        if line.startswith("["):
            raise tree.error(f"'{line}' is not a section header", number,
                             expected="[group], [group:vars] or [group:children]")
        if state == "hosts":
            _host_line(tree, group, line, number)
        elif state == "vars":
            name, value = _assignment(tree, line, number)
            tree.group(group, number).vars[name] = Var(name, _vars_value(value), number)
        else:
            child = GROUP_NAME.match(line)
            if not child:
                raise tree.error(f"'{line}' is not a group name", number, expected="one group name per line")
            tree.add_child(group, child.group(1), number)
            needs_definition.setdefault(child.group(1), (f"[{group}:children]", number))
    for name, (where, number) in needs_definition.items():
        if name not in defined:
            raise tree.error(f"{where} names the group '{name}', which is never defined", number,
                             expected=f"a [{name}] or [{name}:children] section")
    return tree


def _host_line(tree: AnsibleTree, group: str, line: str, number: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise tree.error(f"cannot split the host line: {exc}", number) from None
    if not tokens:
        return
    try:
        pattern, port = split_port(tokens[0])
        names = expand(pattern)
    except PatternError as exc:
        raise tree.error(str(exc), number) from None
    variables = []
    if port is not None:
        variables.append(Var("ansible_port", port, number))
    for token in tokens[1:]:
        name, value = _assignment(tree, token, number)
        variables.append(Var(name, _host_value(value), number))
    for name in names:
        tree.add_host(group, name, variables, number)


def _assignment(tree: AnsibleTree, text: str, number: int) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise tree.error(f"expected key=value, got '{text}'", number)
    return name.strip(), value.strip()


def _host_value(text: str) -> Any:
    """Values on host lines are Python literals (``port=22`` is a number), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _vars_value(text: str) -> str:
    """Values in ``:vars`` sections are strings, as Ansible's documentation says.

    ansible-core itself runs them through ``literal_eval`` too, so a quoted value
    reaches a play without its quotes: one matching pair is taken off here as well.
    Fields farm needs as numbers or mappings are read from these strings later.
    """
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
