"""`farm nightly`: probe toolchains, run the regression matrix in trials, and judge every cell against its baseline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from .. import exit_codes
from ..errors import FarmError
from ..inventory import Host
from ..matrix import MatrixSpec
from ..results import CellTrials, collect_runs
from ..results.baselines import baselines, set_baselines
from ..scheduler import Runner, RunObserver
from ..store.db import Store
from ..store.schema import CellVerdictRow, ModelRow, NightlyRow, utcnow
from ..verdict import Verdict, classify, detect_drift, median_of_trials
from .triggers import likely_causes, newest_compiles

# 0 nothing regressed; 1 a cell regressed; 4 the farm measured nothing (every host down, every job failed for
# the infrastructure's sake). A usage or input error (a matrix file that is not there) exits 2 before any run.
EXIT_OK, EXIT_REGRESSED, EXIT_FAILED = exit_codes.OK, exit_codes.FAILED, exit_codes.INFRASTRUCTURE
HISTORY = 20  # nightly medians kept in view for drift detection


@dataclass
class Settings:
    trials: int = 3
    min_effect: float = 0.05
    alpha: float = 0.002
    force: bool = False
    every_night: bool = False  # run even when no toolchain changed
    # Rounds of re-runs for cells with too few undisturbed trials; each round runs one more trial of them.
    retry_disturbed: int = 2
    # Judge cells that match a published reference (`farm reference import`) against it, within this band.
    reference_baseline: bool = False
    reference_band: float = 0.30
    # Trials run again, right away, of a cell that looks regressed or improved; the verdict stands only if it
    # still holds with them pooled in. Two nights' trials are each a few seconds of one machine state, and with
    # three a side an A/A pair separates fully one time in twenty per direction; fresh trials of the suspect
    # cell are the cheapest witness that the change is in the cell, not in the moment. 0 judges at once.
    confirm: int = 3

    @property
    def clean_trials_needed(self) -> int:
        """Undisturbed, valid trials a cell needs to be judged: a majority of the trials asked for."""
        return self.trials // 2 + 1


@dataclass
class CellOutcome:
    cell: CellTrials
    verdict: Verdict
    drift: dict[str, Any] | None = None
    history: list[float] = field(default_factory=list)  # earlier nightly medians, oldest first
    causes: list[dict[str, Any]] = field(default_factory=list)  # toolchain changes that could explain a change
    becomes_baseline: bool = False  # judged for the first time: tonight's trials become its baseline


@dataclass
class NightlyOutcome:
    nightly_id: int
    ran: bool
    message: str
    triggers: list[dict[str, Any]] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    cells: list[CellOutcome] = field(default_factory=list)
    exit_code: int = EXIT_OK
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # What the night ran with, for JUnit's <properties>: toolchain versions per host, the run ids, farm's version.
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> Counter:
        return Counter(outcome.verdict.state for outcome in self.cells)


# Returns the toolchain changes (dicts with host, component, old, new, at) since the last nightly.
ChangeProbe = Callable[[Store, list[Host], Any], list[dict[str, Any]]]


def last_nightly(store: Store, matrix: str) -> NightlyRow | None:
    with store.session() as session:
        return session.scalar(select(NightlyRow).where(NightlyRow.matrix == matrix, NightlyRow.status == "finished")
                              .order_by(NightlyRow.id.desc()).limit(1))


def run_nightly(store: Store, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow], inventory: str,
                settings: Settings, probe: ChangeProbe, observer: RunObserver | None = None,
                transport_options: dict[str, Any] | None = None,
                before_runs: Callable[[list[dict[str, Any]]], list[ModelRow]] | None = None) -> NightlyOutcome:
    previous = last_nightly(store, spec.name)
    with store.session() as session:
        nightly = NightlyRow(matrix=spec.name, forced=settings.force, triggers=[], run_ids=[], counts={})
        session.add(nightly)
        session.commit()
        nightly_id, started_at = nightly.id, nightly.started_at
    outcome = NightlyOutcome(nightly_id, ran=False, message="", started_at=started_at)
    try:
        outcome.triggers = probe(store, hosts, previous.started_at if previous else None)
        if not outcome.triggers and not settings.force and not settings.every_night and previous is not None:
            outcome.message = ("no toolchain changed since the last nightly "
                               f"(#{previous.id}, {previous.started_at:%Y-%m-%d %H:%M}): nothing to run; "
                               "--force runs anyway")
            _finish(store, outcome, "idle")
            return outcome
        if before_runs is not None:
            models = newest_compiles([*models, *before_runs(outcome.triggers)], store)
        outcome.ran = True
        runner = Runner(store, observer, transport_options)
        for trial in range(1, settings.trials + 1):
            result = runner.run(spec, hosts, models, inventory, tags=["nightly", f"nightly:{nightly_id}",
                                                                      f"trial:{trial}"],
                                labels=nightly_labels(nightly_id, trial, outcome.triggers))
            outcome.run_ids.append(result.run_id)
            _save_runs(store, nightly_id, outcome.run_ids)
        _rerun_disturbed(store, runner, spec, hosts, models, inventory, settings, nightly_id, outcome)
        outcome.cells = _judge_confirmed(store, runner, spec, hosts, models, inventory, settings, nightly_id,
                                         outcome, previous)
        local_hosts = {host.name for host in hosts if host.transport == "local"}
        for cell in outcome.cells:
            if cell.verdict.state in ("regressed", "improved", "invalid") or cell.drift:
                cell.causes = likely_causes(cell.cell.lineage_key, outcome.triggers, local_hosts)
        counts = outcome.counts
        ran_any = any(cell.cell.trials or cell.cell.excluded for cell in outcome.cells)
        outcome.exit_code = EXIT_FAILED if not ran_any else EXIT_REGRESSED if counts["regressed"] else EXIT_OK
        outcome.message = ("no cell produced a result: the run failed" if not ran_any else
                           ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        _record_verdicts(store, nightly_id, outcome.cells)
        _finish(store, outcome, "finished" if ran_any else "failed")
    except FarmError as exc:
        outcome.exit_code = exit_codes.for_exception(exc)
        outcome.message = str(exc)
        _finish(store, outcome, "failed")
    return outcome


def short_of_clean_trials(store: Store, run_ids: list[int], needed: int) -> set[str]:
    """Cells whose trials were disturbed so often that fewer than ``needed`` are left to judge by."""
    return {cell.cell_key for cell in collect_runs(store, run_ids).values()
            if len(cell.trials) < needed and any(kind == "disturbed" for _, kind, _ in cell.excluded)}


def _rerun_disturbed(store: Store, runner: Runner, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow],
                     inventory: str, settings: Settings, nightly_id: int, outcome: NightlyOutcome) -> None:
    """Bounded re-runs before judging: a disturbed trial says nothing about the toolchain, so run it again,
    at most ``settings.retry_disturbed`` rounds; what stays disturbed is judged invalid, never regressed."""
    for round_ in range(1, settings.retry_disturbed + 1):
        keys = short_of_clean_trials(store, outcome.run_ids, settings.clean_trials_needed)
        if not keys:
            return
        runner.only_cells = keys
        try:
            result = runner.run(spec, hosts, models, inventory, tags=[
                "nightly", f"nightly:{nightly_id}", f"retry:{round_}", "retry-disturbed"])
        finally:
            runner.only_cells = None
        outcome.run_ids.append(result.run_id)
        _save_runs(store, nightly_id, outcome.run_ids)


def _judge_confirmed(store: Store, runner: Runner, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow],
                     inventory: str, settings: Settings, nightly_id: int, outcome: NightlyOutcome,
                     previous: NightlyRow | None) -> list[CellOutcome]:
    """Judge; run the cells that look regressed or improved ``settings.confirm`` more times; judge again with
    every trial pooled. Baselines are recorded by the last judgement only."""
    first = judge(store, spec.name, outcome.run_ids, previous, settings, record_baselines=False)
    suspects = {cell.cell.cell_key: cell for cell in first if cell.verdict.state in ("regressed", "improved")}
    if not suspects or not settings.confirm:
        set_baselines(store, [cell.cell for cell in first if cell.becomes_baseline], "first-run")
        return first
    runner.only_cells = set(suspects)
    try:
        for round_ in range(1, settings.confirm + 1):
            result = runner.run(spec, hosts, models, inventory, tags=[
                "nightly", f"nightly:{nightly_id}", f"confirm:{round_}", "confirm"],
                labels={"nightly": str(nightly_id), "confirm": str(round_)})
            outcome.run_ids.append(result.run_id)
            _save_runs(store, nightly_id, outcome.run_ids)
    finally:
        runner.only_cells = None
    final = judge(store, spec.name, outcome.run_ids, previous, settings, record_baselines=True)
    for cell in final:
        before = suspects.get(cell.cell.cell_key)
        if before is None:
            continue
        word = "confirmed" if cell.verdict.state == before.verdict.state else "not reproduced"
        note = (f"{word} by {settings.confirm} more trial(s): first judged {before.verdict.state} "
                f"{before.verdict.ratio:.3f}×" if before.verdict.ratio is not None else f"{word}")
        cell.verdict = replace(cell.verdict, detail="; ".join(x for x in (cell.verdict.detail, note) if x))
    return final


def nightly_labels(nightly_id: int, trial: int, triggers: list[dict[str, Any]]) -> dict[str, str]:
    """The labels of a nightly's run: which nightly and trial, and each toolchain change it saw
    (``toolchain.libedgetpu=nano-1: 15.0 -> 16.0``), so `farm results --label toolchain.libedgetpu` finds them."""
    labels = {"nightly": str(nightly_id), "trial": str(trial)}
    changed: dict[str, list[str]] = {}
    for change in triggers:
        text = f"{change.get('host')}: {change.get('old') or 'none'} -> {change.get('new') or 'none'}"
        if text not in changed.setdefault(str(change.get("component")), []):
            changed[str(change.get("component"))].append(text)
    for component, texts in sorted(changed.items()):
        labels[f"toolchain.{component}"[:64]] = "; ".join(texts)[:400]
    return labels


def run_properties(store: Store, outcome: NightlyOutcome) -> dict[str, str]:
    """JUnit's properties: farm's version, the nightly and its runs, and every toolchain version last probed."""
    from .. import __version__
    from ..toolchain import current_versions

    properties = {"farm.version": __version__, "farm.nightly": str(outcome.nightly_id),
                  "farm.run_ids": ",".join(map(str, outcome.run_ids))}
    for row in current_versions(store):
        properties[f"toolchain.{row.host}.{row.component}"] = row.version or "absent"
    for number, change in enumerate(outcome.triggers, 1):
        properties[f"change.{number}"] = (f"{change.get('host')}: {change.get('component')} "
                                          f"{change.get('old') or 'none'} -> {change.get('new') or 'none'}")
    return properties


def judge(store: Store, matrix: str, run_ids: list[int], previous: NightlyRow | None,
          settings: Settings, *, record_baselines: bool = True) -> list[CellOutcome]:
    """Every cell's verdict; with ``record_baselines`` a cell judged for the first time becomes its baseline."""
    cells = collect_runs(store, run_ids)
    base = baselines(store)
    by_reference = {}
    if settings.reference_baseline:
        from .reference_baseline import reference_verdicts

        by_reference = reference_verdicts(store, run_ids, cells, settings.reference_band)
    history = _history(store, matrix)
    outcomes: list[CellOutcome] = []
    first_runs: list[CellTrials] = []
    for key, cell in sorted(cells.items()):
        if not cell.trials and not cell.failures and not cell.excluded:
            continue  # skipped everywhere: not a cell this farm can run
        if cell.failures or cell.throttled:
            why = "; ".join(cell.failures) if cell.failures else f"throttled in {cell.throttled} trial(s)"
            verdict = Verdict("invalid", detail=why)
        elif cell.excluded and len(cell.trials) < settings.clean_trials_needed:
            # Too few clean trials after the re-runs: "invalid (disturbed: ...)", never regressed or improved.
            verdict = Verdict("invalid", detail=cell.excluded_reason())
        elif key in by_reference:
            verdict = by_reference[key]
            if key not in base:
                first_runs.append(cell)  # a stored baseline too, for nights without --reference-baseline
        elif key not in base:
            verdict = Verdict("new", current_ms=median_of_trials(cell.trials), detail="no baseline yet: this run becomes it")
            first_runs.append(cell)
        else:
            baseline_cells = collect_runs(store, list(base[key].run_ids)).get(key)
            if baseline_cells is None or not baseline_cells.trials:
                verdict = Verdict("new", current_ms=median_of_trials(cell.trials), detail="baseline runs are gone: this run replaces them")
                first_runs.append(cell)
            else:
                verdict = classify(baseline_cells.trials, cell.trials, min_effect=settings.min_effect,
                                   alpha=settings.alpha)
        # An invalid cell's few clean numbers are not a night of its history.
        tonight = median_of_trials(cell.trials) if verdict.state != "invalid" else None
        series = [*history.get(key, []), *([tonight] if tonight is not None else [])]
        drift = detect_drift(series, min_effect=settings.min_effect)
        outcomes.append(CellOutcome(cell, verdict, None if drift is None else {
            "index": drift.index, "p_value": drift.p_value, "before_ms": drift.before_ms, "after_ms": drift.after_ms,
            "nights_since": len(series) - drift.index}, history.get(key, []),
            becomes_baseline=any(cell is first for first in first_runs)))
    if previous is not None:
        with store.session() as session:
            before = {row.lineage_key: row for row in session.scalars(
                select(CellVerdictRow).where(CellVerdictRow.nightly_id == previous.id))}
        for key in sorted(set(before) - set(cells)):
            if before[key].state == "missing":
                continue
            ghost = CellTrials(key, before[key].cell_key, before[key].cell_key.replace("|", " · "))
            outcomes.append(CellOutcome(ghost, Verdict("missing", baseline_ms=before[key].current_ms,
                                                       detail=f"ran in nightly #{previous.id}, not tonight")))
    if record_baselines:
        set_baselines(store, first_runs, "first-run")
    return outcomes


