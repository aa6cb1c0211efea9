"""The seeds' charts as PNG bytes (matplotlib, Agg: no display needed).

Latency spans three orders of magnitude between a CPU and an Edge TPU (SEEDS §2: 1200 ms vs 8 ms),
so latency axes are logarithmic whenever the data spans more than a factor of 30.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .tables import newest_per_cell, usb_label

LOG_SPAN = 30.0


@dataclass(frozen=True)
class Plot:
    title: str
    caption: str
    png: bytes
    slug: str


def _pyplot() -> Any:
    """matplotlib's pyplot, loaded when a plot is drawn: a report for the terminal draws none, and matplotlib
    takes longer to import than the rest of `farm report` (README, "Short commands")."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display on a lab controller
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    return buffer.getvalue()


def _scale(ax, values: pd.Series, label: str) -> None:  # type: ignore[no-untyped-def]
    positive = values[values > 0]
    if not positive.empty and positive.max() / positive.min() > LOG_SPAN:
        ax.set_yscale("log")
        label += ", log scale"
    ax.set_ylabel(label + ")")


def _series_label(host: str | None, delegate: str, power: object, usb: object, hosts: int) -> str:
    parts = [host] if hosts > 1 and host else []
    parts.append("Edge TPU" if delegate == "edgetpu" else delegate.upper())
    if isinstance(power, str) and power != "-":
        parts.append(power)
    if delegate == "edgetpu" and usb_label(usb) != "-":
        parts.append(usb_label(usb))
    return " · ".join(parts)


def latency_vs_layers(frame: pd.DataFrame) -> list[Plot]:
    """One chart per model family measured at two or more depths: median latency against layer count,
    one line per host / delegate / power mode / USB speed, each point its fastest thread count."""
    rows = newest_per_cell(frame)
    if rows.empty or rows["layers"].isna().all():
        return []
    rows = rows[rows["layers"].notna()].assign(power_mode=lambda f: f["power_mode"].fillna("-"),
                                               usb=lambda f: f["usb_speed"].map(usb_label))
    plots = []
    for family, fam in rows.groupby("model_family", sort=True):
        if fam["layers"].nunique() < 2:
            continue
        best = fam.loc[fam.groupby(["host", "delegate", "power_mode", "usb", "layers"])["median_ms"].idxmin()]
        fig, ax = _pyplot().subplots(figsize=(7.5, 4.5))
        hosts = best["host"].nunique()
        for (host, delegate, power, usb), line in best.groupby(["host", "delegate", "power_mode", "usb"], sort=True):
            line = line.sort_values("layers")
            ax.plot(line["layers"].astype(int), line["median_ms"], marker="o",
                    linestyle="-" if delegate == "edgetpu" else "--",
                    label=_series_label(host, delegate, power, line["usb_speed"].iloc[0], hosts))
        _scale(ax, best["median_ms"], "median latency per inference (ms")
        ax.set_xlabel("layers in the model")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{family}: latency vs depth")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        plots.append(Plot(f"{family}: latency vs layer count",
                          "Median of the timed invokes; each point at its fastest thread count.",
                          _png(fig), f"latency-vs-layers-{family}"))
    return plots


def thread_sweep_bars(frame: pd.DataFrame) -> list[Plot]:
    """Grouped bars per host (and power mode): models along x, one bar per thread count."""
    rows = newest_per_cell(frame)
    if rows.empty:
        return []
    rows = rows.assign(power_mode=rows["power_mode"].fillna("-"))
    plots = []
    for (host, power), block in rows.groupby(["host", "power_mode"], sort=True):
        swept = block.groupby(["model", "delegate", block["usb_speed"].fillna(0)])["threads"].transform("nunique") > 1
        block = block[swept]
        if block.empty:
            continue
        tpu = [f" (Edge TPU{'' if usb_label(u) == '-' else ', ' + usb_label(u)})" if d == "edgetpu" else ""
               for d, u in zip(block["delegate"], block["usb_speed"], strict=True)]
        # A compiled model's name repeats its source's plus the compiler version: the source's reads better.
        keyed = block.assign(label=block["source_model"] + pd.Series(tpu, index=block.index),
                             depth=block["layers"].fillna(-1).astype(int))
        order = keyed.sort_values(["model_family", "depth", "model"])["label"].drop_duplicates().tolist()
        table = keyed.pivot_table(index="label", columns="threads", values="median_ms", aggfunc="first").loc[order]
        fig, ax = _pyplot().subplots(figsize=(max(6.0, 1.3 * len(order) + 2), 4.5))
        width = 0.8 / len(table.columns)
        for k, threads in enumerate(table.columns):
            positions = [i + (k - (len(table.columns) - 1) / 2) * width for i in range(len(order))]
            ax.bar(positions, table[threads], width=width, label=f"{threads} thread{'s' if threads > 1 else ''}")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=20, ha="right", fontsize="small")
        _scale(ax, keyed["median_ms"], "median latency per inference (ms")
        ax.set_xlabel("model")
        where = host if power == "-" else f"{host} at {power}"
        ax.set_title(f"Thread sweep on {where}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize="small")
        plots.append(Plot(f"Thread sweep: {where}", "Median latency by thread count (SEEDS §1); lower is faster.",
                          _png(fig), _slug("threads", host, power)))
    return plots


def _slug(*parts: str) -> str:
    """A file name from the parts that say something ("-" is a missing power mode)."""
    text = "-".join(p for p in parts if p and p != "-")
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
