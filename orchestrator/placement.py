"""Several models or segments in one cell, and which device each runs on (SEEDS §3).

The matrix names model sets and placements (``same-tpu``, ``separate-tpus``, ``cocompiled``) and
pipeline depths (``segments: [2, 3]``); this module finds the model files each cell runs (a source's
compiled twin, a co-compiled group, a pipeline's segments: CPU ones farm built, or the compiler's
``*_segment_K_of_N_edgetpu``), gives each part its Edge TPU from the host's facts, and names the device
locks a ``concurrency: per-accelerator`` job takes (``usb-port:<sysfs port>``, ``pci:N``, ``cpu``).
A cell that cannot be made says why, as every skipped cell does.
"""

from __future__ import annotations

from typing import Any

from .store.schema import ModelRow

CPU_LOCK = "cpu"


def is_segment(row: ModelRow) -> bool:
    """A pipeline segment (farm's CPU cut or a compiler's segment): part of a model, not a cell of its own."""
    params = row.params or {}
    twin = params.get("twin") or {}
    return (params.get("segment_of") is not None or twin.get("kind") == "segment"
            or (row.compile_report or {}).get("segment") is not None)


def source_of(row: ModelRow, catalogue: list[ModelRow]) -> ModelRow:
    """The model a compiled row came from (itself when it is a source)."""
    if row.source_model_id is None:
        return row
    return next((m for m in catalogue if m.id == row.source_model_id), row)


def _segment_number(row: ModelRow) -> tuple[int | None, int | None]:
    params = row.params or {}
    if params.get("segment_of") is not None:
        return params.get("segment"), params.get("num_segments")
    report = row.compile_report or {}
    if report.get("segment") is not None:
        return report.get("segment"), report.get("num_segments")
    twin = params.get("twin") or {}
    return twin.get("segment"), twin.get("num_segments")


def segments_of(model: ModelRow, count: int, delegate: str, catalogue: list[ModelRow]
                ) -> tuple[list[ModelRow] | None, str | None]:
    """The ``count`` segments of ``model`` (or of its source) for ``delegate``, in order; else a reason."""
    source = source_of(model, catalogue)
    edgetpu = delegate == "edgetpu"
    found: dict[tuple[str | None, int], ModelRow] = {}
    for row in catalogue:
        number, total = _segment_number(row)
        if number is None or total != count or bool(row.needs_edgetpu) != edgetpu:
            continue
        if edgetpu and row.source_model_id != source.id:
            continue
        if not edgetpu and (row.params or {}).get("segment_of") != source.sha256:
            continue
        found.setdefault((row.compiler_version, number), row)
    for version in sorted({v for v, _ in found}, key=lambda v: (v is not None, v or ""), reverse=True):
        parts = [found.get((version, k)) for k in range(count)]
        if all(parts):
            return [p for p in parts if p is not None], None
    how = (f"farm models compile {source.name} --num-segments {count}" if edgetpu
           else f"farm models segment {source.name} --segments {count}")
    return None, f"no {count}-segment {'Edge TPU' if edgetpu else 'CPU'} pipeline of {source.name} is registered: {how}"


def compiled_twin(model: ModelRow, catalogue: list[ModelRow]) -> ModelRow | None:
    """A model's own Edge TPU compile (not co-compiled, not a segment), newest first."""
    if model.needs_edgetpu:
        return model
    twins = [m for m in catalogue if m.source_model_id == model.id and m.needs_edgetpu and not is_segment(m)
             and not (m.compile_report or {}).get("co_compiled_with")
             and ((m.params or {}).get("twin") or {}).get("kind") != "co-compiled"]
    return max(twins, key=lambda m: m.id) if twins else None


