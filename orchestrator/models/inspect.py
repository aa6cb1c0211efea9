"""Read what a .tflite file is without running it: tensors, custom ops, validity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tflite

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
_TYPE_NAMES = {value: name.lower() for name, value in vars(tflite.TensorType).items() if name.isupper()}


class ModelFormatError(ValueError):
    """The bytes are not a usable TFLite flatbuffer."""


@dataclass(frozen=True)
class ModelInfo:
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    custom_ops: list[str] = field(default_factory=list)

    @property
    def needs_edgetpu(self) -> bool:
        return EDGETPU_CUSTOM_OP in self.custom_ops


def inspect_model(data: bytes) -> ModelInfo:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError("not a TFLite model (the file lacks the 'TFL3' flatbuffer identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ModelFormatError("the model has no subgraph")
        graph = model.Subgraphs(0)
        inputs = [_tensor(graph, graph.Inputs(i)) for i in range(graph.InputsLength())]
        outputs = [_tensor(graph, graph.Outputs(i)) for i in range(graph.OutputsLength())]
        custom = []
        for index in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(index)
            if code.CustomCode():
                custom.append(code.CustomCode().decode("utf-8", "replace"))
        _touch_buffers(model)
    except ModelFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffers reports damage as struct/index/unicode errors
        raise ModelFormatError(f"the TFLite flatbuffer is damaged or truncated ({type(exc).__name__}: {exc})") \
            from None
    return ModelInfo(inputs=inputs, outputs=outputs, custom_ops=custom)


def _tensor(graph: Any, index: int) -> dict[str, Any]:
    tensor = graph.Tensors(index)
    shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    return {"name": (tensor.Name() or b"").decode("utf-8", "replace"), "shape": shape,
            "dtype": _TYPE_NAMES.get(tensor.Type(), str(tensor.Type()))}


def _touch_buffers(model: Any) -> None:
    # Reading every buffer's length walks the whole file, so truncation shows up here
    # rather than as a crash inside the interpreter on the device.
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        length = buffer.DataLength()
        if length:
            buffer.Data(length - 1)
