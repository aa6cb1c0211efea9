"""Published architectures as int8 TFLite models with random weights: MobileNet v1, v2 and an SSD detector.

Layer shapes follow the papers and the models Google publishes (mobilenet_v1_1.0_224_quant,
mobilenet_v2_1.0_224_quant, ssd_mobilenet_v1_coco_quant): same operators, strides, channel
counts and 1001-class head, so the operation count and the parameter bytes match the real
files. Latency does not depend on weight values, so random weights (fixed seed, so the same
parameters always give the same bytes) stand in for trained ones and nothing is downloaded.

Quantisation follows the published (per-tensor) models: int8 weights with one scale each, int32 biases with
scale input·weight, RELU6 outputs on [0, 6] (zero point -128), softmax and logistic outputs at
1/256 with zero point -128.
"""

from __future__ import annotations

import numpy as np
from flatbuffers import flexbuffers

from .flatbuild import Activation, BuiltinOperator, BuiltinOptions, GraphBuilder, Padding, Quant, TensorType

INPUT_QUANT = Quant([1 / 128], [0])
RELU6_QUANT = Quant([6 / 255], [-128])
LINEAR_QUANT = Quant([0.1], [0])  # projections without activation (MobileNet v2's bottlenecks)
PROBABILITY_QUANT = Quant([1 / 256], [-128])  # what int8 SOFTMAX and LOGISTIC kernels require
CLASSES = 1001  # ImageNet's 1000 classes and "background", as in the published models
DETECTION_POSTPROCESS = "TFLite_Detection_PostProcess"


def _check_size(size: int, low: int = 32) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or not low <= size <= 1024:
        raise ValueError(f"size must be an integer from {low} to 1024, not {size!r}")
    return size


def _check_alpha(alpha: float) -> float:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.1 <= alpha <= 2.0:
        raise ValueError(f"alpha (width multiplier) must be from 0.1 to 2.0, not {alpha!r}")
    return float(alpha)


