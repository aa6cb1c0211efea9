"""The model registry: every model stored once by sha256, its file in farm's cache.

Models come from the synthetic generators (``farm models build``) or from the
user's own .tflite files (``farm models add``); either way the bytes are checked,
copied under the data directory named by their hash, and described in the store.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..bounded_read import read_model_file
from ..errors import FarmError, InfrastructureError, InputError
from ..store.db import Store, data_dir
from ..store.schema import ModelRow
from .formats import SUFFIXES, count_any, inspect_any
from .inspect import ModelFormatError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\Z")  # \Z: "$" allows a trailing newline


@dataclass(frozen=True)
class Family:
    """A synthetic model family: its generator and the parameter that sweeps it."""

    name: str
    build: Callable[..., bytes]
    sweep: str
    defaults: dict[str, Any]
    values: tuple[int, ...] = (1,)  # the sweep values `farm models build` uses when given none
    about: str = ""
    # The same architecture as ONNX (float32, for ONNX Runtime and TensorRT), where the family has one.
    build_onnx: Callable[..., bytes] | None = None
    formats: tuple[str, ...] = ("tflite",)  # what `farm models build` writes without --format

    def builder(self, kind: str) -> Callable[..., bytes]:
        found = self.build if kind == "tflite" else self.build_onnx if kind == "onnx" else None
        if found is None:
            raise FarmError(f"the {self.name} family has no {kind} build (it has: {', '.join(self.available)})")
        return found

    @property
    def available(self) -> tuple[str, ...]:
        return ("tflite",) + (("onnx",) if self.build_onnx is not None else ())


def families() -> dict[str, Family]:
    from . import architectures, googlenet, onnx_families, synthetic  # numpy-heavy; only needed when building

    return {
        "conv_stack": Family("conv_stack", synthetic.build_conv_stack, "layers",
                             {"size": 128, "channels": 3, "kernel": 7, "filters": 32},
                             about="SEEDS §2 conv-only stack: 7x7 convolutions on a 128x128 tensor",
                             build_onnx=onnx_families.build_conv_stack_onnx),
        "dense_stack": Family("dense_stack", synthetic.build_dense_stack, "layers", {"units": 100},
                              about="SEEDS §2 dense-only stack: fully-connected layers of 100 units",
                              build_onnx=onnx_families.build_dense_stack_onnx),
        "googlenet": Family("googlenet", googlenet.build_googlenet_tflite, "size", {}, (224,),
                            "GoogLeNet / Inception v1 (published layer shapes, random weights): ONNX fp32 and "
                            "TFLite int8", build_onnx=onnx_families.build_googlenet_onnx, formats=("onnx", "tflite")),
        "mobilenet_v1": Family("mobilenet_v1", architectures.build_mobilenet_v1, "size", {"alpha": 1.0}, (224,),
                               "MobileNet v1 (published layer shapes, random int8 weights)"),
        "mobilenet_v2": Family("mobilenet_v2", architectures.build_mobilenet_v2, "size", {"alpha": 1.0}, (224,),
                               "MobileNet v2 with inverted residuals (published shapes, random int8 weights)"),
        "ssd_mobilenet_v1": Family("ssd_mobilenet_v1", architectures.build_ssd_mobilenet_v1, "size",
                                   {"num_classes": 90}, (300,),
                                   "SSD detector on MobileNet v1, ending in TFLite_Detection_PostProcess"),
    }


# Small enough that `farm run --matrix all` on one 2-core machine stays under
# two minutes, and still shows the conv stack's time growing with its depth.
DEFAULT_SUITE: tuple[tuple[str, int], ...] = (
    ("conv_stack", 1), ("conv_stack", 2), ("conv_stack", 3),
    ("dense_stack", 100), ("dense_stack", 300),
)


def model_cache_dir() -> Path:
    return data_dir() / "models"


def ops_of(data: bytes) -> int | None:
    counted = op_counts_of(data)
    return None if counted is None else int(counted["total"])


def op_counts_of(data: bytes) -> dict[str, Any] | None:
    try:
        return count_any(data).as_dict()
    except ValueError:
        return None


def register_bytes(store: Store, data: bytes, *, name: str, family: str, params: dict[str, Any],
                   source: str, source_model_id: int | None = None, compiler_version: str | None = None,
                   compile_report: dict[str, Any] | None = None, op_counts: dict[str, Any] | None = None,
                   in_session: Session | None = None) -> tuple[ModelRow, bool]:
    """Store a model; returns (row, created). The same bytes register once.

    ``op_counts`` replaces the count read from the bytes: a compiled model hides its work inside
    one custom op, so it carries its source model's count. Given ``in_session``, the row is only
    flushed into it: the caller commits several models at once."""
    if not MODEL_NAME.match(name):
        raise FarmError(f"model name '{name}' is not allowed: use letters, digits, '.', '_', '+' or '-'")
    kind, info = inspect_any(data)
    sha = hashlib.sha256(data).hexdigest()
    owner = in_session is None
    with store.session() if owner else nullcontext(in_session) as session:
        existing = session.scalar(select(ModelRow).where(ModelRow.sha256 == sha))
        if existing is not None:
            _ensure_cached(Path(existing.path), data)
            return existing, False
        clash = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if clash is not None:
            raise FarmError(f"a different model is already registered as '{name}' "
                            f"(sha256 {clash.sha256[:16]}…): choose another --name")
        path = model_cache_dir() / f"{sha}{SUFFIXES[kind]}"  # the suffix says the format (formats.format_of_path)
        _ensure_cached(path, data)
        counted = op_counts if op_counts is not None else op_counts_of(data)
        row = ModelRow(sha256=sha, name=name, family=family, params=params, source=source, path=str(path),
                       size_bytes=len(data), inputs=info.inputs, outputs=info.outputs,
                       ops_per_inference=None if counted is None or counted.get("total") is None
                       else int(counted["total"]),
                       needs_edgetpu=info.needs_edgetpu, op_counts=counted, source_model_id=source_model_id,
                       compiler_version=compiler_version, compile_report=compile_report)
        session.add(row)
        if owner:
            session.commit()
        else:
            session.flush()
        return row, True


def _ensure_cached(path: Path, data: bytes) -> None:
    if path.exists() and path.stat().st_size == len(data):
        return
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)  # a full disk must not keep the partial copy as well
        raise InfrastructureError(f"cannot store the model in farm's cache {path.parent}: {exc.strerror}. Free space there "
                        "or point FARM_DATA_DIR at a writable folder with room.") from None


def add_file(store: Store, path: Path, *, name: str | None = None, family: str = "imported",
             source: str | None = None) -> tuple[ModelRow, bool]:
    """Register a user's file. A compiled one links to its source (``source``: a registered name or a
    file to register first; else the model its Coral-style name points at); a source links the
    compiled twins already registered under its name."""
    from . import twins

    data = read_model_file(path)  # a regular file of bounded size: never /dev/zero or a FIFO
    try:
        _, info = inspect_any(data)
    except ModelFormatError as exc:
        raise InputError(str(path), str(exc)) from None
    params: dict[str, Any] = {"file": path.name}
    counts = None
    if info.needs_edgetpu:
        parsed = twins.parse_twin_name(path.stem)
        if parsed is not None:
            params["twin"] = parsed.as_dict()
        counts = twins.unlink_counts(op_counts_of(data))
    elif source is not None:
        raise FarmError(f"{path.name} is not compiled for the Edge TPU: --source names the model a compiled "
                        "file came from")
    try:
        row, created = register_bytes(store, data, name=name or path.stem, family=family, params=params,
                                      source="imported", op_counts=counts)
    except ModelFormatError as exc:
        raise InputError(str(path), str(exc)) from None
    if row.needs_edgetpu:
        origin = _source_model(store, source) if source is not None else \
            None if row.source_model_id is not None else twins.find_source_for(store, row)
        if origin is not None and origin.id != row.source_model_id:
            row = twins.link(store, row.id, origin.id)
    else:
        for waiting in twins.find_twins_waiting_for(store, row):
            twins.link(store, waiting.id, row.id)
    return row, created


def _source_model(store: Store, source: str) -> ModelRow:
    """``--source``: a registered model's name or sha256 prefix, or a .tflite file (registered here)."""
    path = Path(source)
    if source.endswith(".tflite") or path.is_file():
        row, _ = add_file(store, path)
    else:
        [row] = find_models(store, [source])[:1]
    if row.needs_edgetpu:
        raise FarmError(f"--source {source} is itself compiled for the Edge TPU: name the model it was compiled from")
    return row


