"""Matrices: which models run on which hosts with which delegates and threads.

A matrix file holds named matrices::

    matrices:
      threads-sweep:
        models: [conv_stack-l1, family:dense_stack]   # names, sha256 prefixes, family:NAME or all
        delegates: [cpu]                              # cpu, edgetpu, gpu; onnxruntime: cpu, cuda, tensorrt
        backends: [tflite, onnxruntime]               # optional: each model runs under the backends of its format
        precisions: [fp32, fp16, int8]                # optional: default the model file's own
        threads: [1, 2, 4]                            # or "all": 1 .. CPUs online on each host
        hosts: [nano-1]                               # optional: host names
        tags: [lab-a]                                 # optional: hosts with any of these tags
        timing: {min_runs: 20, min_seconds: 0.5}      # optional: overrides benchmark_model's defaults

``--matrix all`` needs no file: every registered model, with the delegate it is
built for, at every thread count from 1 to the host's CPUs, on every host.
Expansion is deterministic, and a cell a host cannot run is kept as *skipped*
with its reason rather than dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.backends.onnxruntime import PROVIDERS, precision_problem
from agent.interference import DEFAULT_THRESHOLDS as INTERFERENCE_THRESHOLDS
from agent.schema import (
    BACKEND_DELEGATES,
    BACKEND_FORMATS,
    CONCURRENCY_MODES,
    DEFAULT_BACKEND,
    DELEGATES,
    PLACEMENTS,
    PRECISIONS,
    TIMING_DEFAULTS,
    TIMING_LIMIT,
)

from . import placement as placing
from .errors import InputError
from .inventory import Host
from .models.formats import format_of_path, native_precision
from .store.schema import ModelRow
from .yamlfile import YamlDocument, load_yaml

# What `farm nightly` reads from a matrix: (lowest, highest, meaning). The command line overrides.
REGRESSION_SETTINGS: dict[str, tuple[float, float, str]] = {
    "min_effect": (0.0, 10.0, "smallest relative change reported (0.05 = 5%)"),
    "trials": (2, 20, "separate runs of the matrix per nightly (an integer)"),
    "alpha": (1e-9, 0.5, "significance level of the Mann-Whitney U test"),
    "confirm": (0, 10, ("trials run again of a cell that looks regressed or improved before the verdict stands "
                        "(an integer; 0 judges at once)")),
}

MATRIX_FIELDS = {
    "models": "a list of model names, sha256 prefixes, family:NAME, or all",
    "delegates": "a list drawn from " + ", ".join(DELEGATES),
    "backends": "a list drawn from " + ", ".join(BACKEND_DELEGATES),
    "precisions": "a list drawn from " + ", ".join(PRECISIONS),
    "threads": "a list of positive integers, or all",
    "hosts": "a list of host names",
    "tags": "a list of host tags",
    "timing": "a mapping of " + ", ".join(TIMING_DEFAULTS),
    "power_modes": "a list of power mode names the hosts declare (e.g. [10W, 5W]), or all",
    "usb_ports": "a list of USB port names or sysfs port paths for Edge TPU cells, or all",
    "regression": "a mapping of " + ", ".join(f"{k} ({v[2]})" for k, v in REGRESSION_SETTINGS.items()),
    "interference": "a mapping of " + ", ".join(INTERFERENCE_THRESHOLDS) + " (numbers, or null to turn one off)",
    "concurrency": "host (one benchmark at a time per host, the default) or per-accelerator (one job per "
                   "Edge TPU at once, and one on the CPU)",
    "model_sets": "a list of lists of model names, each run as one multi-model cell (SEEDS §3)",
    "placements": "a list drawn from " + ", ".join(PLACEMENTS) + " (for model_sets)",
    "segments": "a list of pipeline depths (integers from 2), each model also run as an N-segment pipeline",
    "description": "a sentence",
}
# benchmark_model's defaults made quicker for the whole-lab `all` matrix: at least
# 20 runs and half a second per cell keeps the default suite under two minutes.
ALL_TIMING = {"warmup_min_runs": 1, "warmup_min_seconds": 0.2, "min_runs": 20, "min_seconds": 0.5}


@dataclass(frozen=True)
class MatrixSpec:
    name: str
    models: tuple[str, ...] = ("all",)
    delegates: tuple[str, ...] | None = None  # None: the delegate each model is built for
    threads: tuple[int, ...] | None = None  # None: 1 .. CPUs online
    hosts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    timing: dict[str, float] = field(default_factory=dict)
    power_modes: tuple[str, ...] | None = ()  # (): leave the host as it is; None: every mode it declares
    usb_ports: tuple[str, ...] | None = ()  # (): any Edge TPU; None: every port with one
    regression: dict[str, float] = field(default_factory=dict)  # nightly verdict settings, see REGRESSION_SETTINGS
    # What counts as disturbed (agent/interference.py DEFAULT_THRESHOLDS), sent with every job.
    interference: dict[str, float | None] = field(default_factory=dict)
    models_at: tuple[str, int | None] | None = None  # (file, line) of `models`, for errors naming a model
    concurrency: str = "host"  # or per-accelerator: a lock per device, up to one job per TPU at once
    model_sets: tuple[tuple[str, ...], ...] = ()  # several models per cell, invoked in turn
    placements: tuple[str, ...] = ()  # for model_sets; () is same-tpu
    segments: tuple[int, ...] = ()  # pipeline depths: each selected model also runs as an N-segment pipeline
    singles: bool = True  # one-model cells of `models` (False: a matrix of model_sets only)
    backends: tuple[str, ...] | None = None  # None: each model under the default backend of its format
    precisions: tuple[str, ...] | None = None  # None: each model at its file's own precision


@dataclass(frozen=True)
class Cell:
    host: Host
    model: ModelRow
    delegate: str
    threads: int
    power_mode: str | None = None
    usb_port: str | None = None
    usb_speed: int | None = None
    skip_reason: str | None = None
    parts: tuple[ModelRow, ...] = ()  # a multi-model cell's models, or a pipeline's segments, in order
    pipeline: bool = False  # parts are segments (a pipeline), else models invoked in turn
    placement: str | None = None
    part_tpus: tuple[dict[str, Any] | None, ...] = ()  # each part's Edge TPU (None: the CPU)
    locks: tuple[str, ...] | None = None  # device locks of a per-accelerator job; None: the whole host
    model_set: str | None = None  # a multi-model cell's models as the matrix names them, "a + b"
    backend: str = DEFAULT_BACKEND
    precision: str | None = None  # asked for by the matrix; None: the model file's own

    @property
    def key(self) -> str:
        fields = [self.host.name, self.model.sha256[:16], self.delegate, f"t{self.threads}",
                  f"p{self.power_mode or '-'}", f"u{self.usb_port or '-'}"]
        if self.parts:  # one-model cells keep the keys stored runs have
            kind = f"s{len(self.parts)}" if self.pipeline else f"x{self.placement or '-'}"
            fields += [kind, "+".join(p.sha256[:8] for p in self.parts)]
        # TFLite cells at the file's precision keep the key they had before backends, so old runs resume.
        if self.backend != DEFAULT_BACKEND:
            fields.append(f"b{self.backend}")
        if self.precision:
            fields.append(f"q{self.precision}")
        return "|".join(fields)

    @property
    def runs_at(self) -> str:
        """The precision the cell runs at: the one asked for, else the model file's own."""
        return self.precision or model_precision(self.model)


