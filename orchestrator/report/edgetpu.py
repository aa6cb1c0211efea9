"""Edge TPU compile tables: co-compiled groups' shared cache, each segment's operators, compiler upgrades.

Built from the compile reports farm stores with each compiled model (``models.compiler``), for the
compiled models in the results; the compiler comparison also reads the same sources' other compiles.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from ..results import ModelInfo
from ..store.db import Store
from ..store.schema import ModelRow

MIB = 1024 * 1024


def _mib(value: object) -> float | None:
    return None if value is None else float(value) / MIB  # type: ignore[arg-type]


def co_compile_groups(models: dict[str, ModelInfo]) -> pd.DataFrame:
    """One row per model of each co-compiled group: its own on-chip use, and the cache the group shares
    (every model's used plus the remaining figure once, not once per model)."""
    rows = []
    for info in models.values():
        report = info.compile_report or {}
        group = report.get("co_compile_group")
        if not group:
            continue
        summary = report.get("summary") or {}
        rows.append({"group": group.get("id"), "compiler": info.compiler_version, "model": info.name,
                     "on_chip_used_mib": _mib(summary.get("on_chip_used_bytes")),
                     "off_chip_used_mib": _mib(summary.get("off_chip_used_bytes")),
                     "group_remaining_mib": _mib(group.get("remaining_bytes")),
                     "group_cache_mib": _mib(group.get("capacity_bytes"))})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(["group", "compiler", "model"], kind="stable").reset_index(drop=True)


def segment_operators(models: dict[str, ModelInfo]) -> dict[str, pd.DataFrame]:
    """Per segment of a segmented compile, its own operator table (from its own operation log)."""
    blocks = {}
    segmented = [i for i in models.values() if (i.compile_report or {}).get("segment") is not None]
    for info in sorted(segmented, key=lambda i: (i.name, (i.compile_report or {}).get("segment"))):
        report = info.compile_report or {}
        title = f"{info.name}: segment {report['segment']} of {report.get('num_segments')} ({info.compiler_version})"
        table = pd.DataFrame(report.get("operators") or [], columns=["op", "count", "status"])
        blocks[title] = table.rename(columns={"op": "operator"})
    return blocks


def compiler_changes(store: Store, models: dict[str, ModelInfo]) -> pd.DataFrame:
    """For each source compiled by more than one compiler version (whole models, not segments or groups):
    what each version mapped and cached, and the change from the previous version."""
    sources = {i.source_sha256 for i in models.values() if i.source_sha256 and i.compile_report}
    if not sources:
        return pd.DataFrame()
    with store.session() as session:
        parents = list(session.scalars(select(ModelRow).where(ModelRow.sha256.in_(sources))))
        children = list(session.scalars(select(ModelRow).where(
            ModelRow.source_model_id.in_([p.id for p in parents]), ModelRow.compiler_version.is_not(None))))
    names = {p.id: p.name for p in parents}
    rows = []
    for child in children:
        report: dict[str, Any] = child.compile_report or {}
        if report.get("segment") is not None or report.get("co_compiled_with"):
            continue
        summary = report.get("summary") or {}
        rows.append({"model": names[child.source_model_id], "compiler": child.compiler_version,
                     "ops_on_tpu": summary.get("tpu_ops"), "ops_on_cpu": summary.get("cpu_ops"),
                     "on_chip_used_mib": _mib(summary.get("on_chip_used_bytes")),
                     "off_chip_used_mib": _mib(summary.get("off_chip_used_bytes"))})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table = table[table.groupby("model")["compiler"].transform("nunique") > 1]
    if table.empty:
        return pd.DataFrame()
    table = table.assign(order=table["compiler"].map(_version_key)).sort_values(["model", "order"], kind="stable")
    for column in ("ops_on_tpu", "on_chip_used_mib", "off_chip_used_mib"):
        table[f"{column}_change"] = table.groupby("model")[column].diff()
    return table.drop(columns=["order"]).reset_index(drop=True)


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def nothing_on_tpu(models: dict[str, ModelInfo]) -> list[str]:
    """Compiled models whose compiler placed nothing on the Edge TPU: results on them measure the CPU."""
    return sorted(info.name for info in models.values()
                  if ((info.compile_report or {}).get("summary") or {}).get("subgraphs") == 0)
