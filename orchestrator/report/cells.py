"""How a report's values read as text: units by column name, the same in every output format."""

from __future__ import annotations

import math

import pandas as pd

from .tables import usb_label

HEADERS = {
    "median_ms": "median ms", "p90_ms": "p90 ms", "cpu_ms": "CPU ms", "power_mode": "power", "usb_speed": "USB",
    "gops_per_inference": "G-ops/inference", "gops": "GOPS", "tops": "TOPS", "tflite_mib": "tflite MiB",
    "edgetpu_mib": "edgetpu MiB", "on_chip_available_mib": "on-chip avail MiB", "on_chip_used_mib": "on-chip used MiB",
    "off_chip_used_mib": "off-chip used MiB", "ops_on_tpu": "ops on TPU", "ops_on_cpu": "ops on CPU",
    "runtime_version": "runtime version", "compiler_version": "edgetpu_compiler", "l4t": "L4T", "jetpack": "JetPack",
}


INTEGERS = ("threads", "samples", "ops_on_tpu", "ops_on_cpu", "run_id", "layers")


def header(column: object) -> str:
    name = str(column)
    if name.startswith("edgetpu_") and name.endswith("_ms"):
        return f"Edge TPU {name[8:-3]} ms"
    if name.startswith("speedup_"):
        return f"speed-up {name[8:]}"
    if "_vs_" in name:
        slower, faster = name.split("_vs_", 1)
        return f"{slower} / {faster}"
    if name.endswith("_ms") and name[:-3] not in ("median", "p90", "cpu", "mean"):
        return f"{name[:-3]} ms"
    return HEADERS.get(name, name)


def cell(column: object, value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    name = str(column)
    if name == "usb_speed":
        return usb_label(value)
    if name in INTEGERS:
        return str(int(value))  # type: ignore[call-overload]
    if isinstance(value, float):
        if name.startswith("speedup_") or "_vs_" in name:
            return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"
        if name == "tops":
            return f"{value:.3f}"
        if name.endswith("_mib"):
            return f"{value:.2f}"
        return _ms(value)
    return str(value)


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def text_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    columns = list(frame.columns)
    return [header(c) for c in columns], [[cell(c, v) for c, v in zip(columns, row, strict=True)]
                                          for row in frame.itertuples(index=False)]



def numeric(frame: pd.DataFrame) -> list[bool]:
    """Which columns to right-align: numbers, not names."""
    return [pd.api.types.is_numeric_dtype(frame[c]) and str(c) != "usb_speed" for c in frame.columns]