def all_matrix() -> MatrixSpec:
    return MatrixSpec(name="all", timing=dict(ALL_TIMING), power_modes=None, usb_ports=None)


def load_matrix(name: str, path: str | Path | None) -> MatrixSpec:
    if path is None:
        if name == "all":
            return all_matrix()
        raise InputError(name, "a matrix other than 'all' needs a matrix file", field="--matrix",
                         expected="--matrix-file PATH naming a file that defines it")
    doc = load_yaml(path)
    return parse_matrix(doc, name)


def parse_matrix(doc: YamlDocument, name: str) -> MatrixSpec:
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("matrices"), dict):
        raise doc.error((), "a matrix file must have a top-level 'matrices' mapping",
                        expected="matrices: {NAME: {models: [...], ...}}")
    for key in data:
        if key != "matrices":
            raise doc.error((key,), "unknown top-level key", field=str(key), expected="'matrices'")
    matrices = data["matrices"]
    if name not in matrices:
        if name == "all":
            return all_matrix()
        raise doc.error(("matrices",), f"no matrix named '{name}'",
                        expected="one of " + ", ".join(map(str, matrices)))
    entry = matrices[name]
    where = ("matrices", name)
    if not isinstance(entry, dict):
        raise doc.error(where, "a matrix must be a mapping", expected="models, delegates, threads, ...")
    for key in entry:
        if key not in MATRIX_FIELDS:
            raise doc.error(where + (key,), "unknown field", field=str(key),
                            expected="one of " + ", ".join(MATRIX_FIELDS))
    if entry.get("models") == []:
        raise doc.error(where + ("models",), "an empty list names no model", field="models",
                        expected=MATRIX_FIELDS["models"] + " (leave the field out for all)")
    if entry.get("concurrency") == "per-accelerator" and entry.get("power_modes"):
        raise doc.error(where + ("power_modes",), "jobs running side by side would switch the board's power mode "
                        "under each other", field="power_modes",
                        expected="no power_modes with concurrency: per-accelerator (sweep modes in a host matrix)")
    return MatrixSpec(
        name=name,
        models_at=(doc.path, doc.line(where + ("models",))) if "models" in entry else None,
        models=_strings(doc, where, entry, "models") or ("all",),
        delegates=_delegates(doc, where, entry),
        backends=_choices(doc, where, entry, "backends", tuple(BACKEND_DELEGATES)),
        precisions=_choices(doc, where, entry, "precisions", PRECISIONS),
        threads=_threads(doc, where, entry),
        hosts=_strings(doc, where, entry, "hosts"),
        tags=_strings(doc, where, entry, "tags"),
        timing=_timing(doc, where, entry),
        power_modes=_all_or_names(doc, where, entry, "power_modes"),
        usb_ports=_all_or_names(doc, where, entry, "usb_ports"),
        regression=_regression(doc, where, entry),
        interference=_interference(doc, where, entry),
        concurrency=_concurrency(doc, where, entry),
        model_sets=_model_sets(doc, where, entry),
        placements=_placements(doc, where, entry),
        segments=_segment_counts(doc, where, entry),
        singles="models" in entry or not (entry.get("model_sets")),
    )


