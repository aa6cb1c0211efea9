"""The seeds' charts as PNG bytes (matplotlib, Agg: no display needed).

Latency spans three orders of magnitude between a CPU and an Edge TPU (SEEDS §2: 1200 ms vs 8 ms),
so latency axes are logarithmic whenever the data spans more than a factor of 30.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a lab controller
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .tables import newest_per_cell, stat_columns, usb_label

LOG_SPAN = 30.0


@dataclass(frozen=True)
class Plot:
    title: str
    caption: str
    png: bytes
    slug: str


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
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


def error_bars(points: pd.DataFrame, stat: str) -> list[list[float]]:
    """matplotlib's yerr (below, above) for the centre of --stat: ± the standard deviation around a mean,
    up to the p90 (or p99 for p90) above a percentile, none below it."""
    centre, spread = stat_columns(stat)
    values, other = points[centre].astype(float), points[spread].astype(float).fillna(0.0)
    if stat == "mean":
        return [other.tolist(), other.tolist()]
    return [[0.0] * len(points), (other - values).clip(lower=0.0).tolist()]


def latency_vs_layers(frame: pd.DataFrame, stat: str = "median") -> list[Plot]:
    """One chart per model family measured at two or more depths: latency (the --stat centre, with its
    spread as error bars) against layer count, one line per host / delegate / power mode / USB speed, each
    point its fastest thread count."""
    centre, _ = stat_columns(stat)
    rows = newest_per_cell(frame)
    if rows.empty or rows["layers"].isna().all():
        return []
    rows = rows[rows["layers"].notna()].assign(power_mode=lambda f: f["power_mode"].fillna("-"),
                                               usb=lambda f: f["usb_speed"].map(usb_label))
    plots = []
    for family, fam in rows.groupby("model_family", sort=True):
        if fam["layers"].nunique() < 2:
            continue
        best = fam.loc[fam.groupby(["host", "delegate", "power_mode", "usb", "layers"])[centre].idxmin()]
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        hosts = best["host"].nunique()
        for (host, delegate, power, usb), line in best.groupby(["host", "delegate", "power_mode", "usb"], sort=True):
            line = line.sort_values("layers")
            ax.errorbar(line["layers"].astype(int), line[centre], yerr=error_bars(line, stat), marker="o",
                        capsize=3, linestyle="-" if delegate == "edgetpu" else "--",
                        label=_series_label(host, delegate, power, line["usb_speed"].iloc[0], hosts))
        _scale(ax, best[centre], f"{stat} latency per inference (ms")
        ax.set_xlabel("layers in the model")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{family}: latency vs depth")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        plots.append(Plot(f"{family}: latency vs layer count",
                          f"{_stat_words(stat)}; each point at its fastest thread count.",
                          _png(fig), f"latency-vs-layers-{family}"))
    return plots


def thread_sweep_panels(frame: pd.DataFrame, stat: str = "median") -> list[Plot]:
    """Per host (and power mode), one panel per model: latency against thread count on a linear axis from
    zero, one line per delegate / USB speed, the spread as error bars. A shared log axis made the CPU
    models' gains look like nothing next to the Edge TPU's, and bars with a cut baseline overstated them."""
    centre, _ = stat_columns(stat)
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
        # A compiled model's name repeats its source's plus the compiler version: its source's reads better.
        keyed = block.assign(depth=block["layers"].fillna(-1).astype(int))
        order = keyed.sort_values(["model_family", "depth", "source_model"])["source_model"].drop_duplicates().tolist()
        columns = min(3, len(order))
        panel_rows = (len(order) + columns - 1) // columns
        fig, axes = plt.subplots(panel_rows, columns, figsize=(4.2 * columns, 3.4 * panel_rows), squeeze=False)
        for ax, source in zip(axes.flat, order, strict=False):
            model_rows = keyed[keyed["source_model"] == source]
            for (delegate, usb), line in model_rows.groupby(["delegate", model_rows["usb_speed"].fillna(0)],
                                                           sort=True):
                line = line.sort_values("threads")
                label = "Edge TPU" if delegate == "edgetpu" else str(delegate).upper()
                if delegate == "edgetpu" and usb_label(usb or None) != "-":
                    label += f" ({usb_label(usb)})"
                ax.errorbar(line["threads"].astype(int), line[centre], yerr=error_bars(line, stat), marker="o",
                            capsize=3, label=label)
            ax.set_title(source, fontsize="small")
            ax.set_xlabel("threads")
            ax.set_ylabel(f"{stat} latency (ms)")
            ax.set_ylim(bottom=0)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="x-small")
        for ax in list(axes.flat)[len(order):]:
            ax.set_visible(False)
        where = host if power == "-" else f"{host} at {power}"
        fig.suptitle(f"Thread sweep on {where}")
        plots.append(Plot(f"Thread sweep: {where}", f"{_stat_words(stat)} by thread count (SEEDS §1), one panel "
                          "per model; lower is faster.", _png(fig), _slug("threads", host, power)))
    return plots


def _stat_words(stat: str) -> str:
    return {"median": "Median of the timed invokes, bars up to the p90",
            "mean": "Mean of the timed invokes, bars ± one standard deviation",
            "p90": "p90 of the timed invokes, bars up to the p99"}[stat]


def _slug(*parts: str) -> str:
    """A file name from the parts that say something ("-" is a missing power mode)."""
    text = "-".join(p for p in parts if p and p != "-")
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
