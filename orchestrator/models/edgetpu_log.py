"""Read what edgetpu_compiler says: its console summary and its per-model ``.log`` operation table.

Two eras of the summary exist. Compilers up to 2.x (2019) print ``On-chip memory available for
caching model parameters`` (the cache's capacity for this model); later ones print ``On-chip memory
remaining for caching model parameters`` (capacity minus what this model used). Both are kept as
printed and normalised to ``on_chip_capacity_bytes``. Co-compiled models and ``--num_segments``
segments each get their own ``Input model:`` section. The ``Operator Count Status`` table appears
in every ``.log`` file and on the console with ``--show_operations``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

VERSION = re.compile(r"edge\s*tpu\s+compiler\s+version\s+(\S+)", re.IGNORECASE)
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "KB": 1000, "MB": 1000 ** 2}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|KB|MB)\s*$")
_TABLE_HEADER = re.compile(r"^\s*Operator\s+Count\s+Status\s*$")
_TABLE_ROW = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_\-]*)\s+(\d+)\s+(\S.*?)\s*$")
MAPPED = "Mapped to Edge TPU"

# Summary lines: label -> field name; sizes end in _bytes.
_FIELDS = {
    "input model": "input", "input": "input", "input size": "input_size_bytes",
    "output model": "output", "output": "output", "output size": "output_size_bytes",
    "on-chip memory used for caching model parameters": "on_chip_used_bytes",
    "on-chip memory available for caching model parameters": "on_chip_available_bytes",
    "on-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "off-chip memory used for streaming uncached model parameters": "off_chip_used_bytes",
    "number of edge tpu subgraphs": "subgraphs",
    "total number of operations": "total_ops",
    "number of operations that will run on edge tpu": "tpu_ops",
    "number of operations that will run on cpu": "cpu_ops",
    "operation log": "log_file",
}


class CompilerLogError(ValueError):
    """The text is not edgetpu_compiler output."""


@dataclass
class Operator:
    op: str
    count: int
    status: str

    @property
    def on_tpu(self) -> bool:
        return self.status == MAPPED


@dataclass
class ModelSection:
    """One compiled model (or segment) of a compiler run."""

    input: str | None = None
    output: str | None = None
    input_size_bytes: int | None = None
    output_size_bytes: int | None = None
    on_chip_used_bytes: int | None = None
    on_chip_available_bytes: int | None = None  # compilers up to 2.x
    on_chip_remaining_bytes: int | None = None  # later compilers
    off_chip_used_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    tpu_ops: int | None = None
    cpu_ops: int | None = None
    log_file: str | None = None
    operators: list[Operator] = field(default_factory=list)

    @property
    def era(self) -> str:
        return "remaining" if self.on_chip_remaining_bytes is not None else "available"

    @property
    def on_chip_capacity_bytes(self) -> int | None:
        if self.on_chip_available_bytes is not None:
            return self.on_chip_available_bytes
        if self.on_chip_remaining_bytes is not None and self.on_chip_used_bytes is not None:
            return self.on_chip_remaining_bytes + self.on_chip_used_bytes
        return None

    def fill_op_counts(self) -> None:
        """TPU/CPU operation counts from the table where the summary lacks them (older compilers)."""
        if self.operators:
            if self.tpu_ops is None:
                self.tpu_ops = sum(o.count for o in self.operators if o.on_tpu)
            if self.cpu_ops is None:
                self.cpu_ops = sum(o.count for o in self.operators if not o.on_tpu)
            if self.total_ops is None:
                self.total_ops = sum(o.count for o in self.operators)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["era"] = self.era
        data["on_chip_capacity_bytes"] = self.on_chip_capacity_bytes
        return data


@dataclass
class CompilerRun:
    version: str | None
    models: list[ModelSection]
    succeeded: bool
    messages: list[str] = field(default_factory=list)  # lines that are neither fields nor table rows

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "succeeded": self.succeeded, "messages": self.messages,
                "models": [m.as_dict() for m in self.models]}


def parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise CompilerLogError(f"'{text.strip()}' is not a size like 4.21MiB")
    return round(float(match.group(1)) * _UNITS[match.group(2)])


def parse_version(text: str) -> str | None:
    match = VERSION.search(text)
    return match.group(1) if match else None


def parse_operators(lines: list[str]) -> list[Operator]:
    """The rows after an ``Operator Count Status`` header, until a blank line after rows or a non-row."""
    rows: list[Operator] = []
    inside = False
    for line in lines:
        if _TABLE_HEADER.match(line):
            inside = True
            continue
        if not inside:
            continue
        match = _TABLE_ROW.match(line)
        if match:
            rows.append(Operator(match.group(1), int(match.group(2)), match.group(3)))
        elif line.strip() and rows:
            inside = False
    return rows


def parse_operation_log(text: str) -> tuple[str | None, ModelSection]:
    """A ``<name>_edgetpu.log`` file: version, input/output names and the operator table."""
    lines = text.splitlines()
    section = ModelSection()
    for line in lines:
        _set_field(section, line)
    section.operators = parse_operators(lines)
    if not section.operators and parse_version(text) is None:
        raise CompilerLogError("no 'Edge TPU Compiler version' line and no 'Operator Count Status' table")
    section.fill_op_counts()
    return parse_version(text), section


def parse_console(text: str) -> CompilerRun:
    """The compiler's standard output (with or without ``--show_operations``)."""
    version = parse_version(text)
    if version is None:
        raise CompilerLogError("the output has no 'Edge TPU Compiler version' line: is this edgetpu_compiler?")
    sections: list[ModelSection] = []
    messages: list[str] = []
    table_lines: list[list[str]] = []
    current: ModelSection | None = None
    for line in text.splitlines():
        label = line.split(":", 1)[0].strip().lower()
        if label in ("input model", "input") and ":" in line:
            current = ModelSection()
            sections.append(current)
            table_lines.append([])
        if current is not None:
            table_lines[-1].append(line)
            if _set_field(current, line):
                continue
        if line.strip() and not VERSION.search(line) and not _TABLE_ROW.match(line) \
                and not _TABLE_HEADER.match(line):
            messages.append(line.strip())
    for section, lines in zip(sections, table_lines, strict=True):
        section.operators = parse_operators(lines)
        section.fill_op_counts()
    succeeded = bool(sections) and not any("error" in m.lower() or "invalid model" in m.lower()
                                           or "failed" in m.lower() for m in messages)
    return CompilerRun(version, sections, succeeded, messages)


def _set_field(section: ModelSection, line: str) -> bool:
    if ":" not in line:
        return False
    label, value = line.split(":", 1)
    name = _FIELDS.get(label.strip().lower())
    if name is None:
        return False
    value = value.strip()
    if name.endswith("_bytes"):
        setattr(section, name, parse_size(value))
    elif name in ("subgraphs", "total_ops", "tpu_ops", "cpu_ops"):
        setattr(section, name, int(value))
    else:
        setattr(section, name, value)
    return True