def _concurrency(doc: YamlDocument, where: tuple, entry: dict) -> str:
    value = entry.get("concurrency", "host")
    if value not in CONCURRENCY_MODES:
        raise doc.error(where + ("concurrency",), f"got {value!r}", field="concurrency",
                        expected=MATRIX_FIELDS["concurrency"])
    return str(value)


def _model_sets(doc: YamlDocument, where: tuple, entry: dict) -> tuple[tuple[str, ...], ...]:
    value = entry.get("model_sets") or []
    if not isinstance(value, list) or not all(
            isinstance(s, list) and 1 <= len(s) <= 16 and all(isinstance(n, str) and n for n in s) for s in value):
        raise doc.error(where + ("model_sets",), f"got {value!r}", field="model_sets",
                        expected=MATRIX_FIELDS["model_sets"])
    return tuple(tuple(s) for s in value)


def _placements(doc: YamlDocument, where: tuple, entry: dict) -> tuple[str, ...]:
    values = _strings(doc, where, entry, "placements")
    for value in values:
        if value not in PLACEMENTS:
            raise doc.error(where + ("placements",), f"unknown placement '{value}'", field="placements",
                            expected=MATRIX_FIELDS["placements"])
    return values


def _segment_counts(doc: YamlDocument, where: tuple, entry: dict) -> tuple[int, ...]:
    value = entry.get("segments") or []
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 16
                                              for v in value):
        raise doc.error(where + ("segments",), f"got {value!r}", field="segments", expected=MATRIX_FIELDS["segments"])
    return tuple(sorted(set(value)))


