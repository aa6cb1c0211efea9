"""The Edge TPU compiler's documented per-op limits: an op it supports that still stays on the CPU.

Each rule quotes the Notes column of Coral's "Supported operations" table
(https://coral.ai/docs/edgetpu/models-intro/#supported-operations); where the documentation names a
limit without its numbers (RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR "depending on input/output
size"), only the case a published compiled model shows is encoded, and the check cautions on the rest.
``g`` is the check's graph reader (``edgetpu_check._Graph``): shapes, types, constants of tensors.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from .flatbuild import fb

if TYPE_CHECKING:
    from .edgetpu_check import _Graph

# The compiler's log wording for an op it supports but leaves on the CPU over a size or shape limit.
LIMITATION = "Operation is otherwise supported, but not mapped due to some unspecified limitation"

SIZE_DEPENDENT = {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}
_SOFTMAX_MAX_ELEMENTS = 16000


def describe_sizes(g: _Graph, inputs: list[int], outputs: list[int]) -> str:
    return " -> ".join("x".join(str(d) for d in g.shape(t)) for t in inputs + outputs)


def _values(g: _Graph, index: int) -> list[int] | None:
    """A constant int32 tensor's values (axes, strides, paddings), or None when computed at run time."""
    if not g.constant(index) or g.dtype(index) != "int32":
        return None
    raw = g.model.Buffers(g.graph.Tensors(index).Buffer()).DataAsNumpy().tobytes()
    return list(struct.unpack(f"<{len(raw) // 4}i", raw[:len(raw) // 4 * 4]))


def _options(op: Any, options_name: str) -> Any:
    table = op.BuiltinOptions()
    if table is None:
        return None
    options = getattr(fb[options_name], options_name)()
    options.Init(table.Bytes, table.Pos)
    return options


def limit(g: _Graph, op: Any, name: str, inputs: list[int], outputs: list[int]) -> tuple[str, str] | None:
    """The documented per-op limits (Coral, "Supported operations", the "Notes" column)."""
    if name in SIZE_DEPENDENT and inputs and outputs:
        # "Input/output is a 3-dimensional tensor. Depending on input/output size, this operation may not
        # be mapped to the Edge TPU to avoid loss in precision." No sizes are documented; the one case
        # encoded is the one Coral's published DeepLab twin shows: a 1x1 input spread over a larger output
        # (the image-pooling branch) left on the CPU.
        before, after = g.shape(inputs[0]), g.shape(outputs[0])
        if len(before) == 4 and len(after) == 4 and before[1:3] == [1, 1] and after[1] * after[2] > 1:
            return LIMITATION, (f"resizing {describe_sizes(g, inputs[:1], outputs[:1])}: a 1x1 input is not resized on "
                                "the Edge TPU (as in Coral's published DeepLab twin)")
    if name == "CONV_2D":
        options = _options(op, "Conv2DOptions")
        # "Must use the same dilation in x and y dimensions."
        if options is not None and options.DilationHFactor() != options.DilationWFactor():
            return LIMITATION, (f"dilation {options.DilationHFactor()}x{options.DilationWFactor()}: "
                                "x and y must use the same dilation")
    if name == "SOFTMAX" and inputs:
        # "Supports only 1-D input tensor with a max of 16,000 elements."
        shape = g.shape(inputs[0])
        wide = [d for d in shape if d > 1]
        if len(wide) > 1 or (wide and wide[0] > _SOFTMAX_MAX_ELEMENTS):
            return LIMITATION, f"input {shape}: only a 1-D input of at most 16,000 elements maps"
    if name in ("MEAN", "SUM") and len(inputs) >= 2:
        # "No reduction in batch dimension. Supports reduction along x- and/or y-dimensions only."
        axes, rank = _values(g, inputs[1]), len(g.shape(inputs[0]))
        if axes is not None and rank == 4 and any(a % rank not in (1, 2) for a in axes):
            return LIMITATION, f"reduces axes {axes}: only x and/or y (axes 1, 2) reduce on the Edge TPU"
    if name == "STRIDED_SLICE" and len(inputs) >= 4:
        # "Supported only when all strides are equal to 1 (that is, effectively a Slice op), and with
        # ellipsis-axis-mask == 0, and new-axis-max == 0."
        strides = _values(g, inputs[3])
        options = _options(op, "StridedSliceOptions")
        if strides is not None and any(s != 1 for s in strides):
            return LIMITATION, f"strides {strides}: only strides of 1 map"
        if options is not None and (options.EllipsisMask() or options.NewAxisMask()):
            return LIMITATION, "ellipsis or new-axis mask set: both must be 0"
    if name == "CONCATENATION":
        # "If any input is a compile-time constant tensor, there must be only 2 inputs, and this constant
        # tensor must be all zeroes (effectively, a zero-padding op)."
        constants = [t for t in inputs if g.constant(t)]
        if constants and (len(inputs) != 2 or any(any(g.model.Buffers(g.graph.Tensors(t).Buffer()).DataAsNumpy())
                                                  for t in constants)):
            return LIMITATION, "a constant input is allowed only as one of 2 inputs, and all zeroes"
    if name in ("PACK", "SPLIT", "PAD"):
        # "No packing in batch dimension." / "No splitting in batch dimension." / "No padding in batch dimension."
        if name == "PACK":
            options = _options(op, "PackOptions")
            if options is not None and options.Axis() == 0:
                return LIMITATION, "packs along the batch dimension"
        elif name == "SPLIT" and inputs:
            axis = _values(g, inputs[0])
            if axis and axis[0] == 0:
                return LIMITATION, "splits along the batch dimension"
        elif name == "PAD" and len(inputs) >= 2:
            paddings = _values(g, inputs[1])
            if paddings and any(paddings[:2]):
                return LIMITATION, "pads the batch dimension"
    return None
