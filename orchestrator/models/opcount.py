"""Operations per inference of a .tflite model, counted from its graph.

A multiply-accumulate counts as two operations (multiply + add), the convention
of SEEDS §2: one 128×128 7×7 32→32 convolution is 128·128·7·7·32·32·2 =
1,644,167,168 operations. Ops whose cost is not arithmetic in this sense
(reshape, quantize, custom post-processing) are listed as uncounted.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field

from .flatbuild import fb

_BuiltinOperator = fb["BuiltinOperator"].BuiltinOperator
OP_NAMES = {value: key for key, value in vars(_BuiltinOperator).items() if not key.startswith("_")}

_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "RELU", "RELU6",
                "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU", "ABS", "EXP", "SQRT", "RSQRT"}
_REDUCTIONS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "SOFTMAX", "L2_NORMALIZATION"}


@dataclass
class OpCount:
    total: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    operators: Counter[str] = field(default_factory=Counter)
    uncounted: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "by_op": dict(self.by_op), "operators": dict(self.operators),
                "uncounted": dict(self.uncounted)}


def count_ops(data: bytes) -> OpCount:
    """Count the model's operations; ``ValueError`` when the bytes are not a readable TFLite model."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = fb["Model"].Model.GetRootAs(data, 0)
        return _count(model)
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:  # reads past the end
        raise ValueError(f"damaged TFLite flatbuffer: {exc}") from None


def _op_name(model, code_index: int) -> str:
    code = model.OperatorCodes(code_index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = OP_NAMES.get(builtin, f"OP_{builtin}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        return custom.decode("utf-8", "replace") if custom else "CUSTOM"
    return name


def _count(model) -> OpCount:
    result = OpCount()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)

        def shape(tensor_index: int, graph=graph) -> tuple[int, ...]:
            if tensor_index < 0:
                return ()
            return tuple(int(d) for d in graph.Tensors(tensor_index).ShapeAsNumpy()) \
                if graph.Tensors(tensor_index).ShapeLength() else ()

        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = _op_name(model, op.OpcodeIndex())
            result.operators[name] += 1
            inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            ops = _ops_of(name, [shape(i) for i in inputs], [shape(i) for i in outputs], op)
            if ops is None:
                result.uncounted[name] += 1
            else:
                result.by_op[name] += ops
                result.total += ops
    return result


def ops_of(name: str, ins: list[tuple[int, ...]], outs: list[tuple[int, ...]], op) -> int | None:
    """Operations of one op from its name and tensor shapes (None: not arithmetic); the stand-in compiler
    counts what it maps with it."""
    return _ops_of(name, ins, outs, op)


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 0


def _ops_of(name: str, ins: list[tuple[int, ...]], outs: list[tuple[int, ...]], op) -> int | None:
    out = outs[0] if outs else ()
    if name == "CONV_2D" and len(ins) >= 2 and len(ins[1]) == 4:
        _, kh, kw, in_c = ins[1]
        return 2 * _elements(out) * kh * kw * in_c
    if name == "DEPTHWISE_CONV_2D" and len(ins) >= 2 and len(ins[1]) == 4:
        _, kh, kw, _ = ins[1]
        return 2 * _elements(out) * kh * kw
    if name == "TRANSPOSE_CONV" and len(ins) >= 3 and len(ins[1]) == 4:
        out_c, kh, kw, _ = ins[1]
        return 2 * _elements(ins[2]) * kh * kw * out_c
    if name == "FULLY_CONNECTED" and len(ins) >= 2 and len(ins[1]) == 2:
        units, depth = ins[1]
        return 2 * (_elements(ins[0]) // depth if depth else 0) * units * depth
    if name == "BATCH_MATMUL" and len(ins) >= 2 and ins[0]:
        return 2 * _elements(out) * ins[0][-1]
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        options = fb["Pool2DOptions"].Pool2DOptions()
        table = op.BuiltinOptions()
        if table is None:
            return None
        options.Init(table.Bytes, table.Pos)
        return _elements(out) * options.FilterHeight() * options.FilterWidth()
    if name in _ELEMENTWISE:
        return _elements(out)
    if name in _REDUCTIONS:
        return _elements(ins[0]) if ins else None
    return None
