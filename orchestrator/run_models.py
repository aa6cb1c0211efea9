"""The models a run benchmarks: the matrix's selectors, the default suite built first if need be.

Two first runs started together used to both find the registry empty and build the suite at
once, so one planned while the other had stored only part of it (8 and 6 of 10 cells, exit 0).
Building happens under a lock across processes and stores the whole suite in one transaction,
so whoever plans after the lock sees all of it. Selectors are checked before anything is built,
against what the registry holds or the suite will add, and a bad one is reported at its line.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import FarmError, InputError
from .matrix import MatrixSpec
from .models import registry
from .store import locks
from .store.db import Store
from .store.schema import ModelRow

SUITE_LOCK = "default-suite"


def models_for_run(store: Store, spec: MatrixSpec, on_build: Callable[[str], None] | None = None) -> list[ModelRow]:
    check_selectors(store, spec)
    with locks.held(store.engine, SUITE_LOCK):
        if not registry.list_models(store):
            if on_build is not None:
                on_build("No models registered yet: building the default suite "
                         f"({', '.join(f'{f} {v}' for f, v in registry.DEFAULT_SUITE)}).")
            registry.ensure_default_suite(store)
    return registry.find_models(store, spec.models)


def check_selectors(store: Store, spec: MatrixSpec) -> None:
    """Refuse a selector no registered model matches, nor any the default suite would add."""
    models = registry.list_models(store)
    names = {m.name for m in models}
    families = {m.family for m in models}
    if not models:  # the suite is built before planning
        known = registry.families()
        for family_name, value in registry.DEFAULT_SUITE:
            family = known[family_name]
            names.add(registry.model_name(family_name, {**family.defaults, family.sweep: value}, family))
            families.add(family_name)
    for selector in spec.models:
        if selector == "all" or selector in names:
            continue
        if selector.startswith("family:") and selector.split(":", 1)[1] in families:
            continue
        if len(selector) >= 8 and any(m.sha256.startswith(selector) for m in models):
            continue
        problem = f"no registered model matches '{selector}'; see `farm models list`"
        if spec.models_at is None:
            raise FarmError(problem)
        path, line = spec.models_at
        raise InputError(path, problem, line=line, field="models",
                         expected="model names, sha256 prefixes, family:NAME, or all")
