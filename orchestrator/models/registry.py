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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..errors import FarmError, InputError
from ..store.db import Store, data_dir
from ..store.schema import ModelRow
from .inspect import ModelFormatError, inspect_model

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


@dataclass(frozen=True)
class Family:
    """A synthetic model family: its generator and the parameter that sweeps it."""

    name: str
    build: Callable[..., bytes]
    sweep: str
    defaults: dict[str, Any]


def families() -> dict[str, Family]:
    from . import synthetic  # numpy-heavy; only needed when building

    return {
        "conv_stack": Family("conv_stack", synthetic.build_conv_stack, "layers",
                             {"size": 128, "channels": 3, "kernel": 7, "filters": 32}),
        "dense_stack": Family("dense_stack", synthetic.build_dense_stack, "layers", {"units": 100}),
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
    from .opcount import count_ops

    try:
        return int(count_ops(data).total)
    except ValueError:
        return None


def register_bytes(store: Store, data: bytes, *, name: str, family: str, params: dict[str, Any],
                   source: str) -> tuple[ModelRow, bool]:
    """Store a model; returns (row, created). The same bytes register once."""
    if not MODEL_NAME.match(name):
        raise FarmError(f"model name '{name}' is not allowed: use letters, digits, '.', '_', '+' or '-'")
    info = inspect_model(data)
    sha = hashlib.sha256(data).hexdigest()
    with store.session() as session:
        existing = session.scalar(select(ModelRow).where(ModelRow.sha256 == sha))
        if existing is not None:
            _ensure_cached(Path(existing.path), data)
            return existing, False
        clash = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if clash is not None:
            raise FarmError(f"a different model is already registered as '{name}' "
                            f"(sha256 {clash.sha256[:16]}…): choose another --name")
        path = model_cache_dir() / f"{sha}.tflite"
        _ensure_cached(path, data)
        row = ModelRow(sha256=sha, name=name, family=family, params=params, source=source, path=str(path),
                       size_bytes=len(data), inputs=info.inputs, outputs=info.outputs,
                       ops_per_inference=ops_of(data), needs_edgetpu=info.needs_edgetpu)
        session.add(row)
        session.commit()
        return row, True


def _ensure_cached(path: Path, data: bytes) -> None:
    if path.exists() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def add_file(store: Store, path: Path, *, name: str | None = None, family: str = "imported") -> tuple[ModelRow, bool]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), "model file not found") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read model file: {exc.strerror}") from None
    try:
        return register_bytes(store, data, name=name or path.stem, family=family,
                              params={"file": path.name}, source="imported")
    except ModelFormatError as exc:
        raise InputError(str(path), str(exc)) from None


def build(store: Store, family_name: str, sweep_values: Iterable[int], **overrides: Any) -> list[tuple[ModelRow, bool]]:
    known = families()
    if family_name not in known:
        raise FarmError(f"unknown model family '{family_name}' (known: {', '.join(sorted(known))})")
    family = known[family_name]
    rows = []
    for value in sweep_values:
        params = {**family.defaults, **overrides, family.sweep: value}
        try:
            data = family.build(**params)
        except (TypeError, ValueError) as exc:
            raise FarmError(f"cannot build {family_name} with {params}: {exc}") from None
        rows.append(register_bytes(store, data, name=model_name(family_name, params, family), family=family_name,
                                   params=params, source="generated"))
    return rows


def model_name(family_name: str, params: dict[str, Any], family: Family) -> str:
    name = f"{family_name}-{family.sweep[0]}{params[family.sweep]}"
    extras = [f"{key}{params[key]}" for key in sorted(family.defaults) if params.get(key) != family.defaults[key]]
    return "-".join([name, *extras])


def ensure_default_suite(store: Store) -> list[ModelRow]:
    created = []
    for family_name, value in DEFAULT_SUITE:
        row, new = build(store, family_name, [value])[0]
        if new:
            created.append(row)
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
