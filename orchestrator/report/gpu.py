"""GPU tables: achieved GFLOP/s against the GPU's peak at the clock it ran at, and FP16 over FP32.

SEEDS §4's arithmetic is what ``achieved_vs_peak`` computes for every GPU result:
peak = CUDA cores x clock x 2 (a fused multiply-add per core per clock), twice
that at FP16; the ideal time is the model's operations (multiply + add = 2) over
that peak, and measured / ideal says how far the runtime is from it (TensorRT's
GoogLeNet on a TX1: 4 ms ideal, about 3x that measured). The clock is the one
sampled while the result ran (``gpu_clock_hz``), not the board's maximum, and a
result that ran below its maximum clock is flagged, since its peak is lower.
"""

from __future__ import annotations

import pandas as pd

from .tables import _present

FP16_OVER_FP32 = 2.0
# A GPU cell: one model on one host through one runtime at one precision and launch mode.
GPU_CELL = ["host", "model_sha256", "delegate", "threads", "power_mode", "backend", "precision", "gpu_launch"]


def _newest(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    ok = frame[frame["status"] == "succeeded"]
    if ok.empty:
        return ok
    present = [k for k in keys if k in ok]
    keyed = ok.assign(**{k: ok[k].astype("string").fillna("-") for k in present})
    keep = keyed.sort_values("run_id").drop_duplicates(present, keep="last").index
    return ok.loc[sorted(keep)].reset_index(drop=True)


def peak_gflops(cores: pd.Series, clock_hz: pd.Series, precision: pd.Series) -> pd.Series:
    """The CUDA cores' peak at ``clock_hz``: FP32 2 x cores x clock, FP16 twice that; INT8 has no CUDA-core figure."""
    fp32 = cores.astype(float) * clock_hz.astype(float) * 2 / 1e9
    factor = precision.fillna("fp32").map({"fp32": 1.0, "fp16": FP16_OVER_FP32})
    return fp32 * factor


def precision_label(frame: pd.DataFrame) -> pd.Series:
    return frame["precision"].astype("string").fillna("fp32") if "precision" in frame else pd.Series(
        "fp32", index=frame.index)


def gpu_results(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest succeeded result of each GPU cell (results that recorded a GPU with CUDA cores)."""
    if "gpu_cuda_cores" not in frame:
        return pd.DataFrame()
    rows = _newest(frame[frame["gpu_cuda_cores"].notna()], GPU_CELL)
    return rows


def achieved_vs_peak(frame: pd.DataFrame) -> pd.DataFrame:
    """Per GPU result: the clock it ran at, achieved GFLOP/s, peak at that clock, share, ideal ms, measured/ideal."""
    rows = gpu_results(frame)
    if rows.empty:
        return pd.DataFrame()
    precision = precision_label(rows)
    clock = rows["gpu_clock_hz"].astype(float)
    ops = rows["ops_per_inference"].astype(float)
    median = rows["median_ms"].astype(float)
    keys = ["model", "host", *_present(rows, ["power_mode"]), "gpu_module", "backend"]
    out = rows[keys].copy()
    out["precision"] = precision
    out["launch"] = rows.get("gpu_launch")
    out["median_ms"] = median
    out["clock_mhz"] = clock / 1e6
    out["below_max_clock"] = (rows["gpu_clock_min_hz"].astype(float) < rows["gpu_max_clock_hz"].astype(float)).map(
        {True: "yes", False: "no"})
    out["achieved_gflops"] = ops / (median * 1e6)
    out["peak_gflops"] = peak_gflops(rows["gpu_cuda_cores"], clock, precision)
    out["share_of_peak"] = out["achieved_gflops"] / out["peak_gflops"]
    out["ideal_ms"] = ops / (out["peak_gflops"] * 1e6)
    out["measured_vs_ideal"] = median / out["ideal_ms"]
    for column in ("h2d_ms", "d2h_ms", "engine_build_ms", "gpu_rail_w"):
        if column in rows and rows[column].notna().any():
            out[column] = rows[column].astype(float)
    return out.sort_values(["model", "host", "backend", "precision"], kind="stable").reset_index(drop=True)


def fp16_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """FP32 median / FP16 median of the same model, host, runtime and launch mode."""
    rows = gpu_results(frame)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(precision=precision_label(rows), launch=rows["gpu_launch"].astype("string").fillna("-")
                       if "gpu_launch" in rows else "-")
    keys = ["model", "host", "backend", "launch"]
    table = rows.pivot_table(index=keys, columns="precision", values="median_ms", aggfunc="first")
    if "fp32" not in table or "fp16" not in table:
        return pd.DataFrame()
    table = table.dropna(subset=["fp32", "fp16"]).reset_index()
    out = table[keys].copy()
    out["fp32_ms"], out["fp16_ms"] = table["fp32"], table["fp16"]
    out["fp16_speedup"] = table["fp32"] / table["fp16"]
    if "int8" in table:
        out["int8_ms"] = table["int8"]
    return out.reset_index(drop=True)



def launch_modes(frame: pd.DataFrame) -> pd.DataFrame:
    """Median ms per launch mode (sync, async, graph) of the same model, host, backend and precision, and how
    many times slower synchronous launches are than one enqueue of the whole network (SEEDS §4's Caffe lesson)."""
    rows = gpu_results(frame)
    if rows.empty or "gpu_launch" not in rows or rows["gpu_launch"].nunique() < 2:
        return pd.DataFrame()
    rows = rows.assign(precision=precision_label(rows))
    keys = ["model", "host", "backend", "precision"]
    table = rows.pivot_table(index=keys, columns="gpu_launch", values="median_ms", aggfunc="first")
    table = table[table.notna().sum(axis=1) > 1].reset_index()
    if table.empty:
        return pd.DataFrame()
    out = table[keys].copy()
    for mode in ("sync", "async", "graph"):
        if mode in table:
            out[f"{mode}_ms"] = table[mode]
    for mode in ("async", "graph"):
        if "sync" in table and mode in table:
            out[f"sync_vs_{mode}"] = table["sync"] / table[mode]
    return out.reset_index(drop=True)
