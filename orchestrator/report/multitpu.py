"""SEEDS §3's comparisons from stored results: Edge TPUs side by side, model placements, pipelines.

* ``side_by_side``: per model, host and Edge TPU, the median alone (no other job held a lock on the
  host during the timed window) and beside others (``concurrency: per-accelerator``), and the host's
  total throughput: the most inferences per second its jobs made together while their timed windows
  overlapped.
* ``placements``: a multi-model cell under each placement (same-tpu, separate-tpus, cocompiled) side by
  side: each model's median and the cell's throughput.
* ``pipelines``: a model on one device vs its N-segment pipelines: latency and throughput.
"""

from __future__ import annotations

import pandas as pd

from .tables import newest_per_cell

MULTI_COLUMNS = ("placement", "num_segments", "models_in_cell")


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one-model rows, multi-model and pipeline rows): the seeds' older tables read only the first kind."""
    multi = pd.Series(False, index=frame.index)
    for column in MULTI_COLUMNS:
        if column in frame:
            multi |= frame[column].notna()
    return frame[~multi].reset_index(drop=True), frame[multi].reset_index(drop=True)


def side_by_side(frame: pd.DataFrame) -> pd.DataFrame:
    """Median latency alone vs beside other jobs, per model × host × device, and the host's total throughput."""
    if "jobs_beside" not in frame or not (frame["jobs_beside"].fillna(0) > 0).any():
        return pd.DataFrame()
    ok = frame[frame["status"] == "succeeded"].copy()
    ok["device"] = ok["edgetpu_device"].where(ok["edgetpu_device"].notna(), ok["delegate"])
    rows = []
    for (model, host, device), group in ok.groupby(["model", "host", "device"], sort=True):
        alone = group[group["jobs_beside"].fillna(0) == 0]
        beside = group[group["jobs_beside"].fillna(0) > 0]
        if beside.empty:
            continue
        alone_ms = float(alone.sort_values("run_id")["median_ms"].iloc[-1]) if not alone.empty else None
        beside_ms = float(beside.sort_values("run_id")["median_ms"].iloc[-1])
        rows.append({"model": model, "host": host, "device": device, "alone_ms": alone_ms, "side_by_side_ms": beside_ms,
                     "slowdown": beside_ms / alone_ms if alone_ms else None,
                     "jobs_beside": int(beside["jobs_beside"].max())})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    totals = host_totals(ok)
    return out.merge(totals, on="host", how="left")


def host_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per host: the largest sum of throughputs of per-accelerator jobs of one run whose timed windows all
    contain one moment, and how many jobs that was."""
    rows = []
    needed = {"window_start", "window_end", "throughput_ips", "concurrency"}
    if not needed <= set(frame):
        return pd.DataFrame(columns=["host", "jobs_at_once", "host_total_ips"])
    timed = frame[frame["concurrency"] == "per-accelerator"].dropna(subset=list(needed - {"concurrency"}))
    for host, group in timed.groupby("host", sort=True):
        best, count = 0.0, 0
        for _, run in group.groupby("run_id"):
            for start in run["window_start"]:  # the busiest moment is some window's start
                inside = run[(run["window_start"] <= start) & (run["window_end"] > start)]
                total = float(inside["throughput_ips"].sum())
                if total > best:
                    best, count = total, len(inside)
        rows.append({"host": host, "jobs_at_once": count, "host_total_ips": best})
    return pd.DataFrame(rows, columns=["host", "jobs_at_once", "host_total_ips"])


def placements(frame: pd.DataFrame) -> pd.DataFrame:
    """Each model set × host: per placement, each model's median (ms) and the cell's throughput."""
    if "placement" not in frame or "model_set" not in frame:
        return pd.DataFrame()
    ok = frame[(frame["status"] == "succeeded") & frame["model_set"].notna()]
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for (model_set, host, placement, delegate), group in ok.groupby(
            ["model_set", "host", ok["placement"].fillna("-"), "delegate"], sort=True):
        newest = group.sort_values("run_id").iloc[-1]
        medians = [newest.get(f"model_{k}_ms") for k in range(3)]
        rows.append({"models": model_set, "host": host, "delegate": delegate, "placement": placement,
                     "per_model_ms": " / ".join(f"{m:.2f}" for m in medians if pd.notna(m)),
                     "round_ms": float(newest["median_ms"]), "cell_ips": newest.get("throughput_ips")})
    return pd.DataFrame(rows)


def pipelines(frame: pd.DataFrame) -> pd.DataFrame:
    """Each model × host × delegate: on one device, and as each N-segment pipeline (latency, throughput)."""
    if "num_segments" not in frame or not frame["num_segments"].notna().any():
        return pd.DataFrame()
    ok = frame[frame["status"] == "succeeded"]
    piped = ok[ok["num_segments"].notna()]
    whole = newest_per_cell(ok[ok["num_segments"].isna() & ok.get("placement", pd.Series(index=ok.index)).isna()])
    rows = []
    for (source, host, delegate), group in piped.groupby(["source_model", "host", "delegate"], sort=True):
        single = whole[(whole["source_model"] == source) & (whole["host"] == host) & (whole["delegate"] == delegate)]
        row = {"model": source, "host": host, "delegate": delegate}
        if not single.empty:
            best = single.sort_values("median_ms").iloc[0]
            row.update({"1 device ms": float(best["median_ms"]), "1 device ips": best.get("throughput_ips")})
        for count, members in group.groupby("num_segments", sort=True):
            newest = members.sort_values("run_id").iloc[-1]
            row[f"{int(count)} segments ms"] = float(newest["median_ms"])
            row[f"{int(count)} segments ips"] = newest.get("throughput_ips")
        rows.append(row)
    return pd.DataFrame(rows)
