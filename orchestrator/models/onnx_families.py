"""The model families as float32 ONNX files: the SEEDS §2 stacks and GoogLeNet, for ONNX Runtime and TensorRT.

The same architectures as the int8 TFLite generators (``synthetic``, ``googlenet``), so one
architecture runs under TFLite, ONNX Runtime and TensorRT on one board and the results line up.
Random weights with a fixed seed: the same parameters give the same bytes and so the same sha256.
"""

from __future__ import annotations

import numpy as np

from .googlenet import CLASSES, INCEPTIONS, check_size
from .onnxbuild import OnnxGraph
from .synthetic import _check


def build_conv_stack_onnx(layers: int, *, size: int = 128, channels: int = 3, kernel: int = 7, filters: int = 32,
                          seed: int = 0) -> bytes:
    """A ``1×channels×1×1`` input padded inside the model to ``size×size`` (as the TFLite stack), then
    ``layers`` SAME convolutions of ``filters`` and a global average pool."""
    _check("layers", layers, 1, 2000)
    _check("size", size, 1, 2048)
    _check("channels", channels, 1, 1024)
    _check("kernel", kernel, 1, 31)
    _check("filters", filters, 1, 1024)
    g = OnnxGraph("conv_stack", seed)
    x = g.input("input", (1, channels, 1, 1))
    pads = g.constant("paddings", np.array([0, 0, 0, 0, 0, 0, size - 1, size - 1], dtype=np.int64))
    x = g.node("Pad", [x, pads], "padded", (1, channels, size, size), mode="constant")
    for index in range(layers):
        x = g.conv(x, f"conv{index + 1}", filters, kernel=kernel, relu=False)
    pooled = g.global_average_pool(x, "pooled")
    return g.finish([pooled], f"farm conv_stack layers={layers} size={size} channels={channels} kernel={kernel} "
                              f"filters={filters} seed={seed}")


def build_dense_stack_onnx(layers: int, *, units: int = 100, seed: int = 0) -> bytes:
    _check("layers", layers, 1, 5000)
    _check("units", units, 1, 8192)
    g = OnnxGraph("dense_stack", seed)
    x = g.input("input", (1, units))
    for index in range(layers):
        x = g.dense(x, f"dense{index + 1}", units)
    return g.finish([x], f"farm dense_stack layers={layers} units={units} seed={seed}")


def build_googlenet_onnx(size: int = 224, *, classes: int = CLASSES, seed: int = 0) -> bytes:
    """GoogLeNet / Inception v1 with the published layer shapes (``googlenet.INCEPTIONS``), float32."""
    check_size(size)
    g = OnnxGraph("googlenet", seed)
    x = g.input("input", (1, 3, size, size))
    x = g.conv(x, "conv1/7x7_s2", 64, kernel=7, stride=2)
    x = g.max_pool(x, "pool1/3x3_s2")
    x = g.conv(x, "conv2/3x3_reduce", 64)
    x = g.conv(x, "conv2/3x3", 192, kernel=3)
    x = g.max_pool(x, "pool2/3x3_s2")
    for name, widths in INCEPTIONS:
        if widths is None:
            x = g.max_pool(x, f"{name}/3x3_s2")
            continue
        one, reduce3, three, reduce5, five, proj = widths
        scope = f"inception_{name}"
        x = g.concat([
            g.conv(x, f"{scope}/1x1", one),
            g.conv(g.conv(x, f"{scope}/3x3_reduce", reduce3), f"{scope}/3x3", three, kernel=3),
            g.conv(g.conv(x, f"{scope}/5x5_reduce", reduce5), f"{scope}/5x5", five, kernel=5),
            g.conv(g.max_pool(x, f"{scope}/pool", stride=1), f"{scope}/pool_proj", proj),
        ], f"{scope}/output")
    x = g.flatten(g.global_average_pool(x, "pool5/7x7_s1"), "pool5/flatten")
    logits = g.dense(x, "loss3/classifier", classes)
    probabilities = g.node("Softmax", [logits], "prob", (1, classes), axis=1)
    return g.finish([probabilities], f"farm googlenet size={size} classes={classes} seed={seed}")
