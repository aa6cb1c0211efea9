"""One model, one board, every runtime: TFLite CPU, TFLite Edge TPU, ONNX Runtime CPU/CUDA/TensorRT, ...

A generated architecture has one model per file format (``conv_stack-l1`` and ``conv_stack-l1-onnx``,
``googlenet-s224`` and ``googlenet-s224-onnx``), so the rows meet on the model name without the
format's suffix. Each runtime at its fastest thread count; ``vs_fastest`` is its time over the
fastest runtime's on that host and power mode (1.0 for the fastest).
"""

from __future__ import annotations

import pandas as pd

RUNTIME_NAMES = {"tflite": "TFLite", "onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT"}
DELEGATE_NAMES = {"cpu": "CPU", "edgetpu": "Edge TPU", "cuda": "CUDA", "tensorrt": "TensorRT", "gpu": "GPU"}
FORMAT_SUFFIXES = ("-onnx",)


def architecture(model: str) -> str:
    for suffix in FORMAT_SUFFIXES:
        if model.endswith(suffix):
            return model[: -len(suffix)]
    return model


def runtime_label(backend: str | None, delegate: str | None) -> str:
    name = RUNTIME_NAMES.get(backend or "tflite", backend or "tflite")
    return f"{name} {DELEGATE_NAMES.get(delegate or 'cpu', delegate or '')}".strip()


def cross_runtime(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows (the newest result per cell, succeeded only) of architectures measured under more than one backend."""
    if rows.empty or "backend" not in rows:
        return pd.DataFrame()
    frame = rows.assign(architecture=rows["model"].map(architecture),
                        backend=rows["backend"].fillna("tflite"),
                        power_mode=rows["power_mode"].astype("string").fillna("-"),
                        precision=rows["precision"].astype("string").fillna("-") if "precision" in rows else "-")
    place = ["architecture", "host", "power_mode"]
    runtimes = frame.groupby(place)["backend"].transform("nunique")
    frame = frame[runtimes > 1]
    if frame.empty:
        return pd.DataFrame()
    # Each runtime at its fastest thread count.
    best = frame.loc[frame.groupby([*place, "backend", "delegate", "precision"])["median_ms"].idxmin()]
    best = best.assign(runtime=[runtime_label(b, d) for b, d in zip(best["backend"], best["delegate"], strict=True)])
    fastest = best.groupby(place)["median_ms"].transform("min")
    best = best.assign(vs_fastest=best["median_ms"] / fastest)
    columns = ["architecture", "host", "power_mode", "runtime", "precision", "model", "threads", "median_ms",
               "gops", "vs_fastest"]
    if (best["power_mode"] == "-").all():
        columns.remove("power_mode")
    best = best.sort_values(["architecture", "host", "power_mode", "median_ms"], kind="stable")
    return best[[c for c in columns if c in best]].reset_index(drop=True)
