"""Nightly cells judged against a published reference (`farm nightly --reference-baseline`).

A reference is one number (pycoral's means, the seeds' tables), not a sample: there is no rank test to
run against it, so a cell that matches one is judged by the band pycoral's own check uses: tonight's
figure in the reference's statistic over the reference, regressed above 1 + band, improved below
1 - band, unchanged between. Cells without a matching reference keep their stored baseline.
"""

from __future__ import annotations

import statistics

from sqlalchemy import select

from ..results.trials import CellTrials
from ..store.db import Store
from ..store.schema import JobRow
from ..verdict import Verdict, median_of_trials


def tonight(trials: list[list[float]], stat: str) -> float | None:
    """The cell's figure in the reference's statistic: the mean of the trials' means, else the median."""
    if stat == "mean":
        means = [statistics.fmean(trial) for trial in trials if trial]
        return statistics.fmean(means) if means else None
    return median_of_trials(trials)


def reference_verdicts(store: Store, run_ids: list[int], cells: dict[str, CellTrials],
                       band: float) -> dict[str, Verdict]:
    """Lineage key -> verdict for every judged cell that matches a stored reference."""
    from ..references.stored import inference_references
    from ..report.references import best_match
    from ..results import ResultFilter, results_frame

    refs = inference_references(store)
    if refs.empty or not run_ids:
        return {}
    frame = results_frame(store, ResultFilter(runs=tuple(run_ids)))
    with store.session() as session:
        cell_of_job = dict(session.execute(select(JobRow.id, JobRow.cell_key).where(JobRow.run_id.in_(run_ids))).all())
    rows = {cell_of_job.get(int(row["job_id"])): row for _, row in frame.iterrows()}
    out: dict[str, Verdict] = {}
    for key, cell in cells.items():
        row = rows.get(cell.cell_key)
        if row is None or not cell.trials:
            continue
        ref = best_match(row, refs)
        if ref is None:
            continue
        current = tonight(cell.trials, str(ref["reference_stat"]))
        if current is None:
            continue
        reference_ms = float(ref["reference_ms"])
        ratio = current / reference_ms
        state = "regressed" if ratio > 1 + band else "improved" if ratio < 1 - band else "unchanged"
        out[key] = Verdict(state, ratio=ratio, baseline_ms=reference_ms, current_ms=current, threshold=band,
                           detail=f"against {ref['reference_source']}'s {reference_ms:.3f} ms "
                                  f"({ref['reference_stat']}), band ±{band:.0%}")
    return out