def cocompiled_group(models: list[ModelRow], catalogue: list[ModelRow]) -> list[ModelRow] | None:
    """The twins of ``models`` compiled together in one group (they share the TPU's cache), in order."""
    sources = [source_of(m, catalogue) for m in models]
    by_group: dict[str, dict[int, ModelRow]] = {}
    for row in catalogue:
        group = ((row.compile_report or {}).get("co_compile_group") or {}).get("id")
        if group and row.needs_edgetpu and not is_segment(row):
            by_group.setdefault(group, {})[row.source_model_id or -1] = row
    for group in sorted(by_group, key=lambda g: -max(r.id for r in by_group[g].values())):
        members = by_group[group]
        if all(s.id in members for s in sources):
            return [members[s.id] for s in sources]
    return None


def set_parts(names: list[str], placement: str | None, delegate: str, catalogue: list[ModelRow]
              ) -> tuple[list[ModelRow] | None, str | None]:
    """The files a multi-model cell runs, or why it cannot: names are registered names or sha256 prefixes."""
    chosen = []
    for name in names:
        row = next((m for m in catalogue if m.name == name or (len(name) >= 8 and m.sha256.startswith(name))), None)
        if row is None:
            return None, f"no registered model '{name}'"
        chosen.append(row)
    if delegate != "edgetpu":
        return [source_of(m, catalogue) for m in chosen], None
    if placement == "cocompiled":
        group = cocompiled_group(chosen, catalogue)
        if group is None:
            sources = " ".join(source_of(m, catalogue).name for m in chosen)
            return None, f"no co-compiled group of these models is registered: farm models compile {sources}"
        return group, None
    twins = [compiled_twin(source_of(m, catalogue), catalogue) for m in chosen]
    missing = [source_of(m, catalogue).name for m, t in zip(chosen, twins, strict=True) if t is None]
    if missing:
        return None, f"no Edge TPU compile of {', '.join(missing)}: farm models compile {' '.join(missing)}"
    return [t for t in twins if t is not None], None


def host_tpus(host_facts: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The host's Edge TPUs in the facts' order (usb:0, usb:1, ..., then pci:N)."""
    return list(((host_facts or {}).get("edgetpu") or {}).get("devices") or [])


def tpu_lock(tpu: dict[str, Any] | None) -> str:
    """The lock name of one Edge TPU: by sysfs port (``usb:N`` can change when a TPU re-enumerates)."""
    if tpu is None:
        return "edgetpu"
    if tpu.get("port"):
        return f"usb-port:{tpu['port']}"
    return str(tpu.get("device") or tpu.get("path") or "edgetpu")


def tpu_request(tpu: dict[str, Any]) -> dict[str, Any]:
    """A part's Edge TPU request: its port (resolved to usb:N by the agent), or a PCIe device by name."""
    return {"port": tpu["port"]} if tpu.get("port") else {"device": tpu.get("device")}


def assign(placement: str | None, count: int, delegate: str, single: dict[str, Any] | None,
           host_facts: dict[str, Any] | None) -> tuple[list[dict[str, Any] | None] | None, str | None]:
    """Each part's TPU: one TPU for all (same-tpu, cocompiled: the cell's), one TPU each (separate-tpus, a
    pipeline). None entries: CPU. Returns (TPUs, None) or (None, reason)."""
    if delegate != "edgetpu":
        return [None] * count, None
    if placement in ("same-tpu", "cocompiled"):
        return ([single] * count, None) if single is not None else (None, "no Edge TPU found on this host")
    tpus = host_tpus(host_facts)
    if placement is None and tpus:
        # A pipeline deeper than the host has TPUs shares them round-robin: it still runs, and the segments
        # that share a TPU swap each other's parameters out, which its per-segment devices show.
        return [tpus[k % len(tpus)] for k in range(count)], None
    if len(tpus) < count:
        what = "pipeline of" if placement is None else "separate-tpus placement of"
        return None, f"a {what} {count} models needs {count} Edge TPUs; this host has {len(tpus)}"
    return tpus[:count], None


def locks(delegate: str, tpus: list[dict[str, Any] | None]) -> tuple[str, ...]:
    """The device locks a per-accelerator job takes: each TPU it uses, or the CPU."""
    if delegate != "edgetpu":
        return (CPU_LOCK,)
    return tuple(sorted({tpu_lock(t) for t in tpus}))
