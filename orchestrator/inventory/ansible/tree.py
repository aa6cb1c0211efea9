"""What every Ansible inventory format reads into: groups, their hosts and vars, and each value's line.

Ansible's own rules for the shape: every group is a child of ``all``, a host in
no group is in ``ungrouped``, and a host's variables come from ``all``, then its
groups from the outermost to the innermost (siblings of one depth in name
order), then the host itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import AnsibleInventoryError

IMPLICIT_GROUPS = ("all", "ungrouped")


@dataclass(frozen=True)
class Var:
    """One variable's value and the line that set it (in ``path`` when not the inventory itself)."""

    name: str
    value: Any
    line: int | None
    path: str | None = None


@dataclass
class Group:
    name: str
    line: int | None
    vars: dict[str, Var] = field(default_factory=dict)
    children: dict[str, None] = field(default_factory=dict)
    hosts: dict[str, None] = field(default_factory=dict)  # an ordered set: big groups stay fast


@dataclass(frozen=True)
class FlatHost:
    """A host as farm sees it: its groups, innermost first, and its variables after precedence."""

    name: str
    path: str  # the file that first mentions it
    line: int | None
    groups: tuple[str, ...]
    vars: dict[str, Var]


class AnsibleTree:
    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.groups: dict[str, Group] = {"all": Group("all", None)}
        self.host_vars: dict[str, dict[str, Var]] = {}  # insertion order is the order hosts first appear
        self.host_lines: dict[str, int | None] = {}
        self.host_paths: dict[str, str] = {}  # only hosts first mentioned in another file than ``path``
        # From group_vars/ and host_vars/ beside the inventory: they outrank the file's own vars.
        self.group_files: dict[str, dict[str, Var]] = {}
        self.host_files: dict[str, dict[str, Var]] = {}

    def error(self, problem: str, line: int | None = None, *, variable: str | None = None,
              host: str | None = None, expected: str | None = None, path: str | None = None) -> AnsibleInventoryError:
        return AnsibleInventoryError(path or self.path, self.kind, problem, line=line, variable=variable, host=host,
                                     expected=expected)

    def group(self, name: str, line: int | None) -> Group:
        if name not in self.groups:
            self.groups[name] = Group(name, line)
        return self.groups[name]

    def add_host(self, group: str, host: str, variables: list[Var], line: int | None) -> None:
        self.group(group, line).hosts.setdefault(host)
        self.set_host_vars(host, variables, line)

    def set_host_vars(self, host: str, variables: list[Var], line: int | None) -> None:
        """A host's own variables; a host that no group lists is in ``ungrouped``."""
        # The host's line is its first mention in the file (in --list JSON, _meta may come first).
        known = self.host_lines.get(host)
        self.host_lines[host] = line if known is None or (line is not None and line < known) else known
        own = self.host_vars.setdefault(host, {})
        for var in variables:
            own[var.name] = var

    def add_child(self, parent: str, child: str, line: int | None) -> None:
        if child == "all":
            raise self.error(f"group 'all' cannot be a child of '{parent}'", line)
        self.group(child, line)
        self.group(parent, line).children.setdefault(child)

    def absorb(self, other: AnsibleTree) -> None:
        """Another file's groups and hosts, as Ansible merges the files of an inventory directory."""
        def located(variables: dict[str, Var]) -> list[Var]:
            return [var if var.path else dataclasses.replace(var, path=other.path) for var in variables.values()]

        for name, group in other.groups.items():
            mine = self.group(name, group.line)
            mine.vars.update((var.name, var) for var in located(group.vars))
            mine.hosts.update(group.hosts)
            mine.children.update(group.children)
        for host, own in other.host_vars.items():
            if host not in self.host_vars:
                self.host_paths[host] = other.path
                self.host_lines[host] = other.host_lines.get(host)
            self.host_vars.setdefault(host, {}).update((var.name, var) for var in located(own))

    def flatten(self) -> list[FlatHost]:
        parents = self._parents()
        depths = self._depths(parents)
        position = {name: index for index, name in enumerate(self.groups)}
        member_of: dict[str, list[str]] = {}
        for group in self.groups.values():
            for host in group.hosts:
                if group.name != "all":
                    member_of.setdefault(host, []).append(group.name)
        hosts = []
        for host, own in self.host_vars.items():
            every = _with_ancestors(member_of.get(host) or ["ungrouped"], parents)
            order = sorted(every, key=lambda name: (depths.get(name, 0), name))
            merged: dict[str, Var] = {}
            # Ansible's precedence: the inventory's group vars, group_vars/all, group_vars/<group>,
            # the inventory's host vars, host_vars/<host>; groups from the outermost in.
            for name in order:
                merged.update(self.groups[name].vars if name in self.groups else {})
            for name in order:
                merged.update(self.group_files.get(name, {}))
            merged.update(own)
            merged.update(self.host_files.get(host, {}))
            # Tags innermost group first ("atlanta, southeast, usa"), as the file defined them within a depth.
            tags = tuple(sorted((name for name in every if name not in IMPLICIT_GROUPS),
                                key=lambda name: (-depths.get(name, 0), position[name])))
            hosts.append(FlatHost(host, self.host_paths.get(host, self.path), self.host_lines.get(host), tags, merged))
        return hosts

    def _parents(self) -> dict[str, list[str]]:
        parents: dict[str, list[str]] = {}
        for group in self.groups.values():
            for child in group.children:
                parents.setdefault(child, []).append(group.name)
        return parents

    def _depths(self, parents: dict[str, list[str]]) -> dict[str, int]:
        """Each group's depth below ``all`` (its longest path), refusing a group that contains itself.

        Kahn's order rather than recursion: a hostile file's chain of groups must not
        exhaust the stack.
        """
        waiting = {name: len([p for p in parents.get(name, ()) if p != "all"]) for name in self.groups}
        depths = {name: 1 for name, count in waiting.items() if count == 0}
        depths["all"] = 0
        ready = [name for name, count in waiting.items() if count == 0 and name != "all"]
        while ready:
            name = ready.pop()
            for child in self.groups[name].children:
                depths[child] = max(depths.get(child, 1), depths[name] + 1)
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        looped = [name for name, count in waiting.items() if count > 0]
        if looped:
            raise self.error(f"group '{looped[0]}' is its own descendant through its children",
                             self.groups[looped[0]].line)
        return depths


def _with_ancestors(groups: list[str], parents: dict[str, list[str]]) -> set[str]:
    found = {"all"}
    pending = list(groups)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(parents.get(name, ()))
    return found
