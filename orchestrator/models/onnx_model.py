"""Read an ONNX model without running it: its inputs and outputs, and its operations per inference.

Counting follows ``opcount`` (multiply + add = 2): a convolution is 2 · output elements ·
kernel area · input channels per group, a Gemm/MatMul 2 · M · N · K, a pool one operation per
window element, an elementwise op one per output element. Shapes come from ONNX's own shape
inference, so a user's model with symbolic batch dimensions counts at batch 1.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .inspect import ModelFormatError, ModelInfo
from .opcount import OpCount

_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh",
                "Clip", "HardSwish", "HardSigmoid", "Abs", "Exp", "Sqrt", "Reciprocal", "Pow", "Erf"}
_REDUCTIONS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "Softmax",
               "LogSoftmax", "LRN", "BatchNormalization", "InstanceNormalization", "LayerNormalization"}
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
           11: "float64", 16: "bfloat16"}


def looks_like_onnx(data: bytes) -> bool:
    """Cheap first check: a ModelProto starts with field 1 (ir_version, a varint), as every writer orders it."""
    return len(data) > 16 and data[0] == 0x08


def parse(data: bytes) -> Any:
    import onnx  # heavy (protobuf): only when a file is ONNX
    from google.protobuf.message import DecodeError

    if not looks_like_onnx(data):
        raise ModelFormatError("not an ONNX model (no ModelProto ir_version field at the start)")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"the ONNX protobuf is damaged or truncated ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise ModelFormatError("the ONNX model has no graph nodes")
    return model


def inspect_onnx(data: bytes) -> ModelInfo:
    model = parse(data)
    initialized = {t.name for t in model.graph.initializer}
    inputs = [_value(v) for v in model.graph.input if v.name not in initialized]
    return ModelInfo(inputs=inputs, outputs=[_value(v) for v in model.graph.output], custom_ops=[])


def _value(value: Any) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": _DTYPES.get(tensor.elem_type, str(tensor.elem_type))}


def count_onnx_ops(data: bytes) -> OpCount:
    """Operations per inference; ValueError (ModelFormatError) for bytes that are not a readable ONNX model."""
    import onnx

    model = parse(data)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a model shape inference cannot follow still counts what it can
        inferred = model
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)
    for tensor in inferred.graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    result = OpCount(by_op=Counter(), operators=Counter(), uncounted=Counter())
    for node in inferred.graph.node:
        result.operators[node.op_type] += 1
        ins = [shapes.get(name) for name in node.input]
        outs = [shapes.get(name) for name in node.output]
        ops = _ops_of(node, ins, outs)
        if ops is None:
            result.uncounted[node.op_type] += 1
        else:
            result.by_op[node.op_type] += ops
            result.total += ops
    return result


def _elements(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape else 0


def _attribute(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _ops_of(node: Any, ins: list, outs: list) -> int | None:
    op = node.op_type
    out = outs[0] if outs else None
    if op == "Conv" and len(ins) >= 2 and ins[1] and len(ins[1]) >= 3 and out:
        _, in_per_group, *kernel = ins[1]
        return 2 * _elements(out) * in_per_group * math.prod(kernel)
    if op == "ConvTranspose" and len(ins) >= 2 and ins[1] and len(ins[1]) >= 3 and ins[0]:
        _, out_per_group, *kernel = ins[1]  # weights (C_in, C_out / group, kH, kW): each input feeds a window
        return 2 * _elements(ins[0]) * out_per_group * math.prod(kernel)
    if op == "Gemm" and len(ins) >= 2 and ins[0] and ins[1] and out:
        depth = ins[0][0] if _attribute(node, "transA", 0) else ins[0][-1]
        return 2 * _elements(out) * depth
    if op == "MatMul" and len(ins) >= 2 and ins[0] and out:
        return 2 * _elements(out) * ins[0][-1]
    if op in ("MaxPool", "AveragePool", "LpPool") and out:
        return _elements(out) * math.prod(_attribute(node, "kernel_shape", [1]))
    if op in _ELEMENTWISE and out:
        return _elements(out)
    if op in _REDUCTIONS and ins and ins[0]:
        return _elements(ins[0])
    return None
