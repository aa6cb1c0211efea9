"""edgetpu_compiler's console and log forms, as published outputs of 2.0, 2.1, 14.1, 15.0 and 16.0 print them.

Each text below is written from the facts of those outputs (issue 14), and the expected values from those
facts, not from what the parser returns."""

from __future__ import annotations

import pytest

from orchestrator.models.edgetpu_log import (
    log_gap,
    parse_console,
    parse_operation_log,
    parse_operation_logs,
    parse_size,
)

MIB = 1024 ** 2

# Co-compiling three models under 16.0: "Models" (plural), one block each, remaining shared by the group,
# the third model left with nothing on-chip.
CO_COMPILED = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Models compiled successfully in 2563 ms.

Input model: inception_v1_224_quant.tflite
Input size: 6.38MiB
Output model: inception_v1_224_quant_edgetpu.tflite
Output size: 6.98MiB
On-chip memory used for caching model parameters: 2.27MiB
On-chip memory remaining for caching model parameters: 1.07MiB
Off-chip memory used for streaming uncached model parameters: 4.05MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 83
Operation log: inception_v1_224_quant_edgetpu.log
See the operation log file for individual operation details.

Input model: mobilenet_v2_1.0_224_quant.tflite
Input size: 3.41MiB
Output model: mobilenet_v2_1.0_224_quant_edgetpu.tflite
Output size: 3.89MiB
On-chip memory used for caching model parameters: 2.00MiB
On-chip memory remaining for caching model parameters: 1.07MiB
Off-chip memory used for streaming uncached model parameters: 1.56MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 65
Operation log: mobilenet_v2_1.0_224_quant_edgetpu.log
See the operation log file for individual operation details.

Input model: mobilenet_v1_1.0_224_quant.tflite
Input size: 4.08MiB
Output model: mobilenet_v1_1.0_224_quant_edgetpu.tflite
Output size: 4.32MiB
On-chip memory used for caching model parameters: 0.00B
On-chip memory remaining for caching model parameters: 1.07MiB
Off-chip memory used for streaming uncached model parameters: 4.21MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 31
Operation log: mobilenet_v1_1.0_224_quant_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# --num_segments 3 under 16.0: segment 0 compiles, segment 1 fails on its activations.
SEGMENT_FAILS = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 702 ms.

Input model: efficientdet_lite3_512_ptq.tflite
Input size: 11.46MiB
Output model: out/efficientdet_lite3_512_ptq_segment_0_of_3_edgetpu.tflite
Output size: 4.25MiB
On-chip memory used for caching model parameters: 3.91MiB
On-chip memory remaining for caching model parameters: 3.75MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 112
Operation log: out/efficientdet_lite3_512_ptq_segment_0_of_3_edgetpu.log
See the operation log file for individual operation details.
ERROR: Restored original execution plan after delegate application failure.
Compilation failed: Compilation failed due to large activation tensors in model.
Compilation child process completed within timeout period.
Compilation failed!
"""

# Delegate search (-d) under 16.0: two failed attempts, each with its intermediate tensors, then success.
DELEGATE_SEARCH = """Edge TPU Compiler version 16.0.384591198
Searching for valid delegate with step 10
Started a compilation timeout timer of 180 seconds.
ERROR: Restored original execution plan after delegate application failure.
Compilation failed: Compilation failed due to large activation tensors in model.
Compilation child process completed within timeout period.
Compilation failed!
Intermediate tensors: StatefulPartitionedCall:0, StatefulPartitionedCall:1
Started a compilation timeout timer of 180 seconds.
ERROR: Restored original execution plan after delegate application failure.
Compilation failed: Compilation failed due to large activation tensors in model.
Compilation child process completed within timeout period.
Compilation failed!
Intermediate tensors: StatefulPartitionedCall:2
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 3012 ms.

Input model: yolo.tflite
Input size: 7.03MiB
Output model: yolo_edgetpu.tflite
Output size: 7.60MiB
On-chip memory used for caching model parameters: 6.50MiB
On-chip memory remaining for caching model parameters: 512.00KiB
Off-chip memory used for streaming uncached model parameters: 448.25KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 250
Operation log: yolo_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 240
Number of operations that will run on CPU: 10
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# 16.0 with -t 300 on a model whose every operation maps: no TPU/CPU operation count lines.
ALL_MAPPED_16 = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 300 seconds.

