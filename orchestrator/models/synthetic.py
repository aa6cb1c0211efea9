"""The seed's synthetic model families (SEEDS §2), fully int8, as real .tflite bytes.

* ``conv_stack``: a tiny ``1×1×1×channels`` input padded inside the model to
  ``size×size×channels`` (so moving data in and out costs next to nothing), then
  ``layers`` SAME 7×7 convolutions with ``filters`` outputs, then an average pool
  to one value per filter.
* ``dense_stack``: ``layers`` fully-connected layers of ``units`` each.

Weights are random with a fixed seed: latency does not depend on their values,
and the same parameters always give the same bytes (and so the same sha256).
"""

from __future__ import annotations

import numpy as np

from .flatbuild import Activation, BuiltinOperator, BuiltinOptions, GraphBuilder, Padding, Quant, TensorType

INPUT_QUANT = Quant([1 / 128], [0])


def _check(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-127, 128, size=shape, dtype=np.int64).astype(np.int8)


def build_conv_stack(layers: int, *, size: int = 128, channels: int = 3, kernel: int = 7, filters: int = 32,
                     seed: int = 0) -> bytes:
    _check("layers", layers, 1, 2000)
    _check("size", size, 1, 2048)
    _check("channels", channels, 1, 1024)
    _check("kernel", kernel, 1, 31)
    _check("filters", filters, 1, 1024)
    rng = np.random.default_rng(seed)
    graph = GraphBuilder(f"farm conv_stack layers={layers} size={size} channels={channels} "
                         f"kernel={kernel} filters={filters} seed={seed}")
    x = graph.tensor("input", (1, 1, 1, channels), quant=INPUT_QUANT)
    inputs = [x]
    paddings = graph.tensor("paddings", (4, 2), TensorType.INT32,
                            data=np.array([[0, 0], [0, size - 1], [0, size - 1], [0, 0]]))
    padded = graph.tensor("padded", (1, size, size, channels), quant=INPUT_QUANT)
    graph.op(BuiltinOperator.PAD, [x, paddings], [padded], BuiltinOptions.PadOptions)
    x = padded
    depth = channels
    for index in range(layers):
        x = conv2d(graph, rng, x, f"conv{index + 1}", filters, kernel, depth)
        depth = filters
    pooled = graph.tensor("pooled", (1, 1, 1, depth), quant=graph.quant(x))
    graph.op(BuiltinOperator.AVERAGE_POOL_2D, [x], [pooled], BuiltinOptions.Pool2DOptions,
             Padding=Padding.VALID, StrideW=1, StrideH=1, FilterWidth=size, FilterHeight=size,
             FusedActivationFunction=Activation.NONE)
    return graph.finish(inputs, [pooled])


def conv2d(graph: GraphBuilder, rng: np.random.Generator, x: int, name: str, filters: int, kernel: int,
           depth: int, stride: int = 1, activation: int = Activation.NONE) -> int:
    """An int8 per-channel SAME convolution, scaled so activations stay in range."""
    _, height, width, _ = graph.shape(x)
    in_scale = graph.quant(x).scale[0]
    # Keeps the output's spread close to the input's for random ±127 weights.
    w_scale = [1.0 / (127 * (kernel * kernel * depth) ** 0.5)] * filters
    weights = graph.tensor(f"{name}/weights", (filters, kernel, kernel, depth),
                           quant=Quant(w_scale, [0] * filters, axis=0), data=_weights(rng, (filters, kernel, kernel, depth)))
    bias = graph.tensor(f"{name}/bias", (filters,), TensorType.INT32,
                        quant=Quant([in_scale * s for s in w_scale], [0] * filters, axis=0),
                        data=np.zeros(filters, dtype=np.int32))
    out_h, out_w = -(-height // stride), -(-width // stride)
    y = graph.tensor(name, (1, out_h, out_w, filters), quant=Quant([in_scale], [0]))
    graph.op(BuiltinOperator.CONV_2D, [x, weights, bias], [y], BuiltinOptions.Conv2DOptions,
             Padding=Padding.SAME, StrideW=stride, StrideH=stride, FusedActivationFunction=activation,
             DilationWFactor=1, DilationHFactor=1)
    return y


def build_dense_stack(layers: int, *, units: int = 100, seed: int = 0) -> bytes:
    _check("layers", layers, 1, 5000)
    _check("units", units, 1, 8192)
    rng = np.random.default_rng(seed)
    graph = GraphBuilder(f"farm dense_stack layers={layers} units={units} seed={seed}")
    x = graph.tensor("input", (1, units), quant=INPUT_QUANT)
    inputs = [x]
    for index in range(layers):
        x = dense(graph, rng, x, f"dense{index + 1}", units)
    return graph.finish(inputs, [x])


def dense(graph: GraphBuilder, rng: np.random.Generator, x: int, name: str, units: int,
          activation: int = Activation.NONE) -> int:
    depth = graph.shape(x)[-1]
    in_scale = graph.quant(x).scale[0]
    w_scale = 1.0 / (127 * depth ** 0.5)
    weights = graph.tensor(f"{name}/weights", (units, depth), quant=Quant([w_scale], [0]),
                           data=_weights(rng, (units, depth)))
    bias = graph.tensor(f"{name}/bias", (units,), TensorType.INT32, quant=Quant([in_scale * w_scale], [0]),
                        data=np.zeros(units, dtype=np.int32))
    y = graph.tensor(name, (1, units), quant=Quant([in_scale], [0]))
    graph.op(BuiltinOperator.FULLY_CONNECTED, [x, weights, bias], [y], BuiltinOptions.FullyConnectedOptions,
             FusedActivationFunction=activation)
    return y