def _all_or_names(doc: YamlDocument, where: tuple, entry: dict, key: str) -> tuple[str, ...] | None:
    if entry.get(key) == "all":
        return None
    return _strings(doc, where, entry, key)


def _strings(doc: YamlDocument, where: tuple, entry: dict, key: str) -> tuple[str, ...]:
    value = entry.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise doc.error(where + (key,), f"got {value!r}", field=key, expected=MATRIX_FIELDS[key])
    return tuple(value)


def _delegates(doc: YamlDocument, where: tuple, entry: dict) -> tuple[str, ...] | None:
    values = _strings(doc, where, entry, "delegates")
    for value in values:
        if value not in DELEGATES:
            raise doc.error(where + ("delegates",), f"unknown delegate '{value}'", field="delegates",
                            expected=MATRIX_FIELDS["delegates"])
    return values or None


def _choices(doc: YamlDocument, where: tuple, entry: dict, key: str, allowed: tuple[str, ...]
             ) -> tuple[str, ...] | None:
    values = _strings(doc, where, entry, key)
    for value in values:
        if value not in allowed:
            raise doc.error(where + (key,), f"unknown {key[:-1]} '{value}'", field=key, expected=MATRIX_FIELDS[key])
    return tuple(dict.fromkeys(values)) or None


def _threads(doc: YamlDocument, where: tuple, entry: dict) -> tuple[int, ...] | None:
    value = entry.get("threads")
    if value is None or value == "all":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 256 for v in value)):
        raise doc.error(where + ("threads",), f"got {value!r}", field="threads", expected=MATRIX_FIELDS["threads"])
    return tuple(sorted(set(value)))


def _timing(doc: YamlDocument, where: tuple, entry: dict) -> dict[str, float]:
    value = entry.get("timing") or {}
    if not isinstance(value, dict):
        raise doc.error(where + ("timing",), f"got {value!r}", field="timing", expected=MATRIX_FIELDS["timing"])
    for key, number in value.items():
        if key not in TIMING_DEFAULTS:
            raise doc.error(where + ("timing", key), "unknown timing setting", field=f"timing.{key}",
                            expected="one of " + ", ".join(TIMING_DEFAULTS))
        if (isinstance(number, bool) or not isinstance(number, (int, float))
                or not 0 <= number <= TIMING_LIMIT):  # also refuses NaN: every comparison with it is False
            raise doc.error(where + ("timing", key), f"got {number!r}", field=f"timing.{key}",
                            expected=f"a number from 0 to {TIMING_LIMIT:g}")
    return dict(value)


def _interference(doc: YamlDocument, where: tuple, entry: dict) -> dict[str, float | None]:
    value = entry.get("interference") or {}
    if not isinstance(value, dict):
        raise doc.error(where + ("interference",), f"got {value!r}", field="interference",
                        expected=MATRIX_FIELDS["interference"])
    for key, number in value.items():
        if key not in INTERFERENCE_THRESHOLDS:
            raise doc.error(where + ("interference", key), "unknown interference threshold",
                            field=f"interference.{key}", expected="one of " + ", ".join(INTERFERENCE_THRESHOLDS))
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                                   or not 0 <= number <= TIMING_LIMIT):
            raise doc.error(where + ("interference", key), f"got {number!r}", field=f"interference.{key}",
                            expected="a non-negative number, or null to turn the rule off")
    return dict(value)


def _regression(doc: YamlDocument, where: tuple, entry: dict) -> dict[str, float]:
    value = entry.get("regression") or {}
    if not isinstance(value, dict):
        raise doc.error(where + ("regression",), f"got {value!r}", field="regression",
                        expected=MATRIX_FIELDS["regression"])
    for key, number in value.items():
        if key not in REGRESSION_SETTINGS:
            raise doc.error(where + ("regression", key), "unknown regression setting", field=f"regression.{key}",
                            expected="one of " + ", ".join(REGRESSION_SETTINGS))
        low, high, meaning = REGRESSION_SETTINGS[key]
        whole = key not in ("trials", "confirm") or isinstance(number, int)
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not whole or not low <= number <= high:
            raise doc.error(where + ("regression", key), f"got {number!r}", field=f"regression.{key}",
                            expected=f"{meaning}, from {low:g} to {high:g}")
    return dict(value)