Model compiled successfully in 455 ms.

Input model: mobilenet_v1_1.0_224_quant.tflite
Input size: 4.08MiB
Output model: mobilenet_v1_1.0_224_quant_edgetpu.tflite
Output size: 4.32MiB
On-chip memory used for caching model parameters: 4.21MiB
On-chip memory remaining for caching model parameters: 2.93MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 31
Operation log: mobilenet_v1_1.0_224_quant_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# 2.1: used then remaining, sizes in B and KiB, no outcome line.
V21 = """Edge TPU Compiler version 2.1.302470888

Model compiled successfully in 61 ms.

Input model: tiny.tflite
Input size: 900B
Output model: tiny_edgetpu.tflite
Output size: 20.50KiB
On-chip memory used for caching model parameters: 12.25KiB
On-chip memory remaining for caching model parameters: 7.95MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 3
Operation log: tiny_edgetpu.log
See the operation log file for individual operation details.
"""

# Every operation on the CPU: still a success.
ZERO_SUBGRAPHS = """Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 20 ms.

Input model: argmax.tflite
Input size: 1.20KiB
Output model: argmax_edgetpu.tflite
Output size: 1.20KiB
On-chip memory used for caching model parameters: 0.00B
On-chip memory remaining for caching model parameters: 0.00B
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 0
Total number of operations: 1
Operation log: argmax_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 0
Number of operations that will run on CPU: 1
See the operation log file for individual operation details.
"""

LOG_A = """Edge TPU Compiler version 16.0.384591198
Input: a.tflite
Output: a_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        3          Mapped to Edge TPU
ARG_MAX                        1          Operation not supported
"""

LOG_B = """Edge TPU Compiler version 16.0.384591198
Input: b.tflite
Output: b_edgetpu.tflite

Operator                       Count      Status

FULLY_CONNECTED                2          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
"""


def test_co_compiled_group_shares_one_cache_and_a_later_model_can_get_nothing_on_chip() -> None:
    run = parse_console(CO_COMPILED)
    assert run.succeeded and run.co_compiled and len(run.models) == 3
    first, second, third = run.models
    assert (first.on_chip_used_bytes, second.on_chip_used_bytes) == (round(2.27 * MIB), round(2.00 * MIB))
    assert third.on_chip_used_bytes == 0 and third.off_chip_used_bytes == round(4.21 * MIB)
    # The published example: 2.27 MiB + 2.00 MiB used + 1.07 MiB remaining once = a 5.34 MiB cache.
    (group,) = run.groups()
    expected = round(2.27 * MIB) + round(2.00 * MIB) + round(1.07 * MIB)
    assert group["capacity_bytes"] == expected and abs(expected - 5.34 * MIB) < 0.01 * MIB
    assert all(m.on_chip_capacity_bytes == expected for m in run.models)  # not used + remaining per model
    assert group["models"] == ["inception_v1_224_quant.tflite", "mobilenet_v2_1.0_224_quant.tflite",
                               "mobilenet_v1_1.0_224_quant.tflite"]
    assert first.tpu_ops == 83 and first.cpu_ops == 0  # 16.0 prints no counts when every op maps


def test_a_segment_that_fails_after_another_succeeded_fails_the_run_with_the_compilers_words() -> None:
    run = parse_console(SEGMENT_FAILS)
    assert not run.succeeded
    (segment,) = run.models
    assert segment.segment == (0, 3) and segment.total_ops == 112
    assert "Compilation failed due to large activation tensors in model." in (run.failure or "")
    assert "Restored original execution plan after delegate application failure." in (run.failure or "")


def test_delegate_search_counts_the_last_outcome() -> None:
    run = parse_console(DELEGATE_SEARCH)
    assert run.outcomes == [False, False, True] and run.succeeded and run.failure is None
    assert run.delegate_search_step == 10
    assert run.intermediate_tensors == ["StatefulPartitionedCall:0, StatefulPartitionedCall:1",
                                        "StatefulPartitionedCall:2"]
    (model,) = run.models
    assert (model.tpu_ops, model.cpu_ops, model.total_ops) == (240, 10, 250)
    assert model.on_chip_remaining_bytes == 512 * 1024 and model.off_chip_used_bytes == round(448.25 * 1024)


