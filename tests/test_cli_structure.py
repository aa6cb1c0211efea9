"""The CLI package's shape: every command module imports on its own, none reaches into a sibling's
private names, and no import cycle runs through the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator

ROOT = Path(orchestrator.__file__).parent
CLI_MODULES = sorted(f"orchestrator.cli.{p.stem}" for p in (ROOT / "cli").glob("*.py") if p.stem != "__init__")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, at any depth: a lazy import inside a function still
    has to resolve, so it still closes a cycle."""
    name = module_name(path)
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            found.append((target, [alias.name for alias in node.names]))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the orchestrator modules it imports (``from . import x`` names the submodule x)."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = graph.setdefault(name, set())
        for target, names in imports_of(path):
            if not target.startswith("orchestrator"):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
            edges.update(subs or ([target] if target in files else []))
        edges.discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_runs_through_the_command_line() -> None:
    through_cli = [group for group in cycles(import_graph()) if any(m.startswith("orchestrator.cli") for m in group)]
    assert through_cli == []


def private_reaches(path: Path) -> list[str]:
    """Private names a CLI module takes from the package or a sibling: imported, or read off the module."""
    found = []
    siblings = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or node.level == 2 and node.module == "cli"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{path.name}: {alias.name}")
                siblings.add(alias.asname or alias.name)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in siblings \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{path.name}: {node.value.id}.{node.attr}")
    return found


def test_no_cli_module_takes_a_private_name_from_a_sibling() -> None:
    assert [reach for path in sorted((ROOT / "cli").glob("*.py")) for reach in private_reaches(path)] == []


def test_a_private_reach_is_seen(tmp_path: Path) -> None:
    sample = tmp_path / "nightly.py"
    sample.write_text("from . import cli\nfrom .output import _hidden\n\ndef f():\n    return cli._open(None)\n")
    assert private_reaches(sample) == ["nightly.py: _hidden", "nightly.py: cli._open"]


def test_shared_options_are_defined_once() -> None:
    """`--db` and friends are spelled in options.py only; a command module that spells one again drifts."""
    spelled = []
    for path in sorted((ROOT / "cli").glob("*.py")):
        if path.name == "options.py":
            continue
        text = path.read_text()
        spelled.extend(f"{path.name}: {flag}" for flag in ('"--db"', '"--inventory"', '"--known-hosts"',
                                                            '"--accept-new-host-keys"', '"--format"')
                       if flag in text)
    assert spelled == []


@pytest.mark.parametrize("module", CLI_MODULES)
def test_each_cli_module_imports_alone(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
