"""Will this model go to the Edge TPU? A check before compiling, from the graph alone.

The rules are the Coral documentation's model requirements (SEEDS §5): 8-bit quantized tensors,
sizes constant at compile time, constant parameters, at most three dimensions larger than one,
only the operations the compiler maps, and those within their documented limits (edgetpu_limits). Like the
compiler, the check partitions the graph once: the first operation that cannot map ends the Edge
TPU subgraph, and it and everything that depends on it run on the CPU, even operations the Edge
TPU supports ("More than one subgraph is not supported"). So an unsupported op early in a model
costs far more than one at its end. The result reads like the compiler's ``Operator Count Status``.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .edgetpu_limits import SIZE_DEPENDENT, describe_sizes, limit
from .flatbuild import fb
from .inspect import EDGETPU_CUSTOM_OP, ModelFormatError
from .opcount import _op_name

MAPPED = "Mapped to Edge TPU"
UNSUPPORTED_OP = "Operation not supported"
UNSUPPORTED_TYPE = "Operation is working on an unsupported data type"
MORE_THAN_ONE_SUBGRAPH = "More than one subgraph is not supported"
UNSUPPORTED_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
DYNAMIC = "Tensor has dynamic size (sizes must be constant at compile time)"
NON_CONSTANT = "Parameters are not constant (weights and biases must be constant at compile time)"
FUSED_ACTIVATION = "Fused activation function is not supported for this operation"

# The operations the compiler maps (Coral "Supported operations" table, compiler 16).
SUPPORTED = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN",
    "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB",
    "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
_NO_FUSED_ACTIVATION = {"AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
                        "CONCATENATION": "ConcatenationOptions"}
_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
_QUANTIZED = {"int8", "uint8"}
# int32 carries biases and shape/axis/padding arguments; int16 and int64 only such arguments.
_ARGUMENT_TYPES = {"int32", "int64", "int16", "bool"}
_TYPE_NAMES = {value: name.lower() for name, value in vars(fb["TensorType"].TensorType).items() if name.isupper()}


@dataclass
class OpVerdict:
    index: int
    op: str
    status: str
    detail: str = ""
    depends_on: int | None = None  # the index of the CPU op that ended the Edge TPU subgraph above it

    @property
    def label(self) -> str:
        return f"{self.op} #{self.index}"

    @property
    def on_tpu(self) -> bool:
        return self.status == MAPPED


@dataclass
class CheckReport:
    ops: list[OpVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # model-wide reasons, worst first
    quantized: bool = True
    already_compiled: bool = False
    cautions: list[str] = field(default_factory=list)  # mapped, but the documented limit gives no sizes
    ended_by: int | None = None  # the first op the compiler cannot map: the Edge TPU subgraph ends there

    def cpu_by_op(self) -> Counter[str]:
        return Counter(verdict.op for verdict in self.ops if not verdict.on_tpu)

    def tpu_by_op(self) -> Counter[str]:
        return Counter(verdict.op for verdict in self.ops if verdict.on_tpu)

    @property
    def tpu_ops(self) -> int:
        return sum(1 for verdict in self.ops if verdict.on_tpu)

    @property
    def cpu_ops(self) -> int:
        return len(self.ops) - self.tpu_ops

    @property
    def compatible(self) -> bool:
        """True when every operation maps: the whole model runs on the Edge TPU."""
        return bool(self.ops) and self.cpu_ops == 0 and not self.problems

    def table(self) -> list[tuple[str, int, str]]:
        """(operator, count, status) rows, as the compiler's operation log groups them."""
        counted = Counter((verdict.op, verdict.status) for verdict in self.ops)
        return [(op, count, status) for (op, status), count in sorted(counted.items())]

    def fallbacks(self) -> list[tuple[str, int, str]]:
        """The CPU rows with why, one line per (operator, status), with the first case's detail."""
        counted: Counter[tuple[str, str]] = Counter()
        details: dict[tuple[str, str], str] = {}
        for verdict in self.ops:
            if not verdict.on_tpu:
                counted[verdict.op, verdict.status] += 1
                details.setdefault((verdict.op, verdict.status), verdict.detail)
        return [(op, count, f"{status} ({'e.g. ' if count > 1 else ''}{details[op, status]})"
                 if details[op, status] else status) for (op, status), count in sorted(counted.items())]

    def as_dict(self) -> dict[str, Any]:
        return {"compatible": self.compatible, "quantized": self.quantized, "problems": self.problems,
                "tpu_ops": self.tpu_ops, "cpu_ops": self.cpu_ops, "cautions": self.cautions,
                "ended_by": None if self.ended_by is None else self.ops[self.ended_by].label,
                "operators": [{"op": op, "count": n, "status": s} for op, n, s in self.table()],
                "fallbacks": [{"op": op, "count": n, "reason": r} for op, n, r in self.fallbacks()]}