def build(store: Store, family_name: str, sweep_values: Iterable[int] | None, formats: Iterable[str] | None = None,
          **overrides: Any) -> list[tuple[ModelRow, bool]]:
    """Build and register a family's models; ``formats``: "tflite", "onnx" (None: the family's own default)."""
    known = families()
    if family_name not in known:
        raise FarmError(f"unknown model family '{family_name}' (known: {', '.join(sorted(known))})")
    family = known[family_name]
    unknown = sorted(set(overrides) - set(family.defaults))
    if unknown:
        raise FarmError(f"{family_name} takes no parameter {', '.join(unknown)} "
                        f"(it takes {', '.join([family.sweep, *sorted(family.defaults)])})")
    kinds = tuple(family.formats if formats is None else formats)
    builders = {kind: family.builder(kind) for kind in kinds}
    rows = []
    for value in family.values if sweep_values is None else sweep_values:
        for kind, builder in builders.items():
            params = {**family.defaults, **overrides, family.sweep: value}
            try:
                data = builder(**params)
            except (TypeError, ValueError) as exc:
                raise FarmError(f"cannot build {family_name} ({kind}) with {params}: {exc}") from None
            if kind != "tflite":
                params["format"] = kind
            rows.append(register_bytes(store, data, name=model_name(family_name, params, family),
                                       family=family_name, params=params, source="generated"))
    return rows


