"""GoogLeNet (Inception v1) at 224×224: the published layer table, and its int8 TFLite build.

The shapes are Table 1 of Szegedy et al., "Going deeper with convolutions" (2014): a 7×7/2
convolution to 64 channels, 3×3/2 max pool, a 1×1 (64) then 3×3 (192) convolution, 3×3/2 max
pool, inception 3a–3b, pool, 4a–4e, pool, 5a–5b, a 7×7 average pool and a 1000-way linear layer
with softmax; ≈1.5 G multiply-adds per image. The paper's two local response normalisations and
its dropout are left out (neither is a multiply-add the paper counts, dropout does nothing at
inference, and int8 TFLite has no LRN kernel): the ONNX build (``onnx_families``) and this one
share ``INCEPTIONS`` so both run the same architecture.
"""

from __future__ import annotations

from .architectures import INPUT_QUANT, _Net
from .flatbuild import Activation, BuiltinOperator, BuiltinOptions, Padding

CLASSES = 1000
# name -> (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj), Table 1; "pool" marks the 3×3/2 max pools.
INCEPTIONS: tuple[tuple[str, tuple[int, int, int, int, int, int] | None], ...] = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    ("pool4", None),
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    ("pool5", None),
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)
# Published: "the number of operations is about 1.5 billion multiply-adds" (Inception v1 paper, section 5).
PUBLISHED_MULTIPLY_ADDS = 1.5e9


def check_size(size: int) -> int:
    # 224 is the published input; smaller multiples of 32 keep every pool's output whole.
    if not isinstance(size, int) or isinstance(size, bool) or not 64 <= size <= 1024 or size % 32:
        raise ValueError(f"size must be a multiple of 32 from 64 to 1024, not {size!r}")
    return size


def build_googlenet_tflite(size: int = 224, *, classes: int = CLASSES, seed: int = 0) -> bytes:
    """GoogLeNet as a fully int8 .tflite (random weights, fixed seed): ReLU convolutions, SAME padding."""
    check_size(size)
    net = _Net(f"farm googlenet size={size} classes={classes} seed={seed}", seed)
    g = net.graph
    image = g.tensor("input", (1, size, size, 3), quant=INPUT_QUANT)
    x = net.conv(image, "conv1/7x7_s2", 64, kernel=7, stride=2, activation=Activation.RELU6)
    x = _max_pool(net, x, "pool1/3x3_s2", stride=2)
    x = net.conv(x, "conv2/3x3_reduce", 64, activation=Activation.RELU6)
    x = net.conv(x, "conv2/3x3", 192, kernel=3, activation=Activation.RELU6)
    x = _max_pool(net, x, "pool2/3x3_s2", stride=2)
    for name, widths in INCEPTIONS:
        x = _max_pool(net, x, f"{name}/3x3_s2", stride=2) if widths is None else _inception(net, x, name, widths)
    return g.finish([image], [net.classifier_head(x, "GoogLeNet", classes)])


def _max_pool(net: _Net, x: int, name: str, stride: int) -> int:
    g = net.graph
    _, height, width, depth = g.shape(x)
    y = g.tensor(name, (1, -(-height // stride), -(-width // stride), depth), quant=g.quant(x))
    g.op(BuiltinOperator.MAX_POOL_2D, [x], [y], BuiltinOptions.Pool2DOptions, Padding=Padding.SAME,
         StrideW=stride, StrideH=stride, FilterWidth=3, FilterHeight=3, FusedActivationFunction=Activation.NONE)
    return y


def _inception(net: _Net, x: int, name: str, widths: tuple[int, int, int, int, int, int]) -> int:
    one, reduce3, three, reduce5, five, proj = widths
    scope = f"inception_{name}"
    # Every branch ends in a RELU6 output quantised alike, so the int8 concatenation needs no rescale.
    branches = [
        net.conv(x, f"{scope}/1x1", one),
        net.conv(net.conv(x, f"{scope}/3x3_reduce", reduce3), f"{scope}/3x3", three, kernel=3),
        net.conv(net.conv(x, f"{scope}/5x5_reduce", reduce5), f"{scope}/5x5", five, kernel=5),
        net.conv(_max_pool(net, x, f"{scope}/pool", stride=1), f"{scope}/pool_proj", proj),
    ]
    g = net.graph
    _, height, width, _ = g.shape(x)
    y = g.tensor(f"{scope}/output", (1, height, width, sum(widths[i] for i in (0, 2, 4, 5))), quant=g.quant(branches[0]))
    g.op(BuiltinOperator.CONCATENATION, branches, [y], BuiltinOptions.ConcatenationOptions, Axis=3,
         FusedActivationFunction=Activation.NONE)
    return y
