"""Two sets of runs (or runs against their saved baselines) side by side, cell by cell.

The verdict is the nightly job's (:func:`orchestrator.verdict.classify`): Mann-Whitney U on
the pooled samples at a strict alpha, plus a minimum effect, plus the spread between trials. One
side may be a single run; several runs per side (``12,13,14``) are treated as trials, which is what
lets the spread between them raise the bar against slow machine drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FarmError
from .results import CellTrials, collect_runs, missing_runs
from .results.baselines import baselines
from .store.db import Store
from .verdict import MIN_SAMPLES, classify, median_of_trials


@dataclass(frozen=True)
class CellComparison:
    label: str  # host · model · delegate · threads · power mode · USB port
    lineage_key: str
    a_ms: float | None  # median of trial medians
    b_ms: float | None
    ratio: float | None  # b / a: above 1 is slower
    p_value: float | None
    threshold: float | None
    state: str  # regressed | improved | unchanged | new | missing | invalid
    detail: str


def parse_runs(text: str, what: str) -> list[int]:
    """'12' or '12,13,14' (trials of one side)."""
    try:
        runs = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FarmError(f"{what}: '{text}' is not a run id or a comma-separated list of run ids (e.g. 12 or "
                        "12,13,14)") from None
    if not runs or any(r <= 0 for r in runs):
        raise FarmError(f"{what}: '{text}' names no run; run ids are positive integers")
    return runs


def _check_runs(store: Store, runs: list[int], what: str) -> None:
    missing = missing_runs(store, runs)
    if missing:
        raise FarmError(f"{what}: no run {', '.join(map(str, missing))} in this database; see "
                        "`farm results --status all` for run ids")


def _judge(label: str, key: str, a: CellTrials | None, b: CellTrials | None, min_effect: float,
           alpha: float) -> CellComparison:
    a_ms, b_ms = (median_of_trials(cell.trials) if cell else None for cell in (a, b))
    if a is None or b is None:
        state = "new" if a is None else "missing"
        return CellComparison(label, key, a_ms, b_ms, None, None, None, state,
                              "only in B" if a is None else "only in A")
    if not a.trials or not b.trials:
        empty = a if not a.trials else b
        # A side whose results were all disturbed or invalid is "invalid (disturbed: ...)", never judged.
        why = empty.excluded_reason() or "; ".join(empty.failures[:2]) or "skipped"
        return CellComparison(label, key, a_ms, b_ms, None, None, None, "invalid",
                              f"no result in {'A' if not a.trials else 'B'}: {why}")
    verdict = classify(a.trials, b.trials, min_effect=min_effect, alpha=alpha)
    return CellComparison(label, key, verdict.baseline_ms if verdict.baseline_ms is not None else a_ms,
                          verdict.current_ms if verdict.current_ms is not None else b_ms, verdict.ratio,
                          verdict.p_value, verdict.threshold, verdict.state, verdict.detail)


def compare_runs(store: Store, a_runs: list[int], b_runs: list[int], *, min_effect: float = 0.05,
                 alpha: float = 0.002, include_disturbed: bool = False,
                 include_invalid: bool = False) -> list[CellComparison]:
    """Every cell of A and B; B is judged against A (a ratio above 1 means B is slower).

    Disturbed and invalid results are left out of both sides unless included."""
    _check_runs(store, a_runs, "A")
    _check_runs(store, b_runs, "B")
    a_cells = collect_runs(store, a_runs, include_disturbed, include_invalid)
    b_cells = collect_runs(store, b_runs, include_disturbed, include_invalid)
    out = []
    for key in sorted(set(a_cells) | set(b_cells), key=lambda k: (b_cells.get(k) or a_cells[k]).label):
        a, b = a_cells.get(key), b_cells.get(key)
        out.append(_judge((b or a).label, key, a, b, min_effect, alpha))  # type: ignore[union-attr]
    return out


def compare_to_baselines(store: Store, runs: list[int], *, min_effect: float = 0.05,
                         alpha: float = 0.002, include_disturbed: bool = False,
                         include_invalid: bool = False) -> list[CellComparison]:
    """Each cell of ``runs`` against its accepted baseline (``farm baseline show``); a cell without one is new."""
    _check_runs(store, runs, "RUN")
    current = collect_runs(store, runs, include_disturbed, include_invalid)
    saved = baselines(store)
    by_runs: dict[tuple[int, ...], dict[str, CellTrials]] = {}
    out = []
    for key in sorted(current, key=lambda k: current[k].label):
        row = saved.get(key)
        if row is None:
            out.append(_judge(current[key].label, key, None, current[key], min_effect, alpha))
            continue
        base_runs = tuple(row.run_ids or ())
        if base_runs not in by_runs:
            by_runs[base_runs] = collect_runs(store, list(base_runs), include_disturbed, include_invalid)
        out.append(_judge(current[key].label, key, by_runs[base_runs].get(key) or CellTrials(key, row.cell_key, ""),
                          current[key], min_effect, alpha))
    return out


__all__ = ["MIN_SAMPLES", "CellComparison", "compare_runs", "compare_to_baselines", "parse_runs"]
