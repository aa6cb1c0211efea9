"""Assemble a report: the seeds' tables and charts for whatever dimensions the selected results have."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..results import ModelInfo, ResultFilter, model_rows
from ..store.db import Store
from . import cross_runtime, edgetpu, gpu, inputs, interference, multitpu, plots, references, tables


@dataclass
class Section:
    title: str
    caption: str
    blocks: dict[str, pd.DataFrame]  # sub-title ("" for none) -> table


@dataclass
class Report:
    title: str
    runs: list[int]
    rows: int
    sections: list[Section] = field(default_factory=list)
    plots: list[plots.Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, title: str, block: str = "") -> pd.DataFrame:
        """A section's table by its title, for callers that want numbers, not text."""
        for section in self.sections:
            if section.title == title:
                return section.blocks[block]
        raise KeyError(title)


LATENCY = "Latency"
THREADS = "Thread sweep"
POWER = "Power modes"
SPEEDUP = "Edge TPU speed-up over CPU"
THROUGHPUT = "Achieved throughput"
COMPILER = "Edge TPU compiler report"
CO_COMPILED = "Co-compiled groups"
SEGMENTS = "Operators per segment"
COMPILER_CHANGES = "What a compiler upgrade changed"
CONTEXT = "Hosts and toolchains"
SIDE_BY_SIDE = "Edge TPUs side by side"
PLACEMENTS = "Multi-model cells"
PIPELINES = "Pipelined segments"
GPU_PEAK = "GPU achieved vs peak"
FP16 = "FP16 over FP32"
LAUNCH = "GPU launch modes"
CROSS_RUNTIME = "Across runtimes"
REFERENCES = "Published references"
DISTURBED = "Disturbed and invalid results"


