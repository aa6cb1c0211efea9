"""Write int8 TFLite flatbuffers with the `tflite` package's generated builders.

No TensorFlow: the generators in ``synthetic`` describe a graph with
:class:`GraphBuilder` and get back the bytes of a real ``.tflite`` file that
tflite-runtime loads and runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np

# `import tflite.Tensor` yields the class re-exported by tflite/__init__; the
# builder functions live in the module of the same name.
_MODULES = ("Buffer", "Model", "SubGraph", "Tensor", "Operator", "OperatorCode", "QuantizationParameters",
            "Conv2DOptions", "DepthwiseConv2DOptions", "FullyConnectedOptions", "Pool2DOptions", "PadOptions",
            "ReducerOptions", "ReshapeOptions", "AddOptions", "SoftmaxOptions", "ConcatenationOptions",
            "StridedSliceOptions", "PackOptions", "ResizeBilinearOptions",
            "BuiltinOperator", "BuiltinOptions", "TensorType", "Padding", "ActivationFunctionType")
fb = {name: importlib.import_module(f"tflite.{name}") for name in _MODULES}

BuiltinOperator = fb["BuiltinOperator"].BuiltinOperator
BuiltinOptions = fb["BuiltinOptions"].BuiltinOptions
TensorType = fb["TensorType"].TensorType
Padding = fb["Padding"].Padding
Activation = fb["ActivationFunctionType"].ActivationFunctionType

_NUMPY_TYPES = {TensorType.INT8: np.int8, TensorType.INT32: np.int32, TensorType.UINT8: np.uint8,
                TensorType.FLOAT32: np.float32, TensorType.INT64: np.int64}

# Operator versions that tflite-runtime 2.11 and 2.14 both register for int8 kernels.
OP_VERSIONS = {
    BuiltinOperator.CONV_2D: 3, BuiltinOperator.DEPTHWISE_CONV_2D: 3, BuiltinOperator.FULLY_CONNECTED: 4,
    BuiltinOperator.PAD: 2, BuiltinOperator.AVERAGE_POOL_2D: 2, BuiltinOperator.MAX_POOL_2D: 2,
    BuiltinOperator.MEAN: 2, BuiltinOperator.RESHAPE: 1, BuiltinOperator.ADD: 2, BuiltinOperator.SOFTMAX: 2,
    BuiltinOperator.CONCATENATION: 2, BuiltinOperator.LOGISTIC: 2, BuiltinOperator.CUSTOM: 1,
}


@dataclass
class Quant:
    scale: list[float]
    zero_point: list[int]
    axis: int = 0


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: int
    buffer: int
    quant: Quant | None


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: dict[str, Any]
    custom_code: str | None = None
    custom_options: bytes | None = None


@dataclass
class GraphBuilder:
    """One subgraph, its tensors and constant buffers, turned into TFLite bytes by :meth:`finish`."""

    description: str
    tensors: list[_Tensor] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])  # buffer 0 is the empty sentinel
    ops: list[_Op] = field(default_factory=list)

    def tensor(self, name: str, shape: tuple[int, ...], dtype: int = TensorType.INT8,
               quant: Quant | None = None, data: np.ndarray | None = None) -> int:
        buffer = 0
        if data is not None:
            array = np.ascontiguousarray(data, dtype=_NUMPY_TYPES[dtype])
            # ascontiguousarray makes a scalar 1-D: a scalar's one value still fits shape ().
            if tuple(array.shape) != tuple(shape) and not (tuple(shape) == () and array.shape == (1,)):
                raise ValueError(f"tensor {name}: data shape {array.shape} is not {shape}")
            self.buffers.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(_Tensor(name, tuple(int(d) for d in shape), dtype, buffer, quant))
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = BuiltinOptions.NONE,
           **options: Any) -> None:
        self.ops.append(_Op(code, inputs, outputs, options_type, options))

    def custom_op(self, name: str, inputs: list[int], outputs: list[int], custom_options: bytes = b"") -> None:
        self.ops.append(_Op(BuiltinOperator.CUSTOM, inputs, outputs, BuiltinOptions.NONE, {}, name, custom_options))

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape

    def quant(self, index: int) -> Quant | None:
        return self.tensors[index].quant

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        return _Writer(self).write(inputs, outputs)


class _Writer:
    def __init__(self, graph: GraphBuilder) -> None:
        self.graph = graph
        self.b = flatbuffers.Builder(1024 + sum(len(data) for data in graph.buffers))

    def ints(self, values: list[int] | tuple[int, ...], kind: str = "int32") -> int:
        return self.b.CreateNumpyVector(np.asarray(values, dtype=kind))

    def bytes_aligned(self, data: bytes) -> int:
        # 16-byte alignment as the TFLite converter writes it: kernels read int32 biases in place.
        self.b.StartVector(1, len(data), 16)
        self.b.head -= len(data)
        self.b.Bytes[self.b.head:self.b.head + len(data)] = data
        return self.b.EndVector()

    def write(self, inputs: list[int], outputs: list[int]) -> bytes:
        b = self.b
        graph = self.graph
        codes: list[tuple[int, str | None]] = []
        for op in graph.ops:
            key = (op.code, op.custom_code)
            if key not in codes:
                codes.append(key)

        buffer_offsets = []
        for data in graph.buffers:
            data_offset = self.bytes_aligned(data) if data else None
            fb["Buffer"].BufferStart(b)
            if data_offset is not None:
                fb["Buffer"].BufferAddData(b, data_offset)
            buffer_offsets.append(fb["Buffer"].BufferEnd(b))

        tensor_offsets = [self.tensor(t) for t in graph.tensors]
        op_offsets = [self.operator(op, codes.index((op.code, op.custom_code))) for op in graph.ops]
        code_offsets = []
        for code, custom in codes:
            custom_offset = b.CreateString(custom) if custom else None
            module = fb["OperatorCode"]
            module.OperatorCodeStart(b)
            module.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            module.OperatorCodeAddBuiltinCode(b, code)
            module.OperatorCodeAddVersion(b, OP_VERSIONS.get(code, 1))
            if custom_offset is not None:
                module.OperatorCodeAddCustomCode(b, custom_offset)
            code_offsets.append(module.OperatorCodeEnd(b))

        sub = fb["SubGraph"]
        tensors_vec = self.offsets(tensor_offsets)
        ops_vec = self.offsets(op_offsets)
        inputs_vec = self.ints(inputs)
        outputs_vec = self.ints(outputs)
        name = b.CreateString("main")
        sub.SubGraphStart(b)
        sub.SubGraphAddTensors(b, tensors_vec)
        sub.SubGraphAddInputs(b, inputs_vec)
        sub.SubGraphAddOutputs(b, outputs_vec)
        sub.SubGraphAddOperators(b, ops_vec)
        sub.SubGraphAddName(b, name)
        subgraph = sub.SubGraphEnd(b)

        model = fb["Model"]
        codes_vec = self.offsets(code_offsets)
        subgraphs_vec = self.offsets([subgraph])
        buffers_vec = self.offsets(buffer_offsets)
        description = b.CreateString(graph.description)
        model.ModelStart(b)
        model.ModelAddVersion(b, 3)
        model.ModelAddOperatorCodes(b, codes_vec)
        model.ModelAddSubgraphs(b, subgraphs_vec)
        model.ModelAddDescription(b, description)
        model.ModelAddBuffers(b, buffers_vec)
        b.Finish(model.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def offsets(self, offsets: list[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return self.b.EndVector()

    def tensor(self, tensor: _Tensor) -> int:
        b = self.b
        quant_offset = None
        if tensor.quant is not None:
            q = fb["QuantizationParameters"]
            scale = b.CreateNumpyVector(np.asarray(tensor.quant.scale, dtype=np.float32))
            zero = b.CreateNumpyVector(np.asarray(tensor.quant.zero_point, dtype=np.int64))
            q.QuantizationParametersStart(b)
            q.QuantizationParametersAddScale(b, scale)
            q.QuantizationParametersAddZeroPoint(b, zero)
            q.QuantizationParametersAddQuantizedDimension(b, tensor.quant.axis)
            quant_offset = q.QuantizationParametersEnd(b)
        shape = self.ints(tensor.shape)
        name = b.CreateString(tensor.name)
        t = fb["Tensor"]
        t.TensorStart(b)
        t.TensorAddShape(b, shape)
        t.TensorAddType(b, tensor.dtype)
        t.TensorAddBuffer(b, tensor.buffer)
        t.TensorAddName(b, name)
        if quant_offset is not None:
            t.TensorAddQuantization(b, quant_offset)
        return t.TensorEnd(b)

    def operator(self, op: _Op, code_index: int) -> int:
        b = self.b
        options = self.options(op.options_type, op.options) if op.options_type != BuiltinOptions.NONE else None
        custom = self.bytes_aligned(op.custom_options) if op.custom_options else None
        inputs = self.ints(op.inputs)
        outputs = self.ints(op.outputs)
        o = fb["Operator"]
        o.OperatorStart(b)
        o.OperatorAddOpcodeIndex(b, code_index)
        o.OperatorAddInputs(b, inputs)
        o.OperatorAddOutputs(b, outputs)
        if options is not None:
            o.OperatorAddBuiltinOptionsType(b, op.options_type)
            o.OperatorAddBuiltinOptions(b, options)
        if custom is not None:
            o.OperatorAddCustomOptions(b, custom)
        return o.OperatorEnd(b)

    def options(self, options_type: int, values: dict[str, Any]) -> int:
        """Options tables by name: ``Conv2DOptions`` with ``StrideW=1`` calls ``Conv2DOptionsAddStrideW``."""
        name = next(key for key, value in vars(BuiltinOptions).items() if value == options_type)
        module = fb[name]
        prepared = {key: (self.ints(value) if isinstance(value, (list, tuple)) else value)
                    for key, value in values.items()}
        getattr(module, f"{name}Start")(self.b)
        for key, value in prepared.items():
            getattr(module, f"{name}Add{key}")(self.b, value)
        return getattr(module, f"{name}End")(self.b)
