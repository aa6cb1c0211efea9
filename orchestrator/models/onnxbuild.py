"""Write float32 ONNX models with the ``onnx`` package's helpers: no framework, random weights.

Layout is ONNX's NCHW. Files are written for opset 13 and IR version 7, which every ONNX Runtime
from 1.10 (the last with CPython 3.6 wheels, JetPack 4's Python) and TensorRT 8 read: a new
``onnx`` package would otherwise stamp its own, newer IR version that old runtimes refuse.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding as explicit (begin, end): output = ceil(size / stride), extra at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class OnnxGraph:
    """Nodes, weights and shapes of one graph; ``finish`` gives the bytes of a checked .onnx model."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.inputs: list[onnx.ValueInfoProto] = []

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.shapes[name] = shape
        return name

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, shape: tuple[int, ...], **attributes: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        self.shapes[output] = shape
        return output

    def weights(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        # Scaled so activations keep their spread through deep stacks (no inf/NaN in timed runs).
        return (self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    def conv(self, x: str, name: str, filters: int, kernel: int = 1, stride: int = 1, relu: bool = True) -> str:
        _, depth, height, width = self.shapes[x]
        w = self.constant(f"{name}/weights", self.weights((filters, depth, kernel, kernel), depth * kernel * kernel))
        b = self.constant(f"{name}/bias", np.zeros(filters, dtype=np.float32))
        top, bottom = same_pads(height, kernel, stride)
        left, right = same_pads(width, kernel, stride)
        shape = (1, filters, -(-height // stride), -(-width // stride))
        y = self.node("Conv", [x, w, b], name, shape, kernel_shape=[kernel, kernel], strides=[stride, stride],
                      pads=[top, left, bottom, right])
        return self.node("Relu", [y], f"{name}/relu", shape) if relu else y

    def max_pool(self, x: str, name: str, kernel: int = 3, stride: int = 2) -> str:
        _, depth, height, width = self.shapes[x]
        top, bottom = same_pads(height, kernel, stride)
        left, right = same_pads(width, kernel, stride)
        return self.node("MaxPool", [x], name, (1, depth, -(-height // stride), -(-width // stride)),
                         kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[top, left, bottom, right])

    def global_average_pool(self, x: str, name: str) -> str:
        _, depth, _, _ = self.shapes[x]
        return self.node("GlobalAveragePool", [x], name, (1, depth, 1, 1))

    def concat(self, xs: list[str], name: str) -> str:
        _, _, height, width = self.shapes[xs[0]]
        return self.node("Concat", xs, name, (1, sum(self.shapes[x][1] for x in xs), height, width), axis=1)

    def flatten(self, x: str, name: str) -> str:
        return self.node("Flatten", [x], name, (1, int(np.prod(self.shapes[x][1:]))), axis=1)

    def dense(self, x: str, name: str, units: int) -> str:
        depth = self.shapes[x][-1]
        w = self.constant(f"{name}/weights", self.weights((depth, units), depth))
        b = self.constant(f"{name}/bias", np.zeros(units, dtype=np.float32))
        return self.node("Gemm", [x, w, b], name, (1, units))

    def finish(self, outputs: list[str], description: str) -> bytes:
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs,
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(self.shapes[o])) for o in outputs],
            initializer=self.initializers)
        model = helper.make_model(graph, producer_name="farm", doc_string=description,
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString()