def model_name(family_name: str, params: dict[str, Any], family: Family) -> str:
    """``conv_stack-l10``; the ONNX build of it ``conv_stack-l10-onnx``."""
    name = f"{family_name}-{family.sweep[0]}{params[family.sweep]}"
    extras = [f"{key}{params[key]}" for key in sorted(family.defaults) if params.get(key) != family.defaults[key]]
    if params.get("format", "tflite") != "tflite":
        extras.append(str(params["format"]))
    return "-".join([name, *extras])


def ensure_default_suite(store: Store) -> list[ModelRow]:
    """Build the default suite and store it in one transaction: a run sees all of it or none."""
    known = families()
    built = []
    for family_name, value in DEFAULT_SUITE:
        family = known[family_name]
        params = {**family.defaults, family.sweep: value}
        data = family.build(**params)
        # Counted before the transaction opens: on SQLite it holds the write lock other runs wait for.
        built.append((family_name, params, model_name(family_name, params, family), data, op_counts_of(data)))
    created = []
    with store.session() as session:
        for family_name, params, name, data, counted in built:
            row, new = register_bytes(store, data, name=name, family=family_name, params=params,
                                      source="generated", op_counts=counted, in_session=session)
            if new:
                created.append(row)
        session.commit()
    return created


def list_models(store: Store) -> list[ModelRow]:
    with store.session() as session:
        return list(session.scalars(select(ModelRow).order_by(ModelRow.family, ModelRow.name)))


def find_models(store: Store, selectors: Iterable[str]) -> list[ModelRow]:
    """Models by name, sha256 prefix, or ``family:NAME``; unknown selectors are an error."""
    models = list_models(store)
    chosen: dict[int, ModelRow] = {}
    for selector in selectors:
        if selector == "all":
            matched = models
        elif selector.startswith("family:"):
            matched = [m for m in models if m.family == selector.split(":", 1)[1]]
        else:
            matched = [m for m in models if m.name == selector or (len(selector) >= 8 and m.sha256.startswith(selector))]
        if not matched:
            raise FarmError(f"no registered model matches '{selector}'; see `farm models list`")
        for model in matched:
            chosen[model.id] = model
    return sorted(chosen.values(), key=lambda m: (m.family, m.name))