def expand(spec: MatrixSpec, hosts: list[Host], models: list[ModelRow],
           facts: dict[str, dict[str, Any] | None], catalogue: list[ModelRow] | None = None) -> list[Cell]:
    """Every cell of the matrix, in a stable order, with skip reasons where a host cannot run it.

    ``catalogue``: every registered model, where model sets and pipelines find their files (compiled
    twins, co-compiled groups, segments); by default the selected ``models``.
    """
    catalogue = models if catalogue is None else catalogue
    singles = [m for m in sorted(models, key=lambda m: (m.family, m.name, m.sha256)) if not placing.is_segment(m)]
    cells = []
    for host in sorted(hosts, key=lambda h: h.name):
        host_facts = facts.get(host.name)
        for mode in _modes_for(spec, host):
            for model in singles if spec.singles else []:
                for backend in _backends_for(spec, model):
                    for delegate in _delegates_for(spec, model, backend):
                        ports = _ports_for(spec, host, host_facts) if delegate == "edgetpu" else [None]
                        for precision in spec.precisions or (None,):
                            for port in ports:
                                for threads in _threads_for(spec, host_facts):
                                    cells.append(_cell(spec, host, host_facts, model, delegate, threads, mode, port,
                                                       backend, precision))
                # Pipelines cut TFLite models into segments; an ONNX model has none.
                for count in spec.segments if model_format(model) == "tflite" else ():
                    for delegate in _delegates_for(spec, model):
                        for threads in _threads_for(spec, host_facts):
                            cells.append(_pipeline_cell(spec, host, host_facts, model, count, delegate, threads,
                                                        mode, catalogue))
            for names in spec.model_sets:
                named = [m for m in catalogue if m.name in names]
                for delegate in spec.delegates or (_delegates_for(spec, named[0]) if named else ("cpu",)):
                    for placement in (spec.placements or ("same-tpu",)) if delegate == "edgetpu" else (None,):
                        ports = _ports_for(spec, host, host_facts)[:1] if delegate == "edgetpu" else [None]
                        for threads in _threads_for(spec, host_facts)[:1]:
                            cells.append(_set_cell(spec, host, host_facts, list(names), placement, delegate,
                                                   threads, mode, ports[0], catalogue))
    return cells


def model_format(model: ModelRow) -> str:
    return format_of_path(model.path)


def model_precision(model: ModelRow) -> str:
    return native_precision(model_format(model), list(model.inputs or []))


def _backends_for(spec: MatrixSpec, model: ModelRow) -> tuple[str, ...]:
    """The backends that read this model's format: a .tflite model has no onnxruntime cell, nor the reverse."""
    kind = model_format(model)
    if spec.backends is None:
        return tuple(name for name in BACKEND_FORMATS if BACKEND_FORMATS[name] == kind)[:1]
    return tuple(name for name in spec.backends if BACKEND_FORMATS.get(name) == kind)


def _cell(spec: MatrixSpec, host: Host, host_facts: dict[str, Any] | None, model: ModelRow, delegate: str,
          threads: int, mode: str | None, port: str | None, backend: str = DEFAULT_BACKEND,
          precision: str | None = None) -> Cell:
    tpu = find_tpu(host, host_facts, port) if delegate == "edgetpu" else None
    reason = _host_reason(host, host_facts, model, delegate, threads, mode, backend, precision)
    if reason is None and delegate == "edgetpu":
        reason = edgetpu_skip_reason(host_facts, port, tpu)
    return Cell(host, model, delegate, threads, mode, port, (tpu or {}).get("speed"), reason,
                locks=_locks(spec, delegate, [tpu]), backend=backend, precision=precision)