def check_model(data: bytes) -> CheckReport:
    """Check a .tflite model against the Edge TPU's requirements; ``ModelFormatError`` if unreadable."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError("not a TFLite model (the file lacks the 'TFL3' flatbuffer identifier)")
    try:
        return _check(fb["Model"].Model.GetRootAs(data, 0))
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise ModelFormatError(f"the TFLite flatbuffer is damaged or truncated ({type(exc).__name__}: {exc})") \
            from None


class _Graph:
    def __init__(self, model: Any, graph: Any) -> None:
        self.model = model
        self.graph = graph

    def dtype(self, index: int) -> str:
        return _TYPE_NAMES.get(self.graph.Tensors(index).Type(), "unknown")

    def shape(self, index: int) -> list[int]:
        tensor = self.graph.Tensors(index)
        if tensor.ShapeSignatureLength():
            return [int(d) for d in tensor.ShapeSignatureAsNumpy()]
        return [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []

    def constant(self, index: int) -> bool:
        buffer = self.graph.Tensors(index).Buffer()
        return 0 < buffer < self.model.BuffersLength() and self.model.Buffers(buffer).DataLength() > 0

    def name(self, index: int) -> str:
        return (self.graph.Tensors(index).Name() or b"").decode("utf-8", "replace")


def _check(model: Any) -> CheckReport:
    report = CheckReport()
    if model.SubgraphsLength() < 1:
        raise ModelFormatError("the model has no subgraph")
    if model.SubgraphsLength() > 1:
        report.problems.append(f"the model has {model.SubgraphsLength()} subgraphs (control flow); "
                               "only the first can be compiled")
    g = _Graph(model, model.Subgraphs(0))
    graph = g.graph
    cpu_roots: dict[int, int] = {}  # tensor -> the op that ended the Edge TPU subgraph above it
    quantized_compute = float_compute = 0
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        name = _op_name(model, op.OpcodeIndex())
        inputs = [int(i) for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
        outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if name == EDGETPU_CUSTOM_OP:
            report.already_compiled = True
        status, detail = _verdict(g, op, name, inputs, outputs)
        data_types = {g.dtype(t) for t in inputs + outputs if not g.constant(t)} - _ARGUMENT_TYPES
        if name in _WEIGHTED or name in ("ADD", "MUL", "SOFTMAX", "UNIDIRECTIONAL_SEQUENCE_LSTM"):
            if data_types & _QUANTIZED:
                quantized_compute += 1
            elif "float32" in data_types or "float16" in data_types:
                float_compute += 1
        verdict = OpVerdict(index, name, status, detail)
        upstream = [cpu_roots[t] for t in inputs if t in cpu_roots]
        if upstream:
            verdict.depends_on = min(upstream)
            if status == MAPPED:
                # Coral: the compiler partitions once, so a supported op after the CPU op stays there.
                verdict.status, verdict.detail = MORE_THAN_ONE_SUBGRAPH, \
                    f"depends on {report.ops[verdict.depends_on].label}"
        elif status == MAPPED and name in SIZE_DEPENDENT:
            report.cautions.append(f"{verdict.label} ({describe_sizes(g, inputs[:1], outputs[:1])}) is predicted to map, "
                                   "but Coral documents that depending on input/output size it may stay on the "
                                   "CPU, without giving the sizes")
        if not verdict.on_tpu:
            if report.ended_by is None:
                report.ended_by = index
            root = verdict.depends_on if verdict.depends_on is not None else index
            cpu_roots.update((t, root) for t in outputs)
        report.ops.append(verdict)
    if report.already_compiled:
        report.problems.insert(0, "the model is already compiled for the Edge TPU (it contains "
                                  f"'{EDGETPU_CUSTOM_OP}'); compile its source model instead")
    if float_compute and not quantized_compute:
        report.quantized = False
        report.problems.insert(0, "the model is not quantized: its computation is float32, and the Edge TPU "
                                  "runs only 8-bit integer models. Convert it with full-integer quantization "
                                  "(quantization-aware training, or post-training quantization with a "
                                  "representative dataset and int8/uint8 ops); the compiler refuses it as it is")
    elif float_compute:
        report.quantized = False
        report.problems.append(f"{float_compute} computing operation(s) are still float32 (partial "
                               "quantization): they run on the CPU")
    return report


def _verdict(g: _Graph, op: Any, name: str, inputs: list[int], outputs: list[int]) -> tuple[str, str]:
    if name not in SUPPORTED:
        if name == EDGETPU_CUSTOM_OP:
            return UNSUPPORTED_OP, "already compiled for the Edge TPU"
        builtin = max(g.model.OperatorCodes(op.OpcodeIndex()).BuiltinCode(),
                      g.model.OperatorCodes(op.OpcodeIndex()).DeprecatedBuiltinCode())
        if builtin == 32:  # CUSTOM: the compiler reports custom ops by data type, as in SEEDS §2
            return UNSUPPORTED_TYPE, f"custom op {name} runs on the CPU"
        return UNSUPPORTED_OP, f"{name} is not in the Edge TPU's operation set"
    for tensor in inputs + outputs:
        dtype = g.dtype(tensor)
        constant = g.constant(tensor)
        if dtype not in _QUANTIZED and dtype not in _ARGUMENT_TYPES:
            return UNSUPPORTED_TYPE, f"tensor '{g.name(tensor)}' is {dtype}, not int8/uint8"
        if dtype in ("int64", "int16") and not constant:
            return UNSUPPORTED_TYPE, f"tensor '{g.name(tensor)}' is {dtype}"
        shape = g.shape(tensor)
        if any(d < 0 for d in shape):
            return DYNAMIC, f"tensor '{g.name(tensor)}' has shape {shape}"
        if not constant and any(d > 1 for d in shape[:-3]):  # filters are 4-D by nature
            return UNSUPPORTED_RANK, f"tensor '{g.name(tensor)}' has shape {shape}"
    if name in _WEIGHTED and len(inputs) >= 2:
        parameters = inputs[1:3] if name != "TRANSPOSE_CONV" else inputs[1:2]
        for tensor in parameters:
            if not g.constant(tensor):
                return NON_CONSTANT, f"tensor '{g.name(tensor)}' is computed at run time"
    limited = limit(g, op, name, inputs, outputs)
    if limited is not None:
        return limited
    options_name = _NO_FUSED_ACTIVATION.get(name)
    if options_name is not None and op.BuiltinOptions() is not None:
        table = op.BuiltinOptions()
        options = getattr(fb[options_name], options_name)()
        options.Init(table.Bytes, table.Pos)
        if options.FusedActivationFunction() != 0:
            return FUSED_ACTIVATION, ""
    return MAPPED, ""

