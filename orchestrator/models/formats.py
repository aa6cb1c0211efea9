"""Which file format a model is, and its reader: TFLite flatbuffers and ONNX protobufs.

The registry, ``farm models add`` and the matrix ask here, so each format's reader stays in its
own module (``inspect``/``opcount`` for TFLite, ``onnx_model`` for ONNX) and the ``onnx`` package
is imported only for ONNX files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .inspect import ModelFormatError, ModelInfo, inspect_model

FORMATS = ("tflite", "onnx")
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx"}


def format_of(data: bytes) -> str:
    """"tflite" or "onnx"; ModelFormatError naming both when the bytes are neither."""
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return "tflite"
    from .onnx_model import looks_like_onnx

    if looks_like_onnx(data):
        return "onnx"
    raise ModelFormatError("not a TFLite model (the file lacks the 'TFL3' flatbuffer identifier) nor an ONNX "
                           "model (no ModelProto header)")


def inspect_any(data: bytes) -> tuple[str, ModelInfo]:
    kind = format_of(data)
    if kind == "onnx":
        from .onnx_model import inspect_onnx

        return kind, inspect_onnx(data)
    return kind, inspect_model(data)


def count_any(data: bytes) -> Any:
    """The OpCount of either format; ValueError for unreadable bytes."""
    if format_of(data) == "onnx":
        from .onnx_model import count_onnx_ops

        return count_onnx_ops(data)
    from .opcount import count_ops

    return count_ops(data)


def format_of_path(path: str | Path) -> str:
    """A registered model's format, from the suffix its cached file is stored under."""
    return "onnx" if str(path).endswith(".onnx") else "tflite"


def native_precision(kind: str, inputs: list[dict[str, Any]]) -> str:
    """The precision the file itself runs at, read from its first input: int8 TFLite, fp32 ONNX, ..."""
    dtype = inputs[0]["dtype"] if inputs else "float32"
    return {"float32": "fp32", "float16": "fp16", "int8": "int8", "uint8": "int8"}.get(dtype, dtype)