def _host_reason(host: Host, host_facts: dict[str, Any] | None, model: ModelRow, delegate: str, threads: int,
                 mode: str | None, backend: str = DEFAULT_BACKEND, precision: str | None = None) -> str | None:
    if backend == DEFAULT_BACKEND:
        reason = skip_reason(host_facts, model, delegate, threads) or tflite_precision_reason(model, precision)
    else:
        reason = backend_skip_reason(host_facts, model, backend, delegate, threads, precision)
    if reason is None and mode is not None and mode not in host.power_modes:
        declared = ", ".join(host.power_modes) or "none"
        reason = f"host declares no power mode '{mode}' (it has: {declared})"
    return reason


def _locks(spec: MatrixSpec, delegate: str, tpus: list[dict[str, Any] | None]) -> tuple[str, ...] | None:
    return placing.locks(delegate, tpus) if spec.concurrency == "per-accelerator" else None


def _pipeline_cell(spec: MatrixSpec, host: Host, host_facts: dict[str, Any] | None, model: ModelRow, count: int,
                   delegate: str, threads: int, mode: str | None, catalogue: list[ModelRow]) -> Cell:
    parts, reason = placing.segments_of(model, count, delegate, catalogue)
    first = (parts or [model])[0]
    reason = reason or _host_reason(host, host_facts, first, delegate, threads, mode)
    tpus: list[dict[str, Any] | None] = [None] * count
    if reason is None and delegate == "edgetpu":
        assigned, reason = placing.assign(None, count, delegate, None, host_facts)
        tpus = assigned or tpus
        reason = reason or edgetpu_skip_reason(host_facts, None, tpus[0])
    return Cell(host, first, delegate, threads, mode, None, None, reason, parts=tuple(parts or [model]),
                pipeline=True, part_tpus=tuple(tpus), locks=_locks(spec, delegate, tpus))


def _set_cell(spec: MatrixSpec, host: Host, host_facts: dict[str, Any] | None, names: list[str],
              placement: str | None, delegate: str, threads: int, mode: str | None, port: str | None,
              catalogue: list[ModelRow]) -> Cell:
    parts, reason = placing.set_parts(names, placement, delegate, catalogue)
    first = (parts or catalogue[:1])[0]
    reason = reason or _host_reason(host, host_facts, first, delegate, threads, mode)
    single = find_tpu(host, host_facts, port) if delegate == "edgetpu" else None
    tpus: list[dict[str, Any] | None] = [None] * len(names)
    if reason is None and delegate == "edgetpu":
        assigned, reason = placing.assign(placement, len(names), delegate, single, host_facts)
        tpus = assigned or tpus
        reason = reason or edgetpu_skip_reason(host_facts, port, tpus[0])
    shared = port if placement in ("same-tpu", "cocompiled") else None
    return Cell(host, first, delegate, threads, mode, shared, (single or {}).get("speed") if shared else None,
                reason, parts=tuple(parts or [first]), placement=placement, part_tpus=tuple(tpus),
                locks=_locks(spec, delegate, tpus), model_set=" + ".join(names))


def _modes_for(spec: MatrixSpec, host: Host) -> list[str | None]:
    if spec.power_modes is None:
        return sorted(host.power_modes, key=_mode_order) or [None]
    return list(spec.power_modes) or [None]


def _mode_order(name: str) -> tuple[float, str]:
    # Highest wattage first (10W before 5W), named modes after, alphabetically.
    digits = "".join(c for c in name if c.isdigit() or c == ".")
    try:
        return (-float(digits), name)
    except ValueError:
        return (0.0, name)


def _ports_for(spec: MatrixSpec, host: Host, host_facts: dict[str, Any] | None) -> list[str | None]:
    if spec.usb_ports is None:
        if host.usb_ports:
            return sorted(host.usb_ports)
        found = [t["port"] for t in ((host_facts or {}).get("edgetpu") or {}).get("devices", []) if t.get("port")]
        return sorted(found) or [None]
    return list(spec.usb_ports) or [None]


def find_tpu(host: Host, host_facts: dict[str, Any] | None, port: str | None) -> dict[str, Any] | None:
    """The Edge TPU a cell would use: by port name, by sysfs port path, or the first one."""
    devices = ((host_facts or {}).get("edgetpu") or {}).get("devices") or []
    if port is None:
        return devices[0] if devices else None
    path = (host.usb_ports.get(port) or {}).get("port", port)
    return next((d for d in devices if d.get("port") == path), None)


