"""The seeds' tables, computed from a results frame (``orchestrator.results.results_frame``) with pandas.

Every table keeps only the dimensions the data has: a column such as power mode or USB speed
that is empty for every row is left out. When the selected runs hold the same cell more than
once, the newest result stands for it.
"""

from __future__ import annotations

import pandas as pd

from ..results import ModelInfo
from . import interference

MIB = 1024 * 1024
# A cell is what makes two results comparable; the newest run wins within one.
CELL = ["host", "model_sha256", "delegate", "threads", "power_mode", "usb_port"]
DIMENSIONS = ["host", "power_mode", "usb_speed", "delegate"]
# --stat: the centre a table shows and the spread beside it. SEEDS §1 tabled means of 20 runs, farm's default
# is the median (robust to the odd slow invoke); p90 is the tail a latency budget cares about.
STATS = {"median": ("median_ms", "p90_ms"), "mean": ("mean_ms", "std_ms"), "p90": ("p90_ms", "p99_ms")}


def stat_columns(stat: str) -> tuple[str, str]:
    """(centre, spread) v_results columns for a --stat value."""
    if stat not in STATS:
        from ..errors import FarmError

        raise FarmError(f"--stat {stat!r}: expected one of {', '.join(STATS)}")
    return STATS[stat]


def newest_per_cell(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame["status"] == "succeeded"]
    if ok.empty:
        return ok
    # Backend and precision are dimensions of a cell too, where the view has them (migration 0017).
    cell = CELL + [c for c in ("backend", "precision") if c in ok]
    keyed = ok.assign(**{k: ok[k].astype("string").fillna("-") for k in cell})
    # Within one run the later job wins (the same choice as the report's query, results.rows.newest_query);
    # a frame without job ids keeps its own order among them: the sort is stable.
    order = ["run_id", *(["job_id"] if "job_id" in ok else [])]
    keep = keyed.sort_values(order, kind="stable").drop_duplicates(cell, keep="last").index
    return ok.loc[sorted(keep)].reset_index(drop=True)


def _present(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in frame and frame[c].notna().any()]


def _order(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by, key=lambda s: s.astype("string").fillna("") if s.name != "layers_key" else s,
                             kind="stable").reset_index(drop=True)


def _sorted_models(frame: pd.DataFrame) -> pd.DataFrame:
    # Conv stacks sort by depth (10, 20 … 300), not as text (10, 100, 20 …).
    keyed = frame.assign(layers_key=frame["layers"].fillna(-1).astype(int) if "layers" in frame else -1)
    return keyed


def latency(frame: pd.DataFrame, stat: str = "median") -> pd.DataFrame:
    """The centre and its spread (ms; median and p90 by default) by model × host × power mode × USB speed ×
    delegate × threads."""
    centre, spread = stat_columns(stat)
    rows = newest_per_cell(frame)
    if rows.empty:
        return pd.DataFrame()
    keys = ["model", *_present(rows, ["host", "power_mode", "usb_speed"]), "delegate", "threads"]
    out = _sorted_models(rows)
    out = out.sort_values(["model_family", "layers_key", "model", *keys[1:]],
                          key=lambda s: s if s.name == "layers_key" else s.astype("string").fillna(""),
                          kind="stable")
    out = out.assign(marks=interference.marks(out))
    marks = ["marks"] if out["marks"].astype(bool).any() else []
    return out[[*keys, centre, spread, "samples", *_present(out, ["simulated"]), *marks]].reset_index(drop=True)


