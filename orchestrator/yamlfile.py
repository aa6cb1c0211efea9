"""Load YAML and remember where every value came from, for errors with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .bounded_read import read_yaml_file
from .errors import InputError

Location = tuple  # a path of keys and indexes into the document


class YamlDocument:
    """Plain Python data plus the line of every mapping key and list item."""

    def __init__(self, path: str, data: Any, lines: dict[Location, int]) -> None:
        self.path = path
        self.data = data
        self._lines = lines

    @property
    def has_lines(self) -> bool:
        """False for a document read as JSON, which carries no line numbers."""
        return bool(self._lines)

    def line(self, location: Location) -> int | None:
        # Fall back to the enclosing value: a missing key is reported at its parent.
        while location:
            if location in self._lines:
                return self._lines[location]
            location = location[:-1]
        return self._lines.get((), 1)

    def error(self, location: Location, problem: str, *, field: str | None = None,
              expected: str | None = None) -> InputError:
        return InputError(self.path, problem, line=self.line(location), field=field, expected=expected)


def load_yaml(path: str | Path) -> YamlDocument:
    name = str(path)
    data = read_yaml_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, f"cannot read file: {exc}") from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> YamlDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise InputError(name, "malformed YAML: values nested too deeply to parse") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(name, f"malformed YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(name, f"malformed YAML: {exc}") from None
    lines: dict[Location, int] = {}
    if node is None:
        return YamlDocument(name, None, lines)
    lines[()] = node.start_mark.line + 1
    return YamlDocument(name, _build(node, (), lines, name, _Budget()), lines)


# A hostile file must not hang or crash the loader: aliases can point at their own
# parent (endless recursion) or expand exponentially ("billion laughs").
MAX_DEPTH = 64
MAX_VALUES = 100_000


class _Budget:
    def __init__(self) -> None:
        self.values = 0
        self.open: set[int] = set()  # ids of the collections being built, to catch an alias to its own parent


def _build(node: yaml.Node, location: Location, lines: dict[Location, int], name: str, budget: _Budget) -> Any:
    line = node.start_mark.line + 1
    budget.values += 1
    if budget.values > MAX_VALUES:
        raise InputError(name, f"the document expands to more than {MAX_VALUES} values (aliases?)", line=line)
    if len(location) > MAX_DEPTH:
        raise InputError(name, f"values nested more than {MAX_DEPTH} levels deep", line=line)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in budget.open:
            raise InputError(name, "an alias refers to a value that contains it", line=line)
        budget.open.add(id(node))
        try:
            return _build_collection(node, location, lines, name, budget)
        finally:
            budget.open.discard(id(node))
    return _scalar(node, name)


def _build_collection(node: yaml.Node, location: Location, lines: dict[Location, int], name: str,
                      budget: _Budget) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, name)
            child = location + (key,)
            if key in out:
                raise InputError(name, f"key '{key}' appears twice in one mapping",
                                 line=key_node.start_mark.line + 1)
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, lines, name, budget)
        return out
    items = []
    for index, item in enumerate(node.value):
        child = location + (index,)
        lines[child] = item.start_mark.line + 1
        items.append(_build(item, child, lines, name, budget))
    return items


def _scalar(node: yaml.Node, name: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise InputError(name, "a mapping key must be a plain value", line=node.start_mark.line + 1)
    try:
        return yaml.SafeLoader(" ").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise InputError(name, f"bad value: {exc}", line=node.start_mark.line + 1) from None
