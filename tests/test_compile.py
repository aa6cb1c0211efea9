"""Edge TPU compilation: the log parser on hand-written logs of both compiler eras, and
`farm models compile` driving a stand-in compiler that behaves like the real one."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.errors import FarmError
from orchestrator.models import architectures, registry
from orchestrator.models.compiler import compile_models
from orchestrator.models.edgetpu_log import CompilerLogError, parse_console, parse_operation_log, parse_size
from orchestrator.models.inspect import EDGETPU_CUSTOM_OP, inspect_model
from orchestrator.store import open_store
from orchestrator.store.schema import ModelRow
from tests.test_cli_run import farm
from tests.test_models_arch import float_model

# Compiler 2.0 era (SEEDS §2's MobileNet v1 and 300-layer conv stack figures): "available".
OLD_CONSOLE = """Edge TPU Compiler version 2.0.267685300
INFO: Initialized TensorFlow Lite runtime.

Model compiled successfully in 372 ms.

Input model: mobilenet_v1_1.0_224_quant.tflite
Input size: 4.08MiB
Output model: mobilenet_v1_1.0_224_quant_edgetpu.tflite
Output size: 4.32MiB
On-chip memory available for caching model parameters: 7.14MiB
On-chip memory used for caching model parameters: 4.21MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 31
Operation log: mobilenet_v1_1.0_224_quant_edgetpu.log
See the operation log file for individual operation details.

Input model: conv_stack_300.tflite
Input size: 13.20MiB
Output model: conv_stack_300_edgetpu.tflite
Output size: 16.94MiB
On-chip memory available for caching model parameters: 5.01MiB
On-chip memory used for caching model parameters: 5.00MiB
Off-chip memory used for streaming uncached model parameters: 11.85MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 302
Operation log: conv_stack_300_edgetpu.log
See the operation log file for individual operation details.
"""

# The log file of the published SSD under compiler 1.0, rows as SEEDS §2 quotes them (single spaces).
OLD_SSD_LOG = """Edge TPU Compiler version 1.0.249710469
Input: coco_ssd_mobilenet_v1.tflite
Output: coco_ssd_mobilenet_v1_edgetpu.tflite

Operator Count Status

