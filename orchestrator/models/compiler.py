"""`farm models compile`: run edgetpu_compiler on the controller and register what it made.

Each output is a new model row linked to its source (``source_model_id``) with the compiler's
version and its parsed report, so the same model compiled by two compiler versions gives two
rows whose results can be compared (``compilers`` runs several side by side). Several models given
together are co-compiled (they share the Edge TPU's parameter cache: the report keeps the group);
``num_segments`` splits each for pipelining over several TPUs, one report and operator table each.
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
from .edgetpu_log import CompilerLogError, CompilerRun, log_gap, parse_console, parse_operation_logs, parse_version
from .registry import op_counts_of, register_bytes

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
    return _run_with_status(argv, cwd)[0]


def _run_with_status(argv: list[str], cwd: Path) -> tuple[str, int]:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except OSError as exc:
        raise FarmError(f"cannot run {argv[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise FarmError(f"{argv[0]} did not finish within {TIMEOUT_S} s") from None
    output = done.stdout + done.stderr
    if done.returncode != 0 and parse_version(output) is not None and "--version" not in argv:
        return output, done.returncode  # it failed in its own words: the parsed run says how
    if done.returncode != 0:
        tail = " ".join(line.strip() for line in output.strip().splitlines()[-4:])
        crashed = done.returncode in (139, -11)  # a segmentation fault, through a shell or not
        what = "crashed (exit 139, segmentation fault)" if crashed else f"failed (exit {done.returncode})"
        raise FarmError(f"{Path(argv[0]).name} {what}: {tail or 'it printed nothing, not even its version banner'}")
    return output, 0


def compile_models(store: Store, sources: list[ModelRow], *, compiler: str | list[str] | None = None,
                   num_segments: int = 1, search_delegate: bool = False) -> list[Compiled]:
    """Compile ``sources`` together with each compiler given; each output keeps its compiler's version."""
    if not sources:
        raise FarmError("name at least one model to compile")
    if num_segments < 1:
        raise FarmError(f"--num-segments must be 1 or more, not {num_segments}")
    for source in sources:
        if source.needs_edgetpu:
            raise FarmError(f"model '{source.name}' is already compiled for the Edge TPU; compile its source model")
    compilers = compiler if isinstance(compiler, list) else [compiler]
    results = []
    for one in compilers or [None]:
        results.extend(_compile_with(store, sources, find_compiler(one), num_segments, search_delegate))
    return results


def _compile_with(store: Store, sources: list[ModelRow], executable: str, num_segments: int,
                  search_delegate: bool) -> list[Compiled]:
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
        if search_delegate:
            argv[1:1] = ["--search_delegate"]
        console, status = _run_with_status(argv, folder)
        try:
            run = parse_console(console)
        except CompilerLogError as exc:
            raise FarmError(f"cannot read {Path(executable).name}'s output: {exc}") from None
        if status != 0 and run.succeeded:  # its words say success, its exit status does not: trust neither
            run.succeeded, run.failure = False, f"exit status {status} after: {' '.join(run.messages[-2:])}"
        if not run.succeeded:
            raise FarmError(f"{Path(executable).name} {version} failed{_partial(run, num_segments)}: "
                            f"{run.failure or ' '.join(run.messages[-3:])}")
        return _register_all(store, folder, sources, version, run, num_segments, argv)


def _partial(run: CompilerRun, num_segments: int) -> str:
    done = [m.segment[0] for m in run.models if m.segment is not None]
    if num_segments == 1 or not done:
        return ""
    return f" in segment {max(done) + 1} of {num_segments}, after segment(s) {', '.join(map(str, done))} " \
        "compiled (a partial result is a failure: nothing registered)"


def _register_all(store: Store, folder: Path, sources: list[ModelRow], version: str, run: CompilerRun,
                  num_segments: int, argv: list[str]) -> list[Compiled]:
    out = folder / "out"
    results = []
    co_compiled = [s.name for s in sources] if len(sources) > 1 else []
    group = hashlib.sha256("\n".join(sorted(co_compiled)).encode()).hexdigest()[:6] if co_compiled else ""
    groups = run.groups()
    for source in sources:
        names = [f"{source.name}_edgetpu.tflite"] if num_segments == 1 else \
            [f"{source.name}_segment_{k}_of_{num_segments}_edgetpu.tflite" for k in range(num_segments)]
        for segment, file_name in enumerate(names):
            path = out / file_name
            if not path.exists():
                raise FarmError(f"the compiler wrote no {file_name} (in {out}); its output: "
                                f"{' '.join(run.messages[-3:])}")
            section = next((m for m in run.models if m.output and Path(m.output).name == file_name), None)
            # Each output has its own operation log: <name>_segment_K_of_N_edgetpu.log for a segment.
            log_path = path.with_suffix(".log")
            logs = parse_operation_logs(log_path.read_text()) if log_path.exists() else []
            log_version, log_section = logs[0] if logs else (None, None)
            report = {"compiler_version": version, "log_version": log_version,
                      "argv": [Path(argv[0]).name, *argv[1:]],
                      "co_compiled_with": [n for n in co_compiled if n != source.name],
                      "co_compile_group": {**groups[0], "id": group} if groups and group else None,
                      "num_segments": num_segments, "segment": segment if num_segments > 1 else None,
                      "summary": section.as_dict() if section else None,
                      "operators": [vars(o) for o in (log_section.operators if log_section else [])],
                      "log_check": log_gap(log_section, section.total_ops if section else None)
                      if log_section else "no operation log",
                      "warnings": [w for w in run.warnings if section and (section.input or "") in w],
                      "timeout_s": run.timeout_s, "delegate_search_step": run.delegate_search_step,
                      "messages": run.messages}
            name = f"{source.name}+edgetpu-{version}"
            if group:
                name += f"-co{group}"
            if num_segments > 1:
                name += f"-seg{segment}of{num_segments}"
            params = {**source.params, "compiled_from": source.sha256, "compiler_version": version}
            data = path.read_bytes()
            row, created = register_bytes(store, data, name=name, family=source.family, params=params,
                                          source="compiled", source_model_id=source.id, compiler_version=version,
                                          compile_report=report, op_counts=_source_counts(source, num_segments, data))
            results.append(Compiled(row, created, source, report))
    return results


def _source_counts(source: ModelRow, num_segments: int, data: bytes) -> dict[str, Any] | None:
    """The source's op count: the compiled model does the same arithmetic inside edgetpu-custom-op.
    A segment's share is not known from the file, so segments carry none."""
    own = (op_counts_of(data) or {}).get("operators") or {}
    if source.ops_per_inference is None or num_segments > 1:
        return {"total": None, "by_op": {}, "operators": own, "uncounted": {}, "file_operators": own}
    counts = source.op_counts or {"total": source.ops_per_inference, "by_op": {}, "operators": {}, "uncounted": {}}
    return {**counts, "counted_from": source.sha256, "file_operators": own}
