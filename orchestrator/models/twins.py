"""Edge TPU twins: a compiled model paired with the model it was compiled from.

farm links what it compiles itself. Models users download come in pairs named Coral's way:
``<name>.tflite`` and ``<name>_edgetpu.tflite``, or ``<name>_cocompiled_with_<other>_edgetpu.tflite``
and ``<name>_segment_K_of_N_edgetpu.tflite``. A compiled file hides the source's arithmetic inside
one ``edgetpu-custom-op``, so counting its graph gives only the ops left to the CPU: a linked twin
carries its source's count instead, and an unlinked one carries none (empty GOPS, not wrong ones).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..store.db import Store
from ..store.schema import ModelRow
from .edgetpu_log import MAPPED
from .inspect import EDGETPU_CUSTOM_OP

_SEGMENT = re.compile(r"^(?P<source>.+)_segment_(?P<k>\d+)_of_(?P<n>\d+)_edgetpu$")
_COCOMPILED = re.compile(r"^(?P<source>.+?)_cocompiled_with_(?P<others>.+)_edgetpu$")
_TWIN = re.compile(r"^(?P<source>.+)_edgetpu$")


@dataclass(frozen=True)
class TwinName:
    """What a compiled file's name says about its source."""

    source: str  # the source file's stem
    kind: str  # compiled | co-compiled | segment
    co_compiled_with: tuple[str, ...] = ()
    segment: int | None = None
    num_segments: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source_stem": self.source, "kind": self.kind, "co_compiled_with": list(self.co_compiled_with),
                "segment": self.segment, "num_segments": self.num_segments}


def parse_twin_name(stem: str) -> TwinName | None:
    """Coral's naming of compiled files; None for a name that does not follow it."""
    match = _SEGMENT.match(stem)
    if match:
        return TwinName(match.group("source"), "segment", segment=int(match.group("k")),
                        num_segments=int(match.group("n")))
    match = _COCOMPILED.match(stem)
    if match:
        return TwinName(match.group("source"), "co-compiled",
                        co_compiled_with=tuple(match.group("others").split("_cocompiled_with_")))
    match = _TWIN.match(stem)
    return TwinName(match.group("source"), "compiled") if match else None


def cpu_ops_of(twin: ModelRow) -> Counter[str] | None:
    """What a compiled model runs on the CPU, per op type: its compiler's table where farm compiled it,
    else the operations its file keeps outside the Edge TPU custom op. None when neither is known."""
    table = (twin.compile_report or {}).get("operators")
    if table:
        return Counter({row["op"]: row["count"] for row in table if row["status"] != MAPPED})
    operators = (twin.op_counts or {}).get("file_operators")
    if operators is None:
        return None
    return Counter({op: n for op, n in operators.items() if op != EDGETPU_CUSTOM_OP})


def compare_with_twin(predicted_tpu: Counter[str], predicted_cpu: Counter[str], actual_cpu: Counter[str]
                      ) -> list[dict[str, Any]]:
    """Per op type, the check's prediction beside what the compiled twin holds. The twin's Edge TPU side
    is hidden in its custom op: it is the source's ops of that type less those the twin left on the CPU."""
    rows = []
    for op in sorted(set(predicted_tpu) | set(predicted_cpu) | set(actual_cpu)):
        total = predicted_tpu[op] + predicted_cpu[op]
        rows.append({"op": op, "predicted_tpu": predicted_tpu[op], "actual_tpu": total - actual_cpu[op],
                     "predicted_cpu": predicted_cpu[op], "actual_cpu": actual_cpu[op],
                     "agrees": predicted_cpu[op] == actual_cpu[op]})
    return rows


def _stem(row: ModelRow) -> str:
    file_name = str((row.params or {}).get("file") or row.name)
    return file_name.removesuffix(".tflite")


def twin_counts(source: ModelRow, twin: ModelRow) -> dict[str, Any] | None:
    """The counts a linked twin carries: its source's work, and its own file's operators (the CPU side).
    A segment does only part of the work, and its share is not in the file: it carries no total."""
    own = dict((twin.op_counts or {}).get("file_operators") or (twin.op_counts or {}).get("operators") or {})
    if source.ops_per_inference is None or is_segment(twin):
        return {"total": None, "by_op": {}, "operators": own, "uncounted": {}, "file_operators": own}
    counts = source.op_counts or {"total": source.ops_per_inference, "by_op": {}, "operators": {}, "uncounted": {}}
    return {**counts, "counted_from": source.sha256, "file_operators": own}


def is_segment(row: ModelRow) -> bool:
    twin = (row.params or {}).get("twin") or {}
    return twin.get("kind") == "segment" or (row.compile_report or {}).get("segment") is not None


def link(store: Store, twin_id: int, source_id: int) -> ModelRow:
    """Point a compiled model at its source and give it the source's operation count."""
    with store.session() as session:
        twin = session.get(ModelRow, twin_id)
        source = session.get(ModelRow, source_id)
        assert twin is not None and source is not None
        counts = twin_counts(source, twin)
        twin.source_model_id = source.id
        twin.op_counts = counts
        twin.ops_per_inference = None if counts is None or counts.get("total") is None else int(counts["total"])
        session.commit()
        session.refresh(twin)
        return twin


def unlink_counts(data_counts: dict[str, Any] | None) -> dict[str, Any] | None:
    """An unlinked twin's counts: its file's operators kept, no total (the total would be the CPU side only)."""
    if data_counts is None:
        return None
    operators = dict(data_counts.get("operators") or {})
    return {"total": None, "by_op": {}, "operators": operators, "uncounted": {}, "file_operators": operators}


def find_source_for(store: Store, twin: ModelRow) -> ModelRow | None:
    """The registered model a published twin's name points at, if any."""
    parsed = parse_twin_name(_stem(twin))
    if parsed is None:
        return None
    with store.session() as session:
        candidates = list(session.scalars(select(ModelRow).where(ModelRow.needs_edgetpu.is_(False))))
    for row in candidates:
        if _stem(row) == parsed.source or row.name == parsed.source:
            return row
    return None


def find_twins_waiting_for(store: Store, source: ModelRow) -> list[ModelRow]:
    """Registered, unlinked compiled models whose name says they were compiled from ``source``."""
    with store.session() as session:
        waiting = list(session.scalars(select(ModelRow).where(ModelRow.needs_edgetpu.is_(True),
                                                              ModelRow.source_model_id.is_(None))))
    names = {_stem(source), source.name}
    return [row for row in waiting if (parse_twin_name(_stem(row)) or TwinName("", "")).source in names]


def twins_of(store: Store, source: ModelRow) -> list[ModelRow]:
    with store.session() as session:
        return list(session.scalars(select(ModelRow).where(ModelRow.source_model_id == source.id,
                                                           ModelRow.needs_edgetpu.is_(True))
                                    .order_by(ModelRow.id)))