class _Net:
    """A GraphBuilder plus the layer helpers the architectures share."""

    def __init__(self, description: str, seed: int) -> None:
        self.graph = GraphBuilder(description)
        self.rng = np.random.default_rng(seed)

    def _weights(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.integers(-127, 128, size=shape, dtype=np.int64).astype(np.int8)

    def _out(self, name: str, shape: tuple[int, ...], activation: int, quant: Quant | None) -> int:
        if quant is None:
            quant = RELU6_QUANT if activation == Activation.RELU6 else LINEAR_QUANT
        return self.graph.tensor(name, shape, quant=quant)

    def conv(self, x: int, name: str, filters: int, kernel: int = 1, stride: int = 1,
             activation: int = Activation.RELU6, quant: Quant | None = None) -> int:
        g = self.graph
        _, height, width, depth = g.shape(x)
        in_scale = g.quant(x).scale[0]
        w_scale = 1.0 / (127 * (kernel * kernel * depth) ** 0.5)
        weights = g.tensor(f"{name}/weights", (filters, kernel, kernel, depth), quant=Quant([w_scale], [0]),
                           data=self._weights((filters, kernel, kernel, depth)))
        bias = g.tensor(f"{name}/bias", (filters,), TensorType.INT32, quant=Quant([in_scale * w_scale], [0]),
                        data=np.zeros(filters, dtype=np.int32))
        y = self._out(name, (1, -(-height // stride), -(-width // stride), filters), activation, quant)
        g.op(BuiltinOperator.CONV_2D, [x, weights, bias], [y], BuiltinOptions.Conv2DOptions,
             Padding=Padding.SAME, StrideW=stride, StrideH=stride, FusedActivationFunction=activation,
             DilationWFactor=1, DilationHFactor=1)
        return y

    def depthwise(self, x: int, name: str, stride: int = 1, kernel: int = 3,
                  activation: int = Activation.RELU6) -> int:
        g = self.graph
        _, height, width, depth = g.shape(x)
        in_scale = g.quant(x).scale[0]
        w_scale = 1.0 / (127 * kernel)
        weights = g.tensor(f"{name}/weights", (1, kernel, kernel, depth), quant=Quant([w_scale], [0], axis=3),
                           data=self._weights((1, kernel, kernel, depth)))
        bias = g.tensor(f"{name}/bias", (depth,), TensorType.INT32, quant=Quant([in_scale * w_scale], [0]),
                        data=np.zeros(depth, dtype=np.int32))
        y = self._out(name, (1, -(-height // stride), -(-width // stride), depth), activation, None)
        g.op(BuiltinOperator.DEPTHWISE_CONV_2D, [x, weights, bias], [y], BuiltinOptions.DepthwiseConv2DOptions,
             Padding=Padding.SAME, StrideW=stride, StrideH=stride, DepthMultiplier=1,
             FusedActivationFunction=activation, DilationWFactor=1, DilationHFactor=1)
        return y

    def add(self, a: int, b: int, name: str) -> int:
        y = self.graph.tensor(name, self.graph.shape(a), quant=LINEAR_QUANT)
        self.graph.op(BuiltinOperator.ADD, [a, b], [y], BuiltinOptions.AddOptions,
                      FusedActivationFunction=Activation.NONE)
        return y

    def reshape(self, x: int, name: str, shape: tuple[int, ...]) -> int:
        g = self.graph
        target = g.tensor(f"{name}/shape", (len(shape),), TensorType.INT32, data=np.array(shape))
        y = g.tensor(name, shape, quant=g.quant(x))
        g.op(BuiltinOperator.RESHAPE, [x, target], [y], BuiltinOptions.ReshapeOptions, NewShape=list(shape))
        return y

    def classifier_head(self, x: int, scope: str, classes: int) -> int:
        """Global average pool, 1×1 conv to logits, squeeze, softmax: the published models' head."""
        g = self.graph
        _, height, width, depth = g.shape(x)
        pooled = g.tensor(f"{scope}/Logits/AvgPool", (1, 1, 1, depth), quant=g.quant(x))
        g.op(BuiltinOperator.AVERAGE_POOL_2D, [x], [pooled], BuiltinOptions.Pool2DOptions,
             Padding=Padding.VALID, StrideW=2, StrideH=2, FilterWidth=width, FilterHeight=height,
             FusedActivationFunction=Activation.NONE)
        logits = self.conv(pooled, f"{scope}/Logits/Conv2d_1c_1x1", classes, activation=Activation.NONE,
                           quant=Quant([0.1], [0]))
        squeezed = self.reshape(logits, f"{scope}/Logits/SpatialSqueeze", (1, classes))
        probabilities = g.tensor(f"{scope}/Predictions", (1, classes), quant=PROBABILITY_QUANT)
        g.op(BuiltinOperator.SOFTMAX, [squeezed], [probabilities], BuiltinOptions.SoftmaxOptions, Beta=1.0)
        return probabilities


# MobileNet v1: (pointwise filters, depthwise stride) of its 13 depthwise-separable blocks.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
             (512, 1), (512, 1), (1024, 2), (1024, 1))


def _v1_depth(channels: int, alpha: float) -> int:
    return max(int(channels * alpha), 8)


def _v1_backbone(net: _Net, x: int, alpha: float, blocks: int = len(V1_BLOCKS)) -> list[int]:
    """The MobileNet v1 feature extractor; returns every block's output."""
    x = net.conv(x, "MobilenetV1/Conv2d_0", _v1_depth(32, alpha), kernel=3, stride=2)
    outputs = []
    for index, (filters, stride) in enumerate(V1_BLOCKS[:blocks], start=1):
        x = net.depthwise(x, f"MobilenetV1/Conv2d_{index}_depthwise", stride=stride)
        x = net.conv(x, f"MobilenetV1/Conv2d_{index}_pointwise", _v1_depth(filters, alpha))
        outputs.append(x)
    return outputs


def build_mobilenet_v1(size: int = 224, *, alpha: float = 1.0, classes: int = CLASSES, seed: int = 0) -> bytes:
    _check_size(size)
    alpha = _check_alpha(alpha)
    net = _Net(f"farm mobilenet_v1 alpha={alpha} size={size} classes={classes} seed={seed}", seed)
    image = net.graph.tensor("input", (1, size, size, 3), quant=INPUT_QUANT)
    features = _v1_backbone(net, image, alpha)[-1]
    return net.graph.finish([image], [net.classifier_head(features, "MobilenetV1", classes)])


# MobileNet v2: (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def build_mobilenet_v2(size: int = 224, *, alpha: float = 1.0, classes: int = CLASSES, seed: int = 0) -> bytes:
    _check_size(size)
    alpha = _check_alpha(alpha)
    net = _Net(f"farm mobilenet_v2 alpha={alpha} size={size} classes={classes} seed={seed}", seed)
    image = net.graph.tensor("input", (1, size, size, 3), quant=INPUT_QUANT)
    x = net.conv(image, "MobilenetV2/Conv", _make_divisible(32 * alpha), kernel=3, stride=2)
    block = 0
    for expansion, channels, repeats, first_stride in V2_BLOCKS:
        out_channels = _make_divisible(channels * alpha)
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            scope = "MobilenetV2/expanded_conv" + (f"_{block}" if block else "")
            depth = net.graph.shape(x)[-1]
            y = x
            if expansion != 1:
                y = net.conv(y, f"{scope}/expand", depth * expansion)
            y = net.depthwise(y, f"{scope}/depthwise", stride=stride)
            y = net.conv(y, f"{scope}/project", out_channels, activation=Activation.NONE)
            # The residual connection exists only where the block keeps shape.
            x = net.add(x, y, f"{scope}/add") if stride == 1 and depth == out_channels else y
            block += 1
    last = _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = net.conv(x, "MobilenetV2/Conv_1", last)
    return net.graph.finish([image], [net.classifier_head(x, "MobilenetV2", classes)])


# SSD's extra feature layers after MobileNet v1's conv13: (1×1 filters, 3×3 stride-2 filters).
SSD_EXTRAS = ((256, 512), (128, 256), (128, 256), (64, 128))


def ssd_anchors(feature_sizes: list[int], anchors_per_cell: list[int]) -> np.ndarray:
    """Anchor boxes (ycenter, xcenter, h, w) in [0, 1], as the SSD anchor generator lays them out."""
    boxes = []
    layers = len(feature_sizes)
    for layer, (cells, per_cell) in enumerate(zip(feature_sizes, anchors_per_cell, strict=True)):
        scale = 0.2 + (0.95 - 0.2) * layer / max(1, layers - 1)
        ratios = [1.0, 2.0, 0.5, 3.0, 1 / 3, 1.0][:per_cell]
        for row in range(cells):
            for col in range(cells):
                for index, ratio in enumerate(ratios):
                    side = scale if index < 5 else (scale * min(0.95, scale + 0.15)) ** 0.5
                    boxes.append(((row + 0.5) / cells, (col + 0.5) / cells, side / ratio ** 0.5, side * ratio ** 0.5))
    return np.asarray(boxes, dtype=np.float32)


def postprocess_options(*, max_detections: int = 10, num_classes: int = 90, nms_score_threshold: float = 1e-8,
                        nms_iou_threshold: float = 0.6) -> bytes:
    """The custom options flexbuffer of TFLite_Detection_PostProcess, keys as the TF exporter writes them."""
    return bytes(flexbuffers.Dumps({
        "max_detections": max_detections, "max_classes_per_detection": 1, "detections_per_class": 100,
        "use_regular_nms": False, "nms_score_threshold": float(nms_score_threshold),
        "nms_iou_threshold": float(nms_iou_threshold), "num_classes": num_classes,
        "y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0,
    }))


def build_ssd_mobilenet_v1(size: int = 300, *, num_classes: int = 90, max_detections: int = 10,
                           seed: int = 0) -> bytes:
    """SSD with a MobileNet v1 backbone, ending in the CPU-only TFLite_Detection_PostProcess custom op."""
    _check_size(size, low=64)
    if not isinstance(num_classes, int) or not 1 <= num_classes <= 1000:
        raise ValueError(f"num_classes must be an integer from 1 to 1000, not {num_classes!r}")
    if not isinstance(max_detections, int) or not 1 <= max_detections <= 100:
        raise ValueError(f"max_detections must be an integer from 1 to 100, not {max_detections!r}")
    net = _Net(f"farm ssd_mobilenet_v1 size={size} num_classes={num_classes} seed={seed}", seed)
    g = net.graph
    image = g.tensor("normalized_input_image_tensor", (1, size, size, 3), quant=INPUT_QUANT)
    blocks = _v1_backbone(net, image, 1.0)
    features = [blocks[10], blocks[12]]  # conv11 (stride 16) and conv13 (stride 32), as in the TF detector
    x = blocks[12]
    for index, (squeeze, expand) in enumerate(SSD_EXTRAS, start=2):
        x = net.conv(x, f"FeatureExtractor/Conv2d_13_pointwise_1_Conv2d_{index}_1x1_{squeeze}", squeeze)
        x = net.conv(x, f"FeatureExtractor/Conv2d_13_pointwise_2_Conv2d_{index}_3x3_s2_{expand}", expand,
                     kernel=3, stride=2)
        features.append(x)
    per_cell = [3] + [6] * (len(features) - 1)
    box_quant, class_quant = Quant([0.05], [0]), Quant([0.1], [0])  # int8 CONCATENATION needs one scale
    boxes, classes = [], []
    for index, (feature, anchors) in enumerate(zip(features, per_cell, strict=True)):
        cells = g.shape(feature)[1] * g.shape(feature)[2]
        scope = f"BoxPredictor_{index}"
        box = net.conv(feature, f"{scope}/BoxEncodingPredictor", anchors * 4, activation=Activation.NONE,
                       quant=box_quant)
        boxes.append(net.reshape(box, f"{scope}/BoxEncodings", (1, cells * anchors, 4)))
        score = net.conv(feature, f"{scope}/ClassPredictor", anchors * (num_classes + 1),
                         activation=Activation.NONE, quant=class_quant)
        classes.append(net.reshape(score, f"{scope}/ClassPredictions", (1, cells * anchors, num_classes + 1)))
    total = sum(g.shape(b)[1] for b in boxes)
    box_encodings = g.tensor("raw_outputs/box_encodings", (1, total, 4), quant=box_quant)
    g.op(BuiltinOperator.CONCATENATION, boxes, [box_encodings], BuiltinOptions.ConcatenationOptions, Axis=1,
         FusedActivationFunction=Activation.NONE)
    class_logits = g.tensor("concat_1", (1, total, num_classes + 1), quant=class_quant)
    g.op(BuiltinOperator.CONCATENATION, classes, [class_logits], BuiltinOptions.ConcatenationOptions, Axis=1,
         FusedActivationFunction=Activation.NONE)
    class_scores = g.tensor("raw_outputs/class_scores", (1, total, num_classes + 1), quant=PROBABILITY_QUANT)
    g.op(BuiltinOperator.LOGISTIC, [class_logits], [class_scores])
    # tflite-runtime's post-processing kernel reads uint8 or float32, not int8: requantize, as the
    # converter does for models whose detector inputs are uint8 (same scale, zero point +128).
    box_encodings = _to_uint8(g, box_encodings, "raw_outputs/box_encodings_uint8")
    class_scores = _to_uint8(g, class_scores, "raw_outputs/class_predictions")
    anchors = g.tensor("anchors", (total, 4), TensorType.FLOAT32,
                       data=ssd_anchors([g.shape(f)[1] for f in features], per_cell))
    outputs = [g.tensor("TFLite_Detection_PostProcess", (1, max_detections, 4), TensorType.FLOAT32),
               g.tensor("TFLite_Detection_PostProcess:1", (1, max_detections), TensorType.FLOAT32),
               g.tensor("TFLite_Detection_PostProcess:2", (1, max_detections), TensorType.FLOAT32),
               g.tensor("TFLite_Detection_PostProcess:3", (1,), TensorType.FLOAT32)]
    g.custom_op(DETECTION_POSTPROCESS, [box_encodings, class_scores, anchors], outputs,
                postprocess_options(max_detections=max_detections, num_classes=num_classes))
    return g.finish([image], outputs)


def _to_uint8(g: GraphBuilder, x: int, name: str) -> int:
    quant = g.quant(x)
    y = g.tensor(name, g.shape(x), TensorType.UINT8, quant=Quant(quant.scale, [z + 128 for z in quant.zero_point]))
    g.op(BuiltinOperator.QUANTIZE, [x], [y])
    return y
