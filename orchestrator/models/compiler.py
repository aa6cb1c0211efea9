"""`farm models compile`: run edgetpu_compiler on the controller and register what it made.

Each output is a new model row linked to its source (``source_model_id``) with the compiler's
version and its parsed report, so the same model compiled by two compiler versions gives two
rows whose results can be compared. Several models given together are co-compiled (they share
the Edge TPU's parameter cache); ``num_segments`` splits each for pipelining over several TPUs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FarmError
from ..store.db import Store
from ..store.schema import ModelRow
from .edgetpu_log import CompilerLogError, parse_console, parse_operation_log, parse_version
from .registry import register_bytes

COMPILER = "edgetpu_compiler"
TIMEOUT_S = 600


@dataclass
class Compiled:
    row: ModelRow
    created: bool
    source: ModelRow
    report: dict[str, Any]


def find_compiler(path: str | None) -> str:
    found = shutil.which(path or COMPILER)
    if found is None:
        where = f"'{path}'" if path else f"{COMPILER} on PATH"
        raise FarmError(f"cannot run the Edge TPU compiler: {where} not found or not executable. It exists "
                        "only for x86-64 Linux (apt-get install edgetpu-compiler from the Coral repository); "
                        "elsewhere pass --compiler PATH")
    return os.path.abspath(found)  # the compiler runs in a scratch directory


def compiler_version(compiler: str) -> str:
    output = _run([compiler, "--version"], Path.cwd())
    found = parse_version(output)
    if found is None:
        raise FarmError(f"{compiler} --version printed no 'Edge TPU Compiler version': "
                        f"'{output.strip()[:200]}'")
    return found


def _run(argv: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except OSError as exc:
        raise FarmError(f"cannot run {argv[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise FarmError(f"{argv[0]} did not finish within {TIMEOUT_S} s") from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = " ".join(line.strip() for line in output.strip().splitlines()[-4:])
        raise FarmError(f"{Path(argv[0]).name} failed (exit {done.returncode}): {tail}")
    return output


def compile_models(store: Store, sources: list[ModelRow], *, compiler: str | None = None,
                   num_segments: int = 1) -> list[Compiled]:
    if not sources:
        raise FarmError("name at least one model to compile")
    if num_segments < 1:
        raise FarmError(f"--num-segments must be 1 or more, not {num_segments}")
    for source in sources:
        if source.needs_edgetpu:
            raise FarmError(f"model '{source.name}' is already compiled for the Edge TPU; compile its source model")
    executable = find_compiler(compiler)
    version = compiler_version(executable)
    with tempfile.TemporaryDirectory(prefix="farm-compile-") as work:
        folder = Path(work)
        inputs = []
        for source in sources:
            # The compiler names outputs after its inputs: give each the model's registry name.
            target = folder / f"{source.name}.tflite"
            shutil.copyfile(source.path, target)
            inputs.append(target.name)
        argv = [executable, "--out_dir", "out", "--show_operations", *inputs]
        if num_segments > 1:
            argv[1:1] = ["--num_segments", str(num_segments)]
        console = _run(argv, folder)
        try:
            run = parse_console(console)
        except CompilerLogError as exc:
            raise FarmError(f"cannot read {Path(executable).name}'s output: {exc}") from None
        if not run.succeeded:
            raise FarmError(f"{Path(executable).name} reported a failure: {' '.join(run.messages[-3:])}")
        return _register_all(store, folder, sources, version, run, num_segments, argv)


def _register_all(store: Store, folder: Path, sources: list[ModelRow], version: str, run: Any,
                  num_segments: int, argv: list[str]) -> list[Compiled]:
    out = folder / "out"
    results = []
    co_compiled = [s.name for s in sources] if len(sources) > 1 else []
    group = hashlib.sha256("\n".join(sorted(co_compiled)).encode()).hexdigest()[:6] if co_compiled else ""
    for source in sources:
        log_path = out / f"{source.name}_edgetpu.log"
        log_version, log_section = parse_operation_log(log_path.read_text()) if log_path.exists() else (None, None)
        names = [f"{source.name}_edgetpu.tflite"] if num_segments == 1 else \
            [f"{source.name}_segment_{k}_of_{num_segments}_edgetpu.tflite" for k in range(num_segments)]
        for segment, file_name in enumerate(names):
            path = out / file_name
            if not path.exists():
                raise FarmError(f"the compiler wrote no {file_name} (in {out}); its output: "
                                f"{' '.join(run.messages[-3:])}")
            section = next((m for m in run.models if m.output and Path(m.output).name == file_name), None)
            report = {"compiler_version": version, "log_version": log_version,
                      "argv": [Path(argv[0]).name, *argv[1:]],
                      "co_compiled_with": [n for n in co_compiled if n != source.name],
                      "num_segments": num_segments, "segment": segment if num_segments > 1 else None,
                      "summary": section.as_dict() if section else None,
                      "operators": [vars(o) for o in (log_section.operators if log_section else [])],
                      "messages": run.messages}
            name = f"{source.name}+edgetpu-{version}"
            if group:
                name += f"-co{group}"
            if num_segments > 1:
                name += f"-seg{segment}of{num_segments}"
            params = {**source.params, "compiled_from": source.sha256, "compiler_version": version}
            row, created = register_bytes(store, path.read_bytes(), name=name, family=source.family, params=params,
                                          source="compiled", source_model_id=source.id, compiler_version=version,
                                          compile_report=report, op_counts=_source_counts(source, num_segments))
            results.append(Compiled(row, created, source, report))
    return results


def _source_counts(source: ModelRow, num_segments: int) -> dict[str, Any] | None:
    """The source's op count: the compiled model does the same arithmetic inside edgetpu-custom-op.
    A segment's share is not known from the file, so segments carry none."""
    if source.ops_per_inference is None or num_segments > 1:
        return None
    counts = source.op_counts or {"total": source.ops_per_inference, "by_op": {}, "operators": {}, "uncounted": {}}
    return {**counts, "counted_from": source.sha256}