CUSTOM 1 Operation is working on an unsupported data type
CONCATENATION 2 Mapped to Edge TPU
CONV_2D 34 Mapped to Edge TPU
DEPTHWISE_CONV_2D 13 Mapped to Edge TPU
RESHAPE 13 Mapped to Edge TPU
LOGISTIC 1 Mapped to Edge TPU
"""

# Compiler 16 era: "remaining", CPU/TPU counts in the summary, table on the console with -s.
NEW_CONSOLE = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1189 ms.

Input model: ssd_mobilenet_v2_coco_quant_postprocess.tflite
Input size: 6.34MiB
Output model: out/ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite
Output size: 6.58MiB
On-chip memory used for caching model parameters: 6.04MiB
On-chip memory remaining for caching model parameters: 1.43MiB
Off-chip memory used for streaming uncached model parameters: 128.00KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 162
Operation log: out/ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 161
Number of operations that will run on CPU: 1

Operator                       Count      Status

LOGISTIC                       1          Mapped to Edge TPU
CUSTOM                         1          Operation is working on an unsupported data type
DEPTHWISE_CONV_2D              17         Mapped to Edge TPU
RESHAPE                        13         Mapped to Edge TPU
CONCATENATION                  2          Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
CONV_2D                        55         Mapped to Edge TPU
QUANTIZE                       63         Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def test_old_era_console_gives_capacity_as_printed_and_counts_from_nothing_else() -> None:
    run = parse_console(OLD_CONSOLE)
    assert run.version == "2.0.267685300" and run.succeeded
    mobilenet, stack = run.models
    assert mobilenet.era == "available"
    assert mobilenet.input == "mobilenet_v1_1.0_224_quant.tflite"
    assert mobilenet.on_chip_available_bytes == parse_size("7.14MiB") == round(7.14 * 1024 ** 2)
    assert mobilenet.on_chip_capacity_bytes == mobilenet.on_chip_available_bytes
    assert mobilenet.on_chip_used_bytes == round(4.21 * 1024 ** 2) and mobilenet.off_chip_used_bytes == 0
    assert mobilenet.total_ops == 31 and mobilenet.tpu_ops is None  # the old summary has no split
    assert stack.off_chip_used_bytes == round(11.85 * 1024 ** 2) and stack.total_ops == 302
    assert "INFO: Initialized TensorFlow Lite runtime." in run.messages


def test_old_era_log_table_with_single_spaces() -> None:
    version, section = parse_operation_log(OLD_SSD_LOG)
    assert version == "1.0.249710469" and section.input == "coco_ssd_mobilenet_v1.tflite"
    assert [(o.op, o.count) for o in section.operators][:3] == [("CUSTOM", 1), ("CONCATENATION", 2), ("CONV_2D", 34)]
    assert section.operators[0].status == "Operation is working on an unsupported data type"
    assert (section.tpu_ops, section.cpu_ops, section.total_ops) == (63, 1, 64)


def test_new_era_console_with_remaining_memory_and_operator_table() -> None:
    run = parse_console(NEW_CONSOLE)
    (ssd,) = run.models
    assert ssd.era == "remaining" and ssd.on_chip_available_bytes is None
    assert ssd.on_chip_remaining_bytes == round(1.43 * 1024 ** 2)
    assert ssd.on_chip_capacity_bytes == round(1.43 * 1024 ** 2) + round(6.04 * 1024 ** 2)
    assert ssd.off_chip_used_bytes == 128 * 1024
    assert (ssd.tpu_ops, ssd.cpu_ops, ssd.subgraphs) == (161, 1, 1)
    assert sum(o.count for o in ssd.operators) == 162
    assert [o.op for o in ssd.operators if not o.on_tpu] == ["CUSTOM"]


def test_text_that_is_not_compiler_output_is_refused() -> None:
    with pytest.raises(CompilerLogError, match="Edge TPU Compiler version"):
        parse_console("Segmentation fault\n")
    with pytest.raises(CompilerLogError, match="size"):
        parse_size("lots")
    failed = parse_console("Edge TPU Compiler version 16.0.384591198\n\nInvalid model: x.tflite\n"
                           "Model not quantized\nCompilation failed!\n")
    assert not failed.succeeded and not failed.models


@pytest.fixture
def standin(tmp_path: Path) -> Path:
    """The stand-in as an executable, run by this interpreter (which has farm's dependencies)."""
    path = tmp_path / "bin" / "edgetpu_compiler"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
                    "from farm_lab.standin_compiler import main\nsys.exit(main())\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_standin_behaves_like_the_real_compiler_on_the_command_line(standin: Path, tmp_path: Path) -> None:
    import subprocess

    version = subprocess.run([standin, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == "Edgetpu Compiler version 16.0.384591198"
    model = tmp_path / "net.tflite"
    model.write_bytes(architectures.build_mobilenet_v1(128, alpha=0.25))
    done = subprocess.run([standin, "-s", "-o", str(tmp_path / "o"), str(model)], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    compiled = (tmp_path / "o" / "net_edgetpu.tflite").read_bytes()
    assert inspect_model(compiled).custom_ops == [EDGETPU_CUSTOM_OP]
    log_version, logged = parse_operation_log((tmp_path / "o" / "net_edgetpu.log").read_text())
    assert log_version == "16.0.384591198" and sum(o.count for o in logged.operators if o.on_tpu) == 31
    (section,) = parse_console(done.stdout).models
    assert section.tpu_ops == 31 and section.cpu_ops == 0 and section.off_chip_used_bytes == 0
    (tmp_path / "float.tflite").write_bytes(float_model())
    refused = subprocess.run([standin, str(tmp_path / "float.tflite")], capture_output=True, text=True,
                             cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "Model not quantized" in refused.stdout


def test_compile_stores_a_new_row_per_compiler_version_linked_to_its_source(
        db_url: str, standin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(db_url)
    try:
        [(ssd, _)] = registry.build(store, "ssd_mobilenet_v1", [160])
        [compiled] = compile_models(store, [ssd], compiler=str(standin))
        row = compiled.row
        assert row.source == "compiled" and row.source_model_id == ssd.id and row.needs_edgetpu
        assert row.compiler_version == "16.0.384591198" and row.name == f"{ssd.name}+edgetpu-16.0.384591198"
        assert row.ops_per_inference == ssd.ops_per_inference  # the work is the same, now inside the TPU op
        summary = row.compile_report["summary"]
        assert summary["era"] == "remaining" and summary["tpu_ops"] == 64 and summary["cpu_ops"] == 1
        assert summary["on_chip_used_bytes"] + summary["off_chip_used_bytes"] > 3 * 1024 ** 2
        operators = {(o["op"], o["status"]): o["count"] for o in row.compile_report["operators"]}
        assert operators[("CUSTOM", "Operation is working on an unsupported data type")] == 1
        assert operators[("CONV_2D", "Mapped to Edge TPU")] == 34
        assert inspect_model(Path(row.path).read_bytes()).custom_ops == [EDGETPU_CUSTOM_OP,
                                                                          architectures.DETECTION_POSTPROCESS]
        # Same compiler again: nothing new. An older compiler: a second row, "available" era.
        again = compile_models(store, [ssd], compiler=str(standin))
        assert not again[0].created and again[0].row.id == row.id
        monkeypatch.setenv("FARM_STANDIN_COMPILER_VERSION", "2.0.267685300")
        [older] = compile_models(store, [ssd], compiler=str(standin))
        assert older.created and older.row.compiler_version == "2.0.267685300"
        assert older.row.compile_report["summary"]["era"] == "available"
        assert older.row.compile_report["summary"]["tpu_ops"] == 64  # derived from the table
        with store.session() as session:
            children = session.scalars(select(ModelRow).where(ModelRow.source_model_id == ssd.id)).all()
        assert sorted(c.compiler_version for c in children) == ["16.0.384591198", "2.0.267685300"]
    finally:
        store.close()


def test_co_compilation_shares_the_cache_and_segments_split_a_model(tmp_path: Path, standin: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        [(v1, _)] = registry.build(store, "mobilenet_v1", None)
        [(v2, _)] = registry.build(store, "mobilenet_v2", None)
        first, second = compile_models(store, [v1, v2], compiler=str(standin))
        assert first.report["co_compiled_with"] == [v2.name] and "-co" in first.row.name
        used = first.report["summary"]["on_chip_used_bytes"] + second.report["summary"]["on_chip_used_bytes"]
        assert used <= 7 * 1024 ** 2 < used + second.report["summary"]["off_chip_used_bytes"] + 1
        assert second.report["summary"]["off_chip_used_bytes"] > 0  # v1 took most of the cache first
        segments = compile_models(store, [v2], compiler=str(standin), num_segments=2)
        assert [s.row.name.rsplit("-", 1)[1] for s in segments] == ["seg0of2", "seg1of2"]
        assert sum(s.report["summary"]["tpu_ops"] for s in segments) == 66
        assert all(s.row.source_model_id == v2.id for s in segments)
    finally:
        store.close()


def test_compile_errors_name_the_problem(tmp_path: Path, standin: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        [(stack, _)] = registry.build(store, "conv_stack", [1])
        with pytest.raises(FarmError, match="not found or not executable.*--compiler"):
            compile_models(store, [stack], compiler=str(tmp_path / "nope"))
        with pytest.raises(FarmError, match="num-segments"):
            compile_models(store, [stack], compiler=str(standin), num_segments=0)
        flat = tmp_path / "float.tflite"
        flat.write_bytes(float_model())
        row, _ = registry.add_file(store, flat)
        with pytest.raises(FarmError, match="failed.*Model not quantized"):
            compile_models(store, [row], compiler=str(standin))
        [compiled] = compile_models(store, [stack], compiler=str(standin))
        with pytest.raises(FarmError, match="already compiled"):
            compile_models(store, [compiled.row], compiler=str(standin))
    finally:
        store.close()


def test_cli_compile_show_and_check(tmp_path: Path, standin: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    farm("models", "build", "--family", "mobilenet_v2", "--db", db)
    done = farm("models", "compile", "mobilenet_v2-s224", "--compiler", str(standin), "--db", db)
    assert "mobilenet_v2-s224+edgetpu-16.0.384591198" in done.stdout and "new" in done.stdout
    shown = farm("models", "show", "mobilenet_v2-s224+edgetpu-16.0.384591198", "--db", db).stdout
    assert "compiled from mobilenet_v2-s224" in shown and "on-chip memory remaining" in shown
    assert "DEPTHWISE_CONV_2D" in shown and "Mapped to Edge TPU" in shown
    source = farm("models", "show", "mobilenet_v2-s224", "--db", db).stdout
    assert "ADD" in source and "multiply-adds" in source and "300.8 M" in source
    ok = farm("models", "check", "mobilenet_v2-s224", "--db", db)
    assert "All 66 operations map to the Edge TPU" in ok.stdout
    flat = tmp_path / "float.tflite"
    flat.write_bytes(float_model())
    refused = farm("models", "check", str(flat), "--db", db, check=False)
    assert refused.returncode == 1 and "not quantized" in refused.stdout and "8-bit" in refused.stdout
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 100)
    bad = farm("models", "check", str(broken), "--db", db, check=False)
    assert bad.returncode == 2 and "broken.tflite" in bad.stderr and "TFL3" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = farm("models", "compile", "mobilenet_v2-s224", "--compiler", "/nonexistent/edgetpu_compiler",
                   "--db", db, check=False)
    assert missing.returncode == 2 and "x86-64" in missing.stderr
    assert os.environ.get("FARM_STANDIN_COMPILER_VERSION") is None
