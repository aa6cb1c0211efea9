"""Read what edgetpu_compiler says: its console summary and its per-model ``.log`` operation table.

The forms handled are those of the published outputs of compilers 2.0, 2.1, 14.1, 15.0 and 16.0:

- 2.0 prints ``On-chip memory available for caching model parameters`` (this model's cache) before
  ``used``; 2.1 and later print ``used`` then ``remaining``. Sizes come in B, KiB and MiB.
- One ``Input model:`` block per compiled model. ``--num_segments N`` compiles each segment on its
  own (its own ``Model compiled successfully`` banner and block, output
  ``<name>_segment_K_of_N_edgetpu.tflite``); a later segment can fail after earlier ones succeeded.
- Co-compiling prints ``Models compiled successfully`` (plural) and one block per model; the
  ``remaining`` figure is shared by the group, so the cache is every model's ``used`` plus that
  remaining once.
- Delegate search (``-d``; 16.0's ``Searching for valid delegate with step N``) prints failed
  attempts before the final one: the last ``Compilation failed!``/``Compilation succeeded!`` counts.
- 16.0 prints its timeout timer and omits the TPU/CPU operation counts when every operation maps.
- ``Number of Edge TPU subgraphs: 0`` still says success, with nothing on the Edge TPU.
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
_BANNER = re.compile(r"^\s*Models?\s+compiled\s+successfully", re.IGNORECASE)
_SEGMENT = re.compile(r"_segment_(\d+)_of_(\d+)_edgetpu\.tflite$")
_TIMER = re.compile(r"Started a compilation timeout timer of (\d+) seconds")
_SEARCH = re.compile(r"Searching for valid delegate with step (\d+)")
SUCCEEDED_LINE = "Compilation succeeded!"
FAILED_LINE = "Compilation failed!"
CHILD_DONE = "Compilation child process completed within timeout period."
NOT_ALL_MAPPED = "not all operations are supported by the Edge TPU"
MAPPED = "Mapped to Edge TPU"
# The compiler's own words for a failure: the line is kept as printed in the error farm reports.
_FAILURE_WORDS = ("Model not quantized", "Invalid model", "Model could not be parsed", "Didn't find op for builtin",
                  "Internal compiler error", "Compilation failed:", "ERROR:")

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
    on_chip_available_bytes: int | None = None  # compiler 2.0
    on_chip_remaining_bytes: int | None = None  # 2.1 and later
    off_chip_used_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    tpu_ops: int | None = None
    cpu_ops: int | None = None
    log_file: str | None = None
    operators: list[Operator] = field(default_factory=list)
    not_all_mapped: bool = False  # the compiler's "not all operations are supported" paragraph
    # Set for a co-compiled model: the cache its group shares, every model's used plus remaining once.
    group_capacity_bytes: int | None = None

    @property
    def era(self) -> str:
        return "remaining" if self.on_chip_remaining_bytes is not None else "available"

    @property
    def segment(self) -> tuple[int, int] | None:
        """(K, N) for a ``<name>_segment_K_of_N_edgetpu.tflite`` output."""
        match = _SEGMENT.search(self.output or "")
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def nothing_on_tpu(self) -> bool:
        return self.subgraphs == 0

    @property
    def on_chip_capacity_bytes(self) -> int | None:
        if self.group_capacity_bytes is not None:
            return self.group_capacity_bytes
        if self.on_chip_available_bytes is not None:
            return self.on_chip_available_bytes
        if self.on_chip_remaining_bytes is not None and self.on_chip_used_bytes is not None:
            return self.on_chip_remaining_bytes + self.on_chip_used_bytes
        return None

    def fill_op_counts(self, version: str | None = None) -> None:
        """TPU/CPU operation counts where the summary lacks them: from the table (older compilers), or,
        for 16.0, which prints neither count when every operation maps, from the total."""
        if self.operators:
            if self.tpu_ops is None:
                self.tpu_ops = sum(o.count for o in self.operators if o.on_tpu)
            if self.cpu_ops is None:
                self.cpu_ops = sum(o.count for o in self.operators if not o.on_tpu)
            if self.total_ops is None:
                self.total_ops = sum(o.count for o in self.operators)
        elif self.tpu_ops is None and self.cpu_ops is None and self.total_ops is not None \
                and not self.not_all_mapped and self.subgraphs != 0 and major_version(version) >= 16:
            self.tpu_ops, self.cpu_ops = self.total_ops, 0
        if self.subgraphs == 0 and self.total_ops is not None and self.tpu_ops is None:
            self.tpu_ops, self.cpu_ops = 0, self.total_ops

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["era"] = self.era
        data["on_chip_capacity_bytes"] = self.on_chip_capacity_bytes
        segment = self.segment
        data["segment"] = None if segment is None else segment[0]
        data["num_segments"] = None if segment is None else segment[1]
        return data


@dataclass
class CompilerRun:
    version: str | None
    models: list[ModelSection]
    succeeded: bool
    messages: list[str] = field(default_factory=list)  # lines that are neither fields nor table rows
    failure: str | None = None  # the compiler's own words, when it failed
    outcomes: list[bool] = field(default_factory=list)  # each Compilation succeeded!/failed!, in order
    co_compiled: bool = False  # "Models compiled successfully": the models share one parameter cache
    timeout_s: int | None = None  # 16.0's compilation timeout timer
    child_completed: bool = False  # 16.0's child process finished within its timeout
    delegate_search_step: int | None = None
    intermediate_tensors: list[str] = field(default_factory=list)  # listed after each failed attempt

    @property
    def warnings(self) -> list[str]:
        return [f"{m.input or m.output}: Number of Edge TPU subgraphs: 0, nothing runs on the Edge TPU"
                for m in self.models if m.nothing_on_tpu]

    def groups(self) -> list[dict[str, Any]]:
        """The co-compiled group of this run (none otherwise): its models, and the cache they share."""
        members = [m for m in self.models if m.segment is None]
        if not self.co_compiled or len(members) < 2:
            return []
        return [{"models": [m.input for m in members], "used_bytes": [m.on_chip_used_bytes for m in members],
                 "remaining_bytes": members[-1].on_chip_remaining_bytes,
                 "capacity_bytes": members[-1].on_chip_capacity_bytes}]

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "succeeded": self.succeeded, "failure": self.failure,
                "messages": self.messages, "outcomes": self.outcomes, "co_compiled": self.co_compiled,
                "timeout_s": self.timeout_s, "child_completed": self.child_completed,
                "delegate_search_step": self.delegate_search_step, "warnings": self.warnings,
                "groups": self.groups(), "models": [m.as_dict() for m in self.models]}


def parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise CompilerLogError(f"'{text.strip()}' is not a size like 4.21MiB")
    return round(float(match.group(1)) * _UNITS[match.group(2)])


def parse_version(text: str) -> str | None:
    match = VERSION.search(text)
    return match.group(1) if match else None


def major_version(version: str | None) -> int:
    try:
        return int((version or "").split(".")[0])
    except ValueError:
        return 0


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


def parse_operation_logs(text: str) -> list[tuple[str | None, ModelSection]]:
    """Every model of ``.log`` text: one log holds one model, but logs get concatenated (``cat *.log``).
    A new model starts at a version line, or at an ``Input:`` line once the current one has its input."""
    chunks: list[list[str]] = []
    current: list[str] = []
    has_input = False
    for line in text.splitlines():
        starts_input = line.split(":", 1)[0].strip().lower() == "input" and ":" in line
        if (VERSION.search(line) or (starts_input and has_input)) and any(s.strip() for s in current):
            chunks.append(current)
            current, has_input = [], False
        current.append(line)
        has_input = has_input or starts_input
    chunks.append(current)
    logs = []
    for chunk in chunks:
        section = ModelSection()
        for line in chunk:
            _set_field(section, line)
        section.operators = parse_operators(chunk)
        version = parse_version("\n".join(chunk))
        if not section.operators and version is None:
            continue
        section.fill_op_counts(version)
        logs.append((version, section))
    if not logs:
        raise CompilerLogError("no 'Edge TPU Compiler version' line and no 'Operator Count Status' table")
    return logs


def parse_operation_log(text: str) -> tuple[str | None, ModelSection]:
    """A ``<name>_edgetpu.log`` file: version, input/output names and the operator table."""
    logs = parse_operation_logs(text)
    if len(logs) > 1:
        raise CompilerLogError(f"the text holds {len(logs)} operation logs; read them with parse_operation_logs")
    return logs[0]


def log_gap(section: ModelSection, model_ops: int | None) -> str | None:
    """Why an operation log cannot be the whole model, or None when its rows add up to ``model_ops``."""
    if model_ops is None:
        return None
    listed = sum(o.count for o in section.operators)
    if listed == model_ops:
        return None
    if listed < model_ops:
        return (f"the operation log is truncated: its table lists {listed} of the model's {model_ops} operations "
                f"(TPU {section.tpu_ops or 0} + CPU {section.cpu_ops or 0})")
    return f"the operation log lists {listed} operations, more than the model's {model_ops}: is it another model's?"


def parse_console(text: str) -> CompilerRun:
    """The compiler's standard output (with or without ``--show_operations``)."""
    version = parse_version(text)
    if version is None:
        raise CompilerLogError("the output has no 'Edge TPU Compiler version' line: is this edgetpu_compiler?")
    run = CompilerRun(version, [], False)
    table_lines: list[list[str]] = []
    current: ModelSection | None = None
    failures: list[str] = []
    tensors_next = False
    for line in text.splitlines():
        stripped = line.strip()
        label = line.split(":", 1)[0].strip().lower()
        if _BANNER.match(line):
            run.co_compiled = run.co_compiled or stripped.lower().startswith("models")
            current = None  # a segment's block follows its own banner
        if label in ("input model", "input") and ":" in line:
            current = ModelSection()
            run.models.append(current)
            table_lines.append([])
        if current is not None:
            table_lines[-1].append(line)
            if _set_field(current, line):
                continue
            if NOT_ALL_MAPPED in line:
                current.not_all_mapped = True
        # The list goes on over lines that are indented or a bare tensor name; any other line ends it.
        tensors_next = tensors_next and bool(stripped) and (line[:1].isspace() or " " not in stripped)
        if tensors_next and not _is_outcome(stripped):
            run.intermediate_tensors.append(stripped)
            continue
        if stripped.startswith("Intermediate tensors:"):
            tensors_next = True
            rest = stripped.split(":", 1)[1].strip()
            if rest:
                run.intermediate_tensors.append(rest)
            continue
        if _is_outcome(stripped):
            tensors_next = False
            run.outcomes.append(stripped.startswith(SUCCEEDED_LINE))
            if stripped.startswith(SUCCEEDED_LINE):
                failures = []  # an earlier attempt's failure is not the run's
        timer = _TIMER.search(line)
        if timer:
            run.timeout_s = int(timer.group(1))
        search = _SEARCH.search(line)
        if search:
            run.delegate_search_step = int(search.group(1))
        if CHILD_DONE in line:
            run.child_completed = True
        if any(stripped.startswith(words) or words in stripped for words in _FAILURE_WORDS):
            failures.append(stripped)
        if stripped and not VERSION.search(line) and not _TABLE_ROW.match(line) and not _TABLE_HEADER.match(line):
            run.messages.append(stripped)
    for section, lines in zip(run.models, table_lines, strict=True):
        section.operators = parse_operators(lines)
        section.fill_op_counts(version)
    _share_group_cache(run)
    if run.outcomes:
        run.succeeded = run.outcomes[-1] and bool(run.models)
    else:  # compilers before 15 print no outcome line: success is a summary and no failure words
        run.succeeded = bool(run.models) and not failures
    if not run.succeeded:
        run.failure = " ".join(failures) or (None if run.models else "the compiler printed no compiled model")
    return run


def _is_outcome(stripped: str) -> bool:
    return stripped.startswith((SUCCEEDED_LINE, FAILED_LINE))


def _share_group_cache(run: CompilerRun) -> None:
    # The remaining figure is the group's: adding it once per model would count the free cache N times.
    members = [m for m in run.models if m.segment is None]
    if not run.co_compiled or len(members) < 2:
        return
    remaining = members[-1].on_chip_remaining_bytes
    used = [m.on_chip_used_bytes for m in members]
    if remaining is None or any(u is None for u in used):
        return
    capacity = sum(u for u in used if u is not None) + remaining
    for member in members:
        member.group_capacity_bytes = capacity


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
