"""Models a test needs registered before it starts, through the registry functions `farm models` calls.

Setup, not what the test checks: one `farm models build` or `add` as a child process costs a fresh
interpreter's imports (seconds on the shared 2-core machine), this costs milliseconds. The commands
themselves are tested where they are the subject (test_cli_help, test_cli_conventions,
test_hostile_inputs, test_compile, test_edgetpu_twins, test_lab_isolation, test_nightly_run).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.models import registry
from orchestrator.models.compiler import compile_models
from orchestrator.store import open_store


def register_models(db: str, builds: Iterable[tuple[str, Iterable[int]]] = (),
                    files: Iterable[tuple[Path, str | None]] = (),
                    compiles: Iterable[tuple[Iterable[str], Iterable[str], int]] = ()) -> None:
    """``builds``: (family, layer counts) as ``farm models build --family F --layers ...``; ``files``:
    (path, name or None) as ``farm models add PATH [--name N]``; ``compiles``: (model names, compilers,
    segments) as ``farm models compile NAME... --compiler C... --num-segments N``, in that order."""
    store = open_store(db)
    try:
        for family, values in builds:
            registry.build(store, family, list(values))
        for path, name in files:
            registry.add_file(store, Path(path), name=name)
        for names, compilers, segments in compiles:
            compile_models(store, [registry.find_models(store, [n])[0] for n in names], compiler=list(compilers),
                           num_segments=segments)
    finally:
        store.close()