def edgetpu_skip_reason(host_facts: dict[str, Any] | None, port: str | None,
                        tpu: dict[str, Any] | None) -> str | None:
    if host_facts is None:
        return None
    edgetpu = host_facts.get("edgetpu") or {}
    if tpu is None:
        where = f" on port {port}" if port else ""
        return f"no Edge TPU found on this host{where}"
    library = edgetpu.get("library") or {}
    if not library.get("path"):
        return (f"libedgetpu.so.1 is not installed on this host; the job would have used {tpu.get('device')} "
                f"on port {tpu.get('port')} at {tpu.get('speed')} Mb/s")
    return None


def _delegates_for(spec: MatrixSpec, model: ModelRow, backend: str = DEFAULT_BACKEND) -> tuple[str, ...]:
    """The matrix's delegates this backend takes (the CPU when the matrix names none, or the Edge TPU a
    compiled model needs); a delegate the backend has not got is no cell of it."""
    takes = BACKEND_DELEGATES.get(backend, ())
    if spec.delegates is None:
        return ("edgetpu",) if model.needs_edgetpu and backend == DEFAULT_BACKEND else ("cpu",)
    return tuple(d for d in spec.delegates if d in takes)


def _threads_for(spec: MatrixSpec, host_facts: dict[str, Any] | None) -> tuple[int, ...]:
    if spec.threads is not None:
        return spec.threads
    cpus = int((host_facts or {}).get("cpu_count") or 1)
    return tuple(range(1, cpus + 1))


def skip_reason(host_facts: dict[str, Any] | None, model: ModelRow, delegate: str, threads: int) -> str | None:
    if host_facts is None:
        return None  # unreachable hosts fail at run time with the transport's reason
    runtime = host_facts.get("runtime") or {}
    if not runtime.get("name"):
        # The agent's own message already says "no TFLite runtime found: tried ...".
        return str(runtime["error"]) if runtime.get("error") else "no TFLite runtime on this host"
    if model.needs_edgetpu and delegate != "edgetpu":
        return "model is compiled for the Edge TPU (edgetpu-custom-op) and cannot run on the CPU delegate"
    if delegate == "edgetpu" and not model.needs_edgetpu:
        return "model is not compiled for the Edge TPU: compile it with edgetpu_compiler first"
    cpus = int(host_facts.get("cpu_count") or 1)
    if threads > cpus:
        return f"host has {cpus} CPU(s) online, fewer than the {threads} threads asked for"
    return None


def tflite_precision_reason(model: ModelRow, precision: str | None) -> str | None:
    native = model_precision(model)
    if precision is None or precision == native:
        return None
    return (f"the tflite backend runs the model file's own types ({native}); it cannot run {model.name} at "
            f"{precision}: build or add a {precision} model")


def backend_skip_reason(host_facts: dict[str, Any] | None, model: ModelRow, backend: str, delegate: str,
                        threads: int, precision: str | None) -> str | None:
    """Why a host cannot run a cell of a backend other than TFLite, from the backends its agent reported."""
    if host_facts is None:
        return None
    described = (host_facts.get("backends") or {}).get(backend)
    if described is None:
        if "backends" in host_facts:
            return f"this host's agent has no {backend} backend"
        return None  # an agent from before backends were reported: the job itself says
    if not described.get("name"):
        return str(described.get("error") or f"{backend} is not installed on this host")
    if backend == "onnxruntime":
        provider = PROVIDERS[delegate][0]
        present = described.get("providers") or []
        if provider not in present:
            return (f"onnxruntime {described.get('version')} on this host has no {provider} (it has "
                    f"{', '.join(present) or 'none'}): delegate {delegate} needs onnxruntime-gpu"
                    + (" with TensorRT" if delegate == "tensorrt" else ""))
        problem = precision_problem(delegate, precision, model_precision(model))
        if problem:
            return problem
    cpus = int(host_facts.get("cpu_count") or 1)
    if threads > cpus:
        return f"host has {cpus} CPU(s) online, fewer than the {threads} threads asked for"
    return None
