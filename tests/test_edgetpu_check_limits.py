"""`farm models check` applies Coral's documented per-op limits ("Supported operations", Notes column),
each on a small real graph that crosses the limit and one that stays within it."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.models.edgetpu_check import MAPPED, MORE_THAN_ONE_SUBGRAPH, check_model
from orchestrator.models.edgetpu_limits import LIMITATION
from orchestrator.models.flatbuild import BuiltinOperator, BuiltinOptions, GraphBuilder, Padding, Quant, TensorType

Q = Quant([0.05], [0])


def one_op(op: int, shape_in: tuple[int, ...], shape_out: tuple[int, ...], extra: list[np.ndarray] | None = None,
           options: int = BuiltinOptions.NONE, **values: object) -> bytes:
    graph = GraphBuilder("one op")
    x = graph.tensor("x", shape_in, TensorType.INT8, Q)
    arguments = [graph.tensor(f"arg{n}", a.shape, TensorType.INT32 if a.dtype == np.int32 else TensorType.INT8,
                              None if a.dtype == np.int32 else Q, data=a) for n, a in enumerate(extra or [])]
    y = graph.tensor("y", shape_out, TensorType.INT8, Q)
    graph.op(op, [x, *arguments], [y], options, **values)
    return graph.finish([x], [y])


def verdict(data: bytes) -> str:
    (only,) = check_model(data).ops
    return only.status


def test_softmax_maps_only_a_1d_input_of_at_most_16000_elements() -> None:
    assert verdict(one_op(BuiltinOperator.SOFTMAX, (1, 1000), (1, 1000), options=BuiltinOptions.SoftmaxOptions,
                          Beta=1.0)) == MAPPED
    assert verdict(one_op(BuiltinOperator.SOFTMAX, (1, 16001), (1, 16001), options=BuiltinOptions.SoftmaxOptions,
                          Beta=1.0)) == LIMITATION
    assert verdict(one_op(BuiltinOperator.SOFTMAX, (1, 10, 10), (1, 10, 10), options=BuiltinOptions.SoftmaxOptions,
                          Beta=1.0)) == LIMITATION


@pytest.mark.parametrize(("axes", "expected"), [([1, 2], MAPPED), ([3], LIMITATION), ([0], LIMITATION)])
def test_mean_reduces_only_along_x_and_y(axes: list[int], expected: str) -> None:
    kept = tuple(1 if i in axes else d for i, d in enumerate((1, 8, 8, 4)))
    data = one_op(BuiltinOperator.MEAN, (1, 8, 8, 4), kept, [np.array(axes, dtype=np.int32)],
                  BuiltinOptions.ReducerOptions, KeepDims=True)
    assert verdict(data) == expected


def conv(dilation_h: int, dilation_w: int) -> bytes:
    graph = GraphBuilder("dilated conv")
    x = graph.tensor("x", (1, 16, 16, 3), TensorType.INT8, Q)
    w = graph.tensor("w", (4, 3, 3, 3), TensorType.INT8, Quant([0.02], [0]), data=np.ones((4, 3, 3, 3)))
    b = graph.tensor("b", (4,), TensorType.INT32, data=np.zeros(4))
    y = graph.tensor("y", (1, 16, 16, 4), TensorType.INT8, Q)
    graph.op(BuiltinOperator.CONV_2D, [x, w, b], [y], BuiltinOptions.Conv2DOptions, Padding=Padding.SAME,
             StrideW=1, StrideH=1, DilationHFactor=dilation_h, DilationWFactor=dilation_w)
    return graph.finish([x], [y])


def test_conv_must_use_the_same_dilation_in_x_and_y() -> None:
    assert verdict(conv(2, 2)) == MAPPED
    assert verdict(conv(2, 1)) == LIMITATION


def test_concatenation_takes_a_constant_only_as_zero_padding_of_two_inputs() -> None:
    zeros = np.zeros((1, 4, 4, 2), dtype=np.int8)
    assert verdict(one_op(BuiltinOperator.CONCATENATION, (1, 4, 4, 2), (1, 4, 4, 4), [zeros],
                          BuiltinOptions.ConcatenationOptions, Axis=3)) == MAPPED
    assert verdict(one_op(BuiltinOperator.CONCATENATION, (1, 4, 4, 2), (1, 4, 4, 4), [zeros + 1],
                          BuiltinOptions.ConcatenationOptions, Axis=3)) == LIMITATION


def test_a_resize_within_its_undocumented_limits_maps_with_a_caution_and_one_from_1x1_stays() -> None:
    size = np.array([8, 8], dtype=np.int32)
    upscale = check_model(one_op(BuiltinOperator.RESIZE_BILINEAR, (1, 4, 4, 8), (1, 8, 8, 8), [size]))
    assert upscale.ops[0].status == MAPPED and "may stay on the CPU" in upscale.cautions[0]
    broadcast = one_op(BuiltinOperator.RESIZE_BILINEAR, (1, 1, 1, 8), (1, 8, 8, 8), [size])
    assert verdict(broadcast) == LIMITATION


def test_an_op_that_depends_on_the_cpu_stays_there_even_when_supported() -> None:
    graph = GraphBuilder("cpu then tpu")
    x = graph.tensor("x", (1, 8, 8, 4), TensorType.INT8, Q)
    axis = graph.tensor("axis", (1,), TensorType.INT32, data=np.array([3]))
    m = graph.tensor("m", (1, 8, 8, 1), TensorType.INT8, Q)
    graph.op(BuiltinOperator.MEAN, [x, axis], [m], BuiltinOptions.ReducerOptions, KeepDims=True)  # over channels
    y = graph.tensor("y", (1, 8, 8, 1), TensorType.INT8, Q)
    graph.op(BuiltinOperator.ADD, [m, m], [y], BuiltinOptions.AddOptions)
    z = graph.tensor("z", (1, 8, 8, 4), TensorType.INT8, Q)
    graph.op(BuiltinOperator.ADD, [x, x], [z], BuiltinOptions.AddOptions)  # independent of the MEAN: maps
    report = check_model(graph.finish([x], [y, z]))
    assert [(v.op, v.status, v.depends_on) for v in report.ops] == [
        ("MEAN", LIMITATION, None), ("ADD", MORE_THAN_ONE_SUBGRAPH, 0), ("ADD", MAPPED, None)]
    assert report.ended_by == 0
