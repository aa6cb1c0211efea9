"""Per-cell verdicts that survive noise, and drift over a cell's nightly history: the statistics
`farm compare` and the nightly job share.

Each side of a comparison (baseline, tonight) is several *trials*: the same cell
run in separate jobs at different moments, each with its own timed samples. A
cell regresses only when all of these agree:

1. Mann-Whitney U on the pooled samples rejects "same distribution" at ``alpha``
   (asv's choice: latency samples are skewed and long-tailed, so a rank test
   rather than a t-test; ``alpha`` is small because pooled invokes are not
   independent, they share a trial's machine state);
2. the median of the trial medians moved by at least ``min_effect`` (default 5%)
   and by more than twice the spread seen between trials on either side: a
   difference no larger than what separate trials already show is noise;
3. every trial of one side lies beyond every trial of the other.

Drift is checked separately over the last N nightly medians of a cell with
Pettitt's change-point test, which catches a slow slide that no single
night-to-night comparison flags.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy.stats import mannwhitneyu

STATES = ("regressed", "improved", "unchanged", "new", "missing", "invalid")
MIN_SAMPLES = 10  # per side, pooled over trials


@dataclass(frozen=True)
class Verdict:
    state: str
    ratio: float | None = None  # tonight / baseline, on medians of trial medians
    p_value: float | None = None
    baseline_ms: float | None = None
    current_ms: float | None = None
    threshold: float | None = None  # the relative change the cell had to exceed
    detail: str = ""


def _medians(trials: list[list[float]]) -> list[float]:
    return [statistics.median(trial) for trial in trials if trial]


def median_of_trials(trials: list[list[float]]) -> float | None:
    """A cell's one number: the median of its trials' medians (None when no trial has a sample)."""
    medians = _medians(trials)
    return statistics.median(medians) if medians else None


def spread(trial_medians: list[float]) -> float:
    if len(trial_medians) < 2:
        return 0.0
    return max(trial_medians) / min(trial_medians) - 1.0


def classify(baseline: list[list[float]], current: list[list[float]], *, min_effect: float = 0.05,
             alpha: float = 0.002) -> Verdict:
    """Compare two cells' trials (each a list of latency samples in ms)."""
    pooled_b = [x for trial in baseline for x in trial]
    pooled_c = [x for trial in current for x in trial]
    if len(pooled_b) < MIN_SAMPLES or len(pooled_c) < MIN_SAMPLES:
        return Verdict("invalid", detail=f"too few samples (baseline {len(pooled_b)}, tonight {len(pooled_c)}; "
                                         f"at least {MIN_SAMPLES} each)")
    med_b, med_c = _medians(baseline), _medians(current)
    base_ms, cur_ms = statistics.median(med_b), statistics.median(med_c)
    ratio = cur_ms / base_ms if base_ms > 0 else math.inf
    threshold = max(min_effect, 2 * max(spread(med_b), spread(med_c)))
    p_value = float(mannwhitneyu(pooled_c, pooled_b, alternative="two-sided").pvalue)
    common = {"ratio": ratio, "p_value": p_value, "baseline_ms": base_ms, "current_ms": cur_ms,
              "threshold": threshold}
    separated_up = min(med_c) > max(med_b)
    separated_down = max(med_c) < min(med_b)
    if p_value < alpha and ratio >= 1 + threshold and separated_up:
        return Verdict("regressed", detail=f"{(ratio - 1) * 100:.1f}% slower", **common)
    if p_value < alpha and ratio <= 1 / (1 + threshold) and separated_down:
        return Verdict("improved", detail=f"{(1 - ratio) * 100:.1f}% faster", **common)
    why = []
    if p_value >= alpha:
        why.append(f"p={p_value:.3g} ≥ {alpha}")
    if abs(ratio - 1) < threshold:
        why.append(f"change {abs(ratio - 1) * 100:.1f}% < {threshold * 100:.1f}%")
    return Verdict("unchanged", detail="; ".join(why) or "trials overlap", **common)


@dataclass(frozen=True)
class Drift:
    index: int  # first point after the change
    p_value: float
    before_ms: float
    after_ms: float

    @property
    def ratio(self) -> float:
        return self.after_ms / self.before_ms


def pettitt(series: list[float]) -> tuple[int, float]:
    """Pettitt's test: the most likely change point and its approximate two-sided p-value."""
    n = len(series)
    best_k, best_u = 0, 0.0
    for k in range(1, n):
        u = sum((1 if a > b else -1 if a < b else 0) for a in series[k:] for b in series[:k])
        if abs(u) > abs(best_u):
            best_k, best_u = k, u
    p_value = min(1.0, 2 * math.exp(-6 * best_u ** 2 / (n ** 3 + n ** 2))) if n > 1 else 1.0
    return best_k, p_value


def detect_drift(series: list[float], *, min_effect: float = 0.05, alpha: float = 0.05,
                 min_points: int = 6) -> Drift | None:
    """A lasting shift in a cell's nightly medians (oldest first), or None."""
    if len(series) < min_points:
        return None
    index, p_value = pettitt(series)
    if p_value >= alpha or index < 2 or len(series) - index < 2:
        return None
    before, after = statistics.median(series[:index]), statistics.median(series[index:])
    if before <= 0 or abs(after / before - 1) < min_effect:
        return None
    return Drift(index, p_value, before, after)