def thread_sweep(frame: pd.DataFrame, stat: str = "median") -> dict[str, pd.DataFrame]:
    """SEEDS §1 layout: one block per host (and power mode), models as rows, threads as columns (the centre,
    then its spread: '2 thr' and '2 thr p90'); an Edge TPU model's row names the USB speed it ran at. Only
    cells measured at more than one thread count are a sweep."""
    centre, spread = stat_columns(stat)
    spread_label = spread.removesuffix("_ms")
    rows = newest_per_cell(frame)
    if rows.empty:
        return {}
    rows = rows.assign(usb=rows["usb_speed"].map(usb_label))
    block_keys = ["host", *_present(rows, ["power_mode"])]
    row_keys = ["model", "delegate", *(["usb"] if (rows["usb"] != "-").any() else [])]
    # One groupby over every block, then split: two pivots per block cost 0.1 s each, seconds on a lab of hosts.
    swept = rows.groupby([*block_keys, *row_keys], dropna=False)["threads"].transform("nunique") > 1
    rows = _sorted_models(rows[swept])
    if rows.empty:
        return {}
    index = [*block_keys, "model_family", "layers_key", *row_keys]
    values = rows.groupby([*index, "threads"], dropna=False, sort=True)[[centre, spread]].first().unstack("threads")
    disturbed = rows[interference.disturbed(rows)]
    not_free = disturbed.groupby([*block_keys, *row_keys], dropna=False)["threads"].agg(
        lambda t: ", ".join(str(n) for n in sorted(t)))
    blocks: dict[str, pd.DataFrame] = {}
    for key, block in values.groupby(level=block_keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        centres = block[centre].dropna(axis=1, how="all")  # this block's thread counts only
        spreads = block[spread]
        # The row keys as columns, then the numbers: built at once, not through reset_index and drop, which
        # copied a 7-level index per block (most of the sweep's time on 70 blocks).
        keys = block.index.to_frame(index=False)[row_keys]
        table = pd.DataFrame({**{name: keys[name] for name in row_keys},
                              **{name: column.to_numpy() for t in centres.columns for name, column in
                                 ((f"{t} thr", centres[t]), (f"{t} thr {spread_label}", spreads[t]))}})
        if not not_free.empty:
            # A thread count whose cores were not free (the agent found the loop disturbed) is named per row.
            marks = [_lookup(not_free, (*key, *r)) for r in table[row_keys].itertuples(index=False)]
            if any(marks):
                table["cores not free at"] = marks
        title = " · ".join(_label(k, v) for k, v in zip(block_keys, key, strict=True) if not _missing(v))
        blocks[title] = table.rename(columns={"usb": "USB"})
    return blocks


def _lookup(series: pd.Series, key: tuple) -> str:
    try:
        return str(series.get(key, ""))
    except (KeyError, TypeError):  # a key holding NaN (a row without a power mode)
        return ""


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA


def _label(column: str, value: object) -> str:
    if column == "usb_speed":
        return usb_label(value)
    return str(value)


def usb_label(speed: object) -> str:
    if _missing(speed):
        return "-"
    speed = int(speed)  # type: ignore[call-overload]
    return {480: "USB2", 5000: "USB3", 10000: "USB3.1", 12: "USB1.1"}.get(speed, f"{speed} Mb/s")


def _best_over_threads(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    best = rows.loc[rows.groupby(keys, dropna=False)["median_ms"].idxmin()]
    return best


def speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """SEEDS §2 layout: per source model, host and power mode, the CPU time, the Edge TPU time at each USB
    speed, and the speed-up (CPU / Edge TPU). Each side is its best thread count.

    The Edge TPU runs the compiled model and the CPU its source, so rows meet on ``source_model``."""
    rows = newest_per_cell(frame)
    if rows.empty or not (rows["delegate"] == "edgetpu").any() or not (rows["delegate"] == "cpu").any():
        return pd.DataFrame()
    rows = _sorted_models(rows.assign(power_mode=rows["power_mode"].fillna("-")))
    group = ["host", "power_mode", "source_model"]
    cpu = _best_over_threads(rows[rows["delegate"] == "cpu"], group)
    tpu = rows[rows["delegate"] == "edgetpu"].assign(usb=lambda f: f["usb_speed"].map(usb_label))
    tpu = _best_over_threads(tpu, [*group, "usb"])
    base = cpu[[*group, "model_family", "layers_key", "median_ms", "ops_per_inference"]].rename(
        columns={"median_ms": "cpu_ms"})
    speeds = sorted(tpu["usb"].unique(), key=lambda u: _speed_order(u))
    table = base
    for usb in speeds:
        side = tpu[tpu["usb"] == usb][[*group, "median_ms"]].rename(columns={"median_ms": f"edgetpu_{usb}_ms"})
        table = table.merge(side, on=group, how="inner" if len(speeds) == 1 else "left")
    if "simulated" in tpu and tpu["simulated"].notna().any():
        # A row whose Edge TPU side ran on the simulated lab's stand-in says so (SEEDS' numbers are hardware).
        marks = tpu.groupby(group, dropna=False)["simulated"].agg(lambda v: ", ".join(sorted(set(v.dropna()))) or None)
        table = table.merge(marks.rename("simulated").reset_index(), on=group, how="left")
    for usb in speeds:
        table[f"speedup_{usb}"] = table["cpu_ms"] / table[f"edgetpu_{usb}_ms"]
    for usb in speeds[1:]:  # how much a slower port costs (SEEDS §2: USB2 is 3-5x slower on real models)
        table[f"{usb}_vs_{speeds[0]}"] = table[f"edgetpu_{usb}_ms"] / table[f"edgetpu_{speeds[0]}_ms"]
    table = table.dropna(subset=[f"edgetpu_{u}_ms" for u in speeds], how="all")
    table = table.sort_values(["host", "power_mode", "model_family", "layers_key", "source_model"], kind="stable")
    out = table.drop(columns=["model_family", "layers_key", "ops_per_inference"]).rename(
        columns={"source_model": "model"})
    if (out["power_mode"] == "-").all():
        out = out.drop(columns=["power_mode"])
    return out.reset_index(drop=True)


def _speed_order(label: str) -> tuple[int, str]:
    order = {"USB3.1": 0, "USB3": 1, "USB2": 2, "USB1.1": 3, "-": 9}
    return order.get(label, 5), label


def mode_order(name: str) -> tuple[float, str]:
    """Highest wattage first (10W before 5W, MAXN after numbers), then by name."""
    digits = "".join(c for c in name if c.isdigit() or c == ".")
    try:
        return -float(digits), name
    except ValueError:
        return 0.0, name


def power_modes(frame: pd.DataFrame) -> pd.DataFrame:
    """The same model, host, delegate and USB speed at each power mode (each at its fastest thread count),
    and how many times slower each mode is than the first (highest) one."""
    rows = newest_per_cell(frame)
    if rows.empty or rows["power_mode"].dropna().nunique() < 2:
        return pd.DataFrame()
    rows = _sorted_models(rows[rows["power_mode"].notna()].assign(usb=lambda f: f["usb_speed"].map(usb_label)))
    keys = ["model", "host", "delegate", "usb"]
    best = _best_over_threads(rows, [*keys, "power_mode"])
    modes = sorted(best["power_mode"].unique(), key=mode_order)
    table = best.pivot_table(index=["model_family", "layers_key", *keys], columns="power_mode", values="median_ms",
                             aggfunc="first")
    table = table[[m for m in modes if m in table.columns]]
    measured = table.notna().sum(axis=1) >= 2
    table = table[measured]
    if table.empty:
        return pd.DataFrame()
    out = table.reset_index().drop(columns=["model_family", "layers_key"])
    out.columns.name = None
    for mode in modes[1:]:
        out[f"{mode}_vs_{modes[0]}"] = out[mode] / out[modes[0]]
    out = out.rename(columns={m: f"{m}_ms" for m in modes})
    if (out["usb"] == "-").all():
        out = out.drop(columns=["usb"])
    return out.rename(columns={"usb": "USB"}).reset_index(drop=True)


def throughput(frame: pd.DataFrame) -> pd.DataFrame:
    """Achieved GOPS and TOPS from the model's operations per inference (multiply + add = 2) and the median."""
    rows = newest_per_cell(frame)
    rows = rows[rows["ops_per_inference"].notna()] if not rows.empty else rows
    if rows.empty:
        return pd.DataFrame()
    keys = ["model", *_present(rows, ["host", "power_mode", "usb_speed"]), "delegate", "threads"]
    rows = _sorted_models(rows)
    rows = rows.sort_values(["model_family", "layers_key", "model", *keys[1:]],
                            key=lambda s: s if s.name == "layers_key" else s.astype("string").fillna(""),
                            kind="stable")
    ops = rows["ops_per_inference"].astype(float)
    out = rows[keys].copy()
    out["gops_per_inference"] = ops / 1e9
    out["median_ms"] = rows["median_ms"]
    out["gops"] = ops / (rows["median_ms"] * 1e6)
    out["tops"] = out["gops"] / 1000
    return out.reset_index(drop=True)


def compiler_report(frame: pd.DataFrame, models: dict[str, ModelInfo]) -> pd.DataFrame:
    """Per compiled model in the results: sizes, on-chip memory, off-chip streaming, ops on TPU / CPU."""
    shas = [s for s in dict.fromkeys(frame["model_sha256"].dropna()) if s in models and models[s].compile_report]
    rows = []
    for sha in shas:
        info = models[sha]
        report = info.compile_report or {}
        summary = report.get("summary") or {}
        source = models.get(info.source_sha256 or "")
        capacity = summary.get("on_chip_capacity_bytes") or summary.get("on_chip_available_bytes")
        rows.append({
            "model": source.name if source else info.name,
            "layers_key": (source or info).layers if (source or info).layers is not None else -1,
            "family": info.family,
            "compiler": info.compiler_version or report.get("compiler_version"),
            "tflite_mib": source.size_bytes / MIB if source else None,
            "edgetpu_mib": info.size_bytes / MIB,
            "on_chip_available_mib": _mib(capacity),
            "on_chip_used_mib": _mib(summary.get("on_chip_used_bytes")),
            "off_chip_used_mib": _mib(summary.get("off_chip_used_bytes")),
            "ops_on_tpu": summary.get("tpu_ops"),
            "ops_on_cpu": summary.get("cpu_ops"),
        })
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows).sort_values(["family", "layers_key", "model"], kind="stable")
    return out.drop(columns=["layers_key", "family"]).reset_index(drop=True)


def _mib(value: object) -> float | None:
    return None if value is None else float(value) / MIB  # type: ignore[arg-type]


CONTEXT = ["board", "runtime", "runtime_version", "python", "os", "kernel", "l4t", "jetpack", "libedgetpu",
           "compiler_version"]


def hosts_and_toolchains(frame: pd.DataFrame) -> pd.DataFrame:
    """Per host, what its results were measured with; several values mean the selection mixes versions."""
    rows = frame[frame["status"] == "succeeded"]
    columns = _present(rows, [c for c in CONTEXT if c in rows])
    if rows.empty or not columns:
        return pd.DataFrame()
    # The distinct rows first: the text join below is Python per value, and a host's results repeat its toolchain.
    distinct = rows[["host", *columns]].drop_duplicates()
    out = distinct.groupby("host", sort=True)[columns].agg(
        lambda values: ", ".join(sorted({str(v) for v in values.dropna()})))
    return out.reset_index()