def test_16_prints_its_timer_and_omits_the_counts_when_every_operation_maps() -> None:
    run = parse_console(ALL_MAPPED_16)
    assert run.timeout_s == 300 and run.child_completed and run.succeeded
    (model,) = run.models
    assert (model.tpu_ops, model.cpu_ops) == (31, 0)
    assert model.on_chip_capacity_bytes == round(4.21 * MIB) + round(2.93 * MIB)
    assert parse_console(CO_COMPILED).timeout_s == 180


def test_2_1_prints_used_then_remaining_in_bytes_and_kib_and_no_outcome_line() -> None:
    run = parse_console(V21)
    assert run.succeeded and run.outcomes == [] and run.timeout_s is None
    (model,) = run.models
    assert model.era == "remaining" and model.input_size_bytes == 900
    assert model.on_chip_used_bytes == round(12.25 * 1024) and model.output_size_bytes == round(20.5 * 1024)
    assert model.on_chip_capacity_bytes == round(12.25 * 1024) + round(7.95 * MIB)
    assert model.tpu_ops is None  # 2.1 prints no split and no table here: unknown, not zero
    assert parse_size("0.00B") == 0


def test_zero_subgraphs_is_a_success_that_warns_nothing_runs_on_the_edge_tpu() -> None:
    run = parse_console(ZERO_SUBGRAPHS)
    assert run.succeeded
    (model,) = run.models
    assert model.nothing_on_tpu and (model.tpu_ops, model.cpu_ops) == (0, 1)
    assert run.warnings == ["argmax.tflite: Number of Edge TPU subgraphs: 0, nothing runs on the Edge TPU"]


@pytest.mark.parametrize(("text", "words"), [
    (("Edge TPU Compiler version 16.0.384591198\n\nInvalid model: f.tflite\nModel not quantized\n"
     "Compilation child process completed within timeout period.\nCompilation failed!\n"), "Model not quantized"),
    ("Edge TPU Compiler version 2.0.267685300\nInvalid model: x.tflite\nModel could not be parsed\n",
     "Model could not be parsed"),
    (("Edge TPU Compiler version 14.1.317412892\nERROR: Didn't find op for builtin opcode 'RESIZE_NEAREST_NEIGHBOR' "
     "version '3'\nERROR: Registration failed.\nInvalid model: y.tflite\nModel could not be parsed\n"),
     "Didn't find op for builtin opcode 'RESIZE_NEAREST_NEIGHBOR' version '3'"),
    ("Edge TPU Compiler version 15.0.340273435\nInternal compiler error. Aborting!\n",
     "Internal compiler error. Aborting!"),
])
def test_failures_keep_the_compilers_own_words(text: str, words: str) -> None:
    run = parse_console(text)
    assert not run.succeeded and not run.models
    assert words in (run.failure or "")


def test_concatenated_operation_logs_stay_apart_and_a_truncated_one_says_so() -> None:
    (first_version, a), (_, b) = parse_operation_logs(LOG_A + LOG_B)
    assert first_version == "16.0.384591198"
    assert (a.input, a.tpu_ops, a.cpu_ops) == ("a.tflite", 3, 1)
    assert (b.input, b.tpu_ops, b.cpu_ops) == ("b.tflite", 3, 0)
    # Without the version lines (someone kept only the tables), the Input: lines still separate them.
    bare = [s for _, s in parse_operation_logs("\n".join(LOG_A.splitlines()[1:] + LOG_B.splitlines()[1:]))]
    assert [s.input for s in bare] == ["a.tflite", "b.tflite"]
    with pytest.raises(ValueError, match="2 operation logs"):
        parse_operation_log(LOG_A + LOG_B)
    assert log_gap(a, 4) is None  # 3 on the TPU + 1 on the CPU: the whole model
    truncated = LOG_A.rsplit("\n", 2)[0] + "\n"  # the ARG_MAX row cut off
    _, cut = parse_operation_log(truncated)
    assert "truncated" in (log_gap(cut, 4) or "") and "3 of the model's 4" in (log_gap(cut, 4) or "")
