"""The stand-in edgetpu_compiler prints each output form at the versions that print it, and `farm models
compile` reads each one right: segments, co-compiles, delegate search, zero subgraphs, failures, and
several compiler versions side by side (issue 14)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from orchestrator.errors import FarmError
from orchestrator.models import architectures, registry
from orchestrator.models.compiler import compile_models
from orchestrator.models.edgetpu_log import parse_console, parse_operation_log
from orchestrator.models.flatbuild import BuiltinOperator, GraphBuilder, Quant, TensorType
from orchestrator.store import open_store
from orchestrator.store.schema import ModelRow
from tests.conftest import SHARED_MODELS
from tests.test_cli_run import farm

REPO = Path(__file__).parents[1]
DEEPLAB = SHARED_MODELS / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
VERSIONS = ["2.0.267685300", "2.1.302470888", "14.1.317412892", "15.0.340273435", "16.0.384591198"]
MIB = 1024 ** 2


def make_compiler(folder: Path, version: str, fault: str = "") -> Path:
    """The stand-in as an executable that claims ``version`` (and plays ``fault``), run by this interpreter."""
    path = folder / f"edgetpu_compiler-{version}{'-' + fault.replace(':', '') if fault else ''}"
    path.write_text(f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, {str(REPO)!r})\n"
                    f"os.environ['FARM_STANDIN_COMPILER_VERSION'] = {version!r}\n"
                    f"os.environ['FARM_STANDIN_COMPILER_FAULT'] = {fault!r}\n"
                    "from farm_lab.standin_compiler import main\nsys.exit(main())\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run(compiler: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(compiler), *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=300)


def argmax_only() -> bytes:
    """A quantized model whose one op the Edge TPU cannot run: nothing maps."""
    graph = GraphBuilder("argmax only")
    x = graph.tensor("input", (1, 8, 8, 3), TensorType.UINT8, Quant([0.1], [0]))
    axis = graph.tensor("axis", (1,), TensorType.INT32, data=np.array([3]))
    y = graph.tensor("labels", (1, 8, 8), TensorType.INT64)
    graph.op(BuiltinOperator.ARG_MAX, [x, axis], [y])
    return graph.finish([x], [y])


@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_prints_its_own_summary_form(version: str, tmp_path: Path) -> None:
    compiler = make_compiler(tmp_path, version)
    done = run(compiler, "-s", "-o", "out", str(DEEPLAB), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    available = text.find("On-chip memory available for caching model parameters")
    used = text.find("On-chip memory used for caching model parameters")
    remaining = text.find("On-chip memory remaining for caching model parameters")
    if version.startswith("2.0"):
        assert 0 <= available < used and remaining < 0  # 2.0: available before used
    else:
        assert 0 <= used < remaining and available < 0  # 2.1 and later: used then remaining
    assert ("Started a compilation timeout timer of 180 seconds." in text) == version.startswith("16.")
    assert ("Compilation child process completed within timeout period." in text) == version.startswith("16.")
    counts_printed = "Number of operations that will run on CPU: 8" in text
    assert counts_printed == (not version.startswith("2."))
    parsed = parse_console(text)
    assert parsed.succeeded and parsed.version == version
    (model,) = parsed.models
    # The DeepLab source: 8 of its 72 operations stay on the CPU, whichever version says it (2.x via its table).
    assert (model.tpu_ops, model.cpu_ops, model.total_ops) == (64, 8, 72)


def test_16_omits_the_counts_when_all_maps_and_takes_its_timeout_from_t(tmp_path: Path) -> None:
    model = tmp_path / "net.tflite"
    model.write_bytes(architectures.build_mobilenet_v1(96, alpha=0.25))
    done = run(make_compiler(tmp_path, VERSIONS[-1]), "-t", "300", "-o", "out", str(model), cwd=tmp_path)
    assert "Started a compilation timeout timer of 300 seconds." in done.stdout
    assert "Number of operations that will run on" not in done.stdout
    (section,) = parse_console(done.stdout).models
    assert (section.tpu_ops, section.cpu_ops) == (31, 0)
    fifteen = run(make_compiler(tmp_path, "15.0.340273435"), "-o", "out15", str(model), cwd=tmp_path).stdout
    assert "Number of operations that will run on CPU: 0" in fifteen


def test_segments_each_get_a_block_a_tflite_and_a_log_of_their_own(tmp_path: Path) -> None:
    done = run(make_compiler(tmp_path, VERSIONS[-1]), "-n", "2", "-o", "out", str(DEEPLAB), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count("Model compiled successfully") == 2
    stem = "deeplabv3_mnv2_dm05_pascal_quant"
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_segment_{k}_of_2_edgetpu.{ext}" for k in (0, 1) for ext in ("tflite", "log"))
    tables = [parse_operation_log((out / f"{stem}_segment_{k}_of_2_edgetpu.log").read_text())[1] for k in (0, 1)]
    assert all(t.operators for t in tables)
    assert sum(t.tpu_ops for t in tables) == 64 and sum(t.cpu_ops for t in tables) == 8
    assert [m.segment for m in parse_console(done.stdout).models] == [(0, 2), (1, 2)]


def test_co_compiling_prints_models_plural_and_shares_the_cache(tmp_path: Path) -> None:
    big = tmp_path / "v1.tflite"
    big.write_bytes(architectures.build_mobilenet_v1(224))
    second = tmp_path / "v2.tflite"
    second.write_bytes(architectures.build_mobilenet_v2(224))
    done = run(make_compiler(tmp_path, VERSIONS[-1]), "-o", "out", str(big), str(second), cwd=tmp_path)
    assert "Models compiled successfully" in done.stdout
    parsed = parse_console(done.stdout)
    first, later = parsed.models
    # v1's 4.2 MiB of parameters leave too little of the stand-in's 7 MiB for v2's 3.5: v2 gets nothing on-chip.
    assert first.on_chip_used_bytes > 4 * MIB and later.on_chip_used_bytes == 0 and later.off_chip_used_bytes > 3 * MIB
    assert first.on_chip_remaining_bytes == later.on_chip_remaining_bytes  # the group's, printed in each block
    (group,) = parsed.groups()
    assert group["capacity_bytes"] == first.on_chip_used_bytes + later.on_chip_used_bytes + \
        first.on_chip_remaining_bytes
    assert abs(group["capacity_bytes"] - 7.0 * MIB) <= 0.01 * MIB  # what the stand-in offers, as a USB accelerator


def test_compile_registers_each_segment_with_its_own_operators_and_the_group_cache(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        source, _ = registry.add_file(store, DEEPLAB)
        segments = compile_models(store, [source], compiler=str(make_compiler(tmp_path, VERSIONS[-1])),
                                  num_segments=2)
        assert [s.report["segment"] for s in segments] == [0, 1]
        assert all(s.report["operators"] and s.report["log_check"] is None for s in segments)
        assert sum(o["count"] for s in segments for o in s.report["operators"]) == 72
        assert all(s.row.ops_per_inference is None for s in segments)  # a segment's share is not known
        [(v1, _)] = registry.build(store, "mobilenet_v1", None)
        [(v2, _)] = registry.build(store, "mobilenet_v2", None)
        first, later = compile_models(store, [v1, v2], compiler=str(make_compiler(tmp_path, VERSIONS[-1])))
        group = first.report["co_compile_group"]
        assert group == later.report["co_compile_group"]
        used = first.report["summary"]["on_chip_used_bytes"] + later.report["summary"]["on_chip_used_bytes"]
        assert group["capacity_bytes"] == used + group["remaining_bytes"]
        assert first.report["summary"]["on_chip_capacity_bytes"] == group["capacity_bytes"]
    finally:
        store.close()


def test_delegate_search_succeeds_after_failed_attempts(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        source, _ = registry.add_file(store, DEEPLAB)
        compiler = make_compiler(tmp_path, VERSIONS[-1], "search:2")
        done = run(compiler, "-d", "-k", "10", "-o", "out", str(DEEPLAB), cwd=tmp_path)
        assert done.stdout.count("Compilation failed!") == 2 and done.stdout.count("Intermediate tensors:") == 2
        assert "Searching for valid delegate with step 10" in done.stdout
        parsed = parse_console(done.stdout)
        assert parsed.outcomes == [False, False, True] and parsed.succeeded
        [compiled] = compile_models(store, [source], compiler=str(compiler), search_delegate=True)
        assert compiled.report["delegate_search_step"] == 1 and compiled.report["summary"]["cpu_ops"] == 8
    finally:
        store.close()


@pytest.mark.parametrize(("fault", "words"), [
    ("large-activations:1", "in segment 1 of 2, after segment(s) 0 compiled"),
    ("internal", "Internal compiler error. Aborting!"),
    ("opcode", "Didn't find op for builtin opcode 'CONV_2D'"),
    ("crash", "crashed (exit 139, segmentation fault)"),
])
def test_failures_are_clear_and_register_nothing(fault: str, words: str, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        source, _ = registry.add_file(store, DEEPLAB)
        with pytest.raises(FarmError) as failure:
            compile_models(store, [source], compiler=str(make_compiler(tmp_path, VERSIONS[-1], fault)),
                           num_segments=2)
        assert words in str(failure.value)
        if fault.startswith("large"):
            assert "Compilation failed due to large activation tensors in model." in str(failure.value)
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(ModelRow)) == 1
    finally:
        store.close()


def test_zero_subgraphs_registers_with_a_warning(tmp_path: Path) -> None:
    model = tmp_path / "argmax.tflite"
    model.write_bytes(argmax_only())
    done = run(make_compiler(tmp_path, VERSIONS[-1]), "-o", "out", str(model), cwd=tmp_path)
    assert "Number of Edge TPU subgraphs: 0" in done.stdout and "Compilation succeeded!" in done.stdout
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        source, _ = registry.add_file(store, model)
        [compiled] = compile_models(store, [source], compiler=str(make_compiler(tmp_path, VERSIONS[-1])))
        assert compiled.created and compiled.row.source_model_id == source.id and not compiled.row.needs_edgetpu
        assert compiled.row.compile_report["warnings"] == compiled.report["warnings"]
        assert compiled.report["warnings"] == [("argmax.tflite: Number of Edge TPU subgraphs: 0, nothing runs on "
                                               "the Edge TPU")]
        assert compiled.report["summary"]["tpu_ops"] == 0 and compiled.report["summary"]["cpu_ops"] == 1
    finally:
        store.close()
    assert "none: 0 subgraphs" in farm("models", "list", "--db", f"sqlite:///{tmp_path / 'farm.db'}").stdout


def test_two_compilers_side_by_side_from_the_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    farm("models", "add", str(DEEPLAB), "--db", db)
    old, new = make_compiler(tmp_path, "2.1.302470888"), make_compiler(tmp_path, VERSIONS[-1])
    done = farm("models", "compile", "deeplabv3_mnv2_dm05_pascal_quant", "--compiler", str(old), "--compiler",
                str(new), "--db", db).stdout
    assert "+edgetpu-2.1.302470888" in done and "+edgetpu-16.0.384591198" in done
    store = open_store(db)
    try:
        with store.session() as session:
            versions = sorted(session.scalars(select(ModelRow.compiler_version).where(
                ModelRow.compiler_version.is_not(None))))
        assert versions == ["16.0.384591198", "2.1.302470888"]
    finally:
        store.close()


def test_a_truncated_operation_log_is_said_to_be(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    farm("models", "add", str(DEEPLAB), "--db", db)
    done = farm("models", "compile", "deeplabv3_mnv2_dm05_pascal_quant", "--compiler",
                str(make_compiler(tmp_path, VERSIONS[-1], "truncated-log")), "--db", db).stdout
    # DeepLab's 72 operations, but the log's table lost its last row.
    assert "the operation log is truncated" in done and "of the model's 72 operations" in done
