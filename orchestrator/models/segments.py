"""A conv stack cut into N chained CPU models: the CPU twin of ``edgetpu_compiler --num_segments N``.

Segment K of N holds a contiguous run of the stack's convolutions; the first also holds the PAD that
makes the 128×128 tensor, the last the average pool. Each segment's input tensor carries the name of
the tensor the segment before it outputs, which is how a pipeline runner (pycoral's
``PipelinedModelRunner``, and ``agent/pipeline.py``) feeds one stage from the last: by tensor name.
Weights are drawn from the same seeded generator in the same order as ``synthetic.build_conv_stack``,
so the N segments run one after the other compute exactly what the unsegmented model computes.

Layers are split as the stand-in compiler splits mapped ops (``farm_lab/standin_compiler.py``):
segment K takes layers ``[K·L/N, (K+1)·L/N)``.
"""

from __future__ import annotations

import numpy as np

from ..store.db import Store
from ..store.schema import ModelRow
from .flatbuild import Activation, BuiltinOperator, BuiltinOptions, GraphBuilder, Padding, TensorType
from .synthetic import INPUT_QUANT, _check, conv2d


def segment_bounds(layers: int, segments: int) -> list[tuple[int, int]]:
    """[(first layer, end layer)) of each segment, 0-based."""
    return [(k * layers // segments, (k + 1) * layers // segments) for k in range(segments)]


def build_conv_stack_segments(layers: int, segments: int, *, size: int = 128, channels: int = 3, kernel: int = 7,
                              filters: int = 32, seed: int = 0) -> list[bytes]:
    """The N segment models of ``build_conv_stack(layers, ...)`` with the same parameters."""
    _check("layers", layers, 1, 2000)
    _check("segments", segments, 2, 64)
    if segments > layers:
        raise ValueError(f"cannot cut {layers} layer(s) into {segments} segments: each needs a convolution")
    _check("size", size, 1, 2048)
    _check("channels", channels, 1, 1024)
    _check("kernel", kernel, 1, 31)
    _check("filters", filters, 1, 1024)
    rng = np.random.default_rng(seed)  # one generator across the segments: the same draws, in the same order
    out = []
    for number, (first, end) in enumerate(segment_bounds(layers, segments)):
        graph = GraphBuilder(f"farm conv_stack layers={layers} size={size} channels={channels} kernel={kernel} "
                             f"filters={filters} seed={seed} segment={number} of {segments}")
        if number == 0:
            x = graph.tensor("input", (1, 1, 1, channels), quant=INPUT_QUANT)
            entry = x
            paddings = graph.tensor("paddings", (4, 2), TensorType.INT32,
                                    data=np.array([[0, 0], [0, size - 1], [0, size - 1], [0, 0]]))
            padded = graph.tensor("padded", (1, size, size, channels), quant=INPUT_QUANT)
            graph.op(BuiltinOperator.PAD, [x, paddings], [padded], BuiltinOptions.PadOptions)
            x, depth = padded, channels
        else:
            # The tensor the segment before wrote, by its name; conv outputs keep INPUT_QUANT's scale.
            x = graph.tensor(f"conv{first}", (1, size, size, filters), quant=INPUT_QUANT)
            entry, depth = x, filters
        for index in range(first, end):
            x = conv2d(graph, rng, x, f"conv{index + 1}", filters, kernel, depth)
            depth = filters
        if number == segments - 1:
            pooled = graph.tensor("pooled", (1, 1, 1, depth), quant=graph.quant(x))
            graph.op(BuiltinOperator.AVERAGE_POOL_2D, [x], [pooled], BuiltinOptions.Pool2DOptions,
                     Padding=Padding.VALID, StrideW=1, StrideH=1, FilterWidth=size, FilterHeight=size,
                     FusedActivationFunction=Activation.NONE)
            x = pooled
        out.append(graph.finish([entry], [x]))
    return out


def register_segments(store: Store, source: ModelRow, count: int) -> list[tuple[ModelRow, bool]]:
    """Build and register the ``count`` CPU segments of a registered conv stack, linked to it.

    Each is named ``<source>-seg<K>of<N>`` and carries ``segment``, ``num_segments`` and ``segment_of``
    (the source's sha256) in its params, which is how a matrix's ``segments: [N]`` finds them.
    """
    from ..errors import FarmError
    from . import registry

    if source.family != "conv_stack" or source.source != "generated" or source.needs_edgetpu:
        raise FarmError(f"farm cuts its own conv stacks into CPU segments; {source.name} is a {source.source} "
                        f"{source.family} model (compile Edge TPU segments with farm models compile --num-segments)")
    params = {key: value for key, value in (source.params or {}).items()
              if key in ("layers", "size", "channels", "kernel", "filters", "seed")}
    try:
        parts = build_conv_stack_segments(params.pop("layers"), count, **params)
    except ValueError as exc:
        raise FarmError(f"cannot cut {source.name} into {count} segments: {exc}") from None
    rows = []
    for number, data in enumerate(parts):
        rows.append(registry.register_bytes(
            store, data, name=f"{source.name}-seg{number}of{count}", family=source.family,
            params={**source.params, "segment": number, "num_segments": count, "segment_of": source.sha256},
            source="generated", source_model_id=source.id))
    return rows