def build_report(store: Store, selection: ResultFilter, *, with_plots: bool = True, stat: str = "median",
                 reference_band: float = references.DEFAULT_BAND, include_invalid: bool = False) -> Report:
    """``stat`` is the centre of the latency and thread-sweep tables and plots (median, mean or p90), shown
    with its spread; ``reference_band`` is how far (a fraction) a result may sit from its published
    reference before it is flagged; ``include_invalid`` computes speed-ups from invalid results too."""
    centre, spread = tables.stat_columns(stat)
    read = inputs.read(store, selection, every_row=with_plots, include_invalid=include_invalid)
    report = Report(_title(read.runs), read.runs, read.succeeded_rows)
    report.notes.extend(_label_notes(read.run_labels))
    if read.not_succeeded:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(read.not_succeeded.items()))
        report.notes.append(f"Not in the tables: {counts} cell(s); `farm results --status all` says why.")
    if not read.succeeded_rows:
        report.notes.append("No succeeded results match the selection.")
        return report
    if read.simulated:
        report.notes.append(f"{read.simulated} Edge TPU result(s) were measured on the simulated lab's stand-in "
                            "libedgetpu (column `simulated`), not on hardware: their times come from its timing "
                            "model.")
    add = report.sections.append
    if read.succeeded is not None:
        _add_multitpu_sections(report, read.succeeded, read.several)
    if not read.one_model_rows:
        return report
    words = f"{centre.removesuffix('_ms')} and {spread.removesuffix('_ms')}"
    # The newest result of each cell, once (inputs.py): most tables read only these, and newest_per_cell of
    # its own output is that output, so each table's own call is cheap.
    newest = read.newest
    add(Section(LATENCY, f"The {words} of the timed invokes (ms), by model × host × power mode × USB speed × "
                "delegate × threads; the newest result of each cell.", {"": tables.latency(newest, stat)}))
    sweep = tables.thread_sweep(newest, stat)
    if sweep:
        add(Section(THREADS, f"The {words} (ms) at each thread count, one block per host (SEEDS §1 layout).",
                    sweep))
    modes = tables.power_modes(newest)
    if not modes.empty:
        add(Section(POWER, "Median latency (ms) at each power mode, each at its fastest thread count, and how many "
                    "times slower a lower mode is than the highest.", {"": modes}))
    flagged = interference.table(newest)
    if not flagged.empty:
        add(Section(DISTURBED, "Results whose timed loop others disturbed (cpu_share: the benchmark's share of the "
                    "CPU it wanted; other_load: cores others used) or that broke a validity rule (cut short by "
                    "max_seconds, fewer than min_runs, throttled). They are marked in the tables above.",
                    {"": flagged}))
    if read.invalid:
        report.notes.append(f"Speed-ups leave out {read.invalid} invalid result(s) "
                            "(--include-invalid keeps them).")
    speed = tables.speedup(read.speed_newest)
    if not speed.empty:
        add(Section(SPEEDUP, "CPU time / Edge TPU time on the same host and power mode (SEEDS §2 layout); the Edge "
                    "TPU runs the compiled model, the CPU its source; each side at its fastest thread count.",
                    {"": speed}))
    else:
        report.notes.append("No Edge TPU speed-up: the results lack Edge TPU or CPU results of the same models.")
    across = cross_runtime.cross_runtime(newest)
    if not across.empty:
        add(Section(CROSS_RUNTIME, "One model, one board, each runtime (TFLite, ONNX Runtime, ...) at its fastest "
                    "thread count; the same architecture in each runtime's format. vs_fastest: time over the "
                    "fastest runtime's.", {"": across}))
    rate = tables.throughput(newest)
    if not rate.empty:
        add(Section(THROUGHPUT, "Operations per inference (multiply + add = 2) / median time.", {"": rate}))
    if read.frame is not None:
        _add_gpu_sections(report, read.frame)
    models = model_rows(store, [sha for sha in dict.fromkeys(read.frame_shas)])
    compiled = tables.compiler_report(pd.DataFrame({"model_sha256": read.frame_shas}, dtype=object), models)
    if not compiled.empty:
        add(Section(COMPILER, "From edgetpu_compiler's summary: model sizes, parameter memory on and off the chip, "
                    "operations mapped to the Edge TPU and left to the CPU.", {"": compiled}))
    # Compile facts hold whether or not a cell ran: an Edge TPU cell skipped on a host without a TPU still
    # names the compiled model the matrix asked for.
    _add_edgetpu_sections(report, store, _with_segments(store, read.every_shas))
    _add_references(report, store, newest, reference_band)
    context = tables.hosts_and_toolchains(read.context)
    if not context.empty:
        add(Section(CONTEXT, "What the results were measured with, as each host reported it (several values: the "
                    "selection mixes versions).", {"": context}))
    if with_plots and read.frame is not None:
        report.plots = plots.latency_vs_layers(read.frame, stat) + plots.thread_sweep_panels(read.frame, stat)
    return report


def _add_multitpu_sections(report: Report, succeeded: pd.DataFrame, several: pd.DataFrame) -> None:
    add = report.sections.append
    beside = multitpu.side_by_side(succeeded)
    if not beside.empty:
        add(Section(SIDE_BY_SIDE, "Median latency (ms) of each model on each Edge TPU alone and while other jobs ran "
                    "on the host's other TPUs (concurrency: per-accelerator), and the host's total throughput "
                    "(inferences/s) at its busiest moment (SEEDS §3).", {"": beside}))
    placed = multitpu.placements(several)
    if not placed.empty:
        add(Section(PLACEMENTS, "Several models in one cell, invoked in turn: each model's median (ms), a round's "
                    "median and the cell's throughput, per placement (SEEDS §3: one TPU swaps parameters, "
                    "one TPU per model does not, co-compiled models share the cache).", {"": placed}))
    piped = multitpu.pipelines(succeeded)
    if not piped.empty:
        add(Section(PIPELINES, "One model on one device vs its N-segment pipelines (one interpreter per segment, "
                    "each on its own Edge TPU or the CPU): median latency (ms) and throughput (inferences/s).",
                    {"": piped}))