def _history(store: Store, matrix: str) -> dict[str, list[float]]:
    with store.session() as session:
        nights = list(session.scalars(select(NightlyRow.id).where(NightlyRow.matrix == matrix,
                                                                   NightlyRow.status == "finished")
                                      .order_by(NightlyRow.id.desc()).limit(HISTORY)))
        series: dict[str, list[float]] = {}
        rows = session.scalars(select(CellVerdictRow).where(CellVerdictRow.nightly_id.in_(nights))
                               .order_by(CellVerdictRow.nightly_id))
        for row in rows:
            if row.current_ms is not None:
                series.setdefault(row.lineage_key, []).append(row.current_ms)
    return series


def _save_runs(store: Store, nightly_id: int, run_ids: list[int]) -> None:
    with store.session() as session:
        row = session.get(NightlyRow, nightly_id)
        row.run_ids = list(run_ids)
        session.commit()


def _record_verdicts(store: Store, nightly_id: int, cells: list[CellOutcome]) -> None:
    with store.session() as session:
        for outcome in cells:
            v = outcome.verdict
            session.add(CellVerdictRow(nightly_id=nightly_id, lineage_key=outcome.cell.lineage_key,
                                       cell_key=outcome.cell.cell_key, state=v.state, ratio=v.ratio,
                                       p_value=v.p_value, baseline_ms=v.baseline_ms, current_ms=v.current_ms,
                                       threshold=v.threshold, drift=outcome.drift, detail=v.detail))
        session.commit()


def _finish(store: Store, outcome: NightlyOutcome, status: str) -> None:
    outcome.finished_at = utcnow()
    try:
        outcome.properties = run_properties(store, outcome)
    except Exception as exc:  # noqa: BLE001 - the verdict must be stored even when the versions cannot be read
        outcome.properties = {"farm.nightly": str(outcome.nightly_id), "properties.error": str(exc)[:200]}
    with store.session() as session:
        row = session.get(NightlyRow, outcome.nightly_id)
        row.status = status
        row.finished_at = outcome.finished_at
        row.triggers = outcome.triggers
        row.run_ids = outcome.run_ids
        row.counts = dict(outcome.counts)
        row.exit_code = outcome.exit_code
        row.message = outcome.message
        session.commit()