def _add_gpu_sections(report: Report, frame: pd.DataFrame) -> None:
    add = report.sections.append
    peak = gpu.achieved_vs_peak(frame)
    if not peak.empty:
        add(Section(GPU_PEAK, "Operations per inference / median time against the GPU's peak at the clock it ran "
                    "at (CUDA cores x clock x 2, FP16 twice FP32; SEEDS §4): ideal ms is the time at that peak.",
                    {"": peak}))
        for row in peak[peak["below_max_clock"] == "yes"].itertuples():
            report.notes.append(f"{row.model} on {row.host} ({row.backend} {row.precision}) ran with the GPU "
                                "below its maximum clock: its peak is the lower clock's.")
    half = gpu.fp16_speedup(frame)
    if not half.empty:
        add(Section(FP16, "FP32 median / FP16 median of the same model, host, runtime and launch mode.", {"": half}))
    launches = gpu.launch_modes(frame)
    if not launches.empty:
        add(Section(LAUNCH, "Median ms with synchronous launches, one asynchronous enqueue of the network and a CUDA "
                    "graph, and how much slower synchronous is.", {"": launches}))
def _add_references(report: Report, store: Store, frame: pd.DataFrame, band: float) -> None:
    from ..references.stored import inference_references

    table = references.reference_table(frame, inference_references(store), band)
    if table.empty:
        return
    report.sections.append(Section(REFERENCES, f"Each result beside the published time for the same model, board, "
                                   f"delegate and setting (`farm reference import`), in the statistic the source "
                                   f"published; ratio = measured / reference, flagged outside ±{band:.0%}.",
                                   {"": table}))
    outside = table[table["check"] != "ok"]
    for _, row in outside.iterrows():
        report.notes.append(f"{row['model']} on {row['host']} ({row['delegate']}, {row['threads']} thr) measured "
                            f"{row['measured_ms']:.2f} ms against {row['reference']}'s {row['reference_ms']:.2f} ms "
                            f"({row['ratio']:.2f}×): outside the ±{band:.0%} band.")


def _with_segments(store: Store, shas: list[str]) -> dict[str, ModelInfo]:
    """The models the results name, and the segments of every segmented compile of their sources: a
    segment is no cell of its own (it runs inside a pipeline cell), but its compile facts are the report's."""
    from sqlalchemy import select

    from ..placement import is_segment
    from ..store.schema import ModelRow

    models = model_rows(store, shas)
    sources = {info.source_sha256 or info.sha256 for info in models.values()}
    with store.session() as session:
        source_ids = list(session.scalars(select(ModelRow.id).where(ModelRow.sha256.in_(sources))))
        segments = [row.sha256 for row in session.scalars(
            select(ModelRow).where(ModelRow.source_model_id.in_(source_ids))) if is_segment(row)]
    return {**models, **model_rows(store, [sha for sha in segments if sha not in models])}


def _add_edgetpu_sections(report: Report, store: Store, models: dict[str, ModelInfo]) -> None:
    groups = edgetpu.co_compile_groups(models)
    if not groups.empty:
        report.sections.append(Section(CO_COMPILED, "Models compiled together share the Edge TPU's parameter cache: "
                                       "the cache is every model's used plus the remaining figure once.",
                                       {"": groups}))
    segments = edgetpu.segment_operators(models)
    if segments:
        report.sections.append(Section(SEGMENTS, "Each segment of a segmented compile, from its own operation log.",
                                       segments))
    changes = edgetpu.compiler_changes(store, models)
    if not changes.empty:
        report.sections.append(Section(COMPILER_CHANGES, "The same source compiled by each compiler version: "
                                       "operations mapped and parameter memory, and the change from the version "
                                       "before.", {"": changes}))
    for name in edgetpu.nothing_on_tpu(models):
        report.notes.append(f"Results on {name} ran with nothing on the Edge TPU: its compiler reported 0 Edge TPU "
                            "subgraphs, so every operation ran on the CPU.")


def _label_notes(run_labels: list[tuple[int, object]]) -> list[str]:
    """"Run 12: commit=abc, firmware=5.1": what each run measured, as `farm run --label` stored it."""
    import json

    from ..labels import format_labels

    notes = []
    for run_id, text in run_labels:
        labels = json.loads(text) if isinstance(text, str) and text else text
        if isinstance(labels, dict) and labels:
            notes.append(f"Run {run_id}: {format_labels(labels)}")
    return notes


def _title(runs: list[int]) -> str:
    if not runs:
        return "farm report: no runs"
    if len(runs) == 1:
        return f"farm report: run {runs[0]}"
    return f"farm report: runs {', '.join(map(str, runs))}"
