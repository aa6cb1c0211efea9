"""The trials of each matrix cell, read back from the store with their samples: what `farm compare` and the
nightly job judge. A cell's trials are its succeeded jobs across the selected runs; a compiled model's
cell is keyed by the model it was compiled from (its lineage), so a recompile is judged against its source.

A trial the agent measured as *disturbed* (others used its CPUs: ``agent/interference.py``) or *invalid*
(it broke a validity rule: ``agent/validity.py``) is not a trial to judge by: it goes to ``excluded``
with its reason, unless the caller asks for it (``include_disturbed`` / ``include_invalid``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from ..store.db import Store
from ..store.schema import HostRow, JobRow, ModelRow, ResultRow, SampleRow
from .filters import Columns, ResultFilter, select_runs, where

# The filter's dimensions in the tables collect() reads (the v_results view has no cell keys).
TABLE_COLUMNS = Columns(run_id=JobRow.run_id, status=JobRow.status, host=HostRow.name, model=ModelRow.name,
                        family=ModelRow.family, delegate=JobRow.delegate, threads=JobRow.threads,
                        power_mode=JobRow.power_mode,
                        usb_speed=func.coalesce(ResultRow.usb_speed_measured, JobRow.usb_speed))


@dataclass
class CellTrials:
    lineage_key: str
    cell_key: str
    label: str  # host · model · delegate · threads · power · port, for people
    trials: list[list[float]] = field(default_factory=list)  # ms samples, one list per succeeded trial
    run_ids: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    throttled: int = 0
    skipped: int = 0
    seconds: float = 0.0  # wall time its jobs took, start to finish (JUnit's time per test case)
    # Succeeded trials left out of the judgement: (run id, "disturbed" or "invalid", the agent's reason).
    excluded: list[tuple[int, str, str]] = field(default_factory=list)

    def excluded_reason(self) -> str:
        """'disturbed: cpu_share 0.45 < 0.80 ... (3 of 3 trials)': why this cell's trials were not judged."""
        if not self.excluded:
            return ""
        _, kind, reason = self.excluded[-1]
        total = len(self.excluded) + len(self.trials)
        return f"{kind}: {reason} ({len(self.excluded)} of {total} trials)"


def excluded_because(detail: dict | None, include_disturbed: bool = False,
                     include_invalid: bool = False) -> tuple[str, str] | None:
    """("disturbed"|"invalid", reason) when a result document is not to be judged by, else None."""
    detail = detail or {}
    validity = detail.get("validity") or {}
    if not include_invalid and validity.get("valid") is False:
        return "invalid", str(validity.get("reason") or "a validity rule broken")
    interference = detail.get("interference") or {}
    if not include_disturbed and interference.get("disturbed"):
        return "disturbed", str(interference.get("disturbed_reason") or "disturbed")
    return None


def lineage_sha(session, model: ModelRow) -> str:  # type: ignore[no-untyped-def]
    """The sha of the model a compiled model came from (followed to its root), else its own."""
    seen = set()
    current = model
    while getattr(current, "source_model_id", None) and current.id not in seen:
        seen.add(current.id)
        parent = session.get(ModelRow, current.source_model_id)
        if parent is None:
            break
        current = parent
    return current.sha256


def lineage_key(cell_key: str, model_sha: str, root_sha: str) -> str:
    return cell_key.replace(model_sha[:16], root_sha[:16], 1)


def collect(store: Store, selected: ResultFilter, include_disturbed: bool = False,
            include_invalid: bool = False) -> dict[str, CellTrials]:
    """The cells of the jobs the filter selects, by lineage key. Only succeeded jobs become trials; with
    ``status="all"`` (as :func:`collect_runs` asks) failed and skipped ones are counted too. Disturbed and
    invalid results are ``excluded`` unless included."""
    cells: dict[str, CellTrials] = {}
    # A run named but no longer stored (a baseline's, deleted) simply has no jobs: the caller decides what that means.
    run_ids = select_runs(store, selected) if selected.chooses_runs else None
    with store.session() as session:
        rows = session.execute(
            select(JobRow, ModelRow, HostRow, ResultRow)
            .join(ModelRow, ModelRow.id == JobRow.model_id)
            .join(HostRow, HostRow.id == JobRow.host_id)
            .outerjoin(ResultRow, ResultRow.job_id == JobRow.id)
            .where(*where(selected, TABLE_COLUMNS, run_ids))
            .order_by(JobRow.run_id, JobRow.id)
        ).all()
        result_ids = [result.id for *_, result in rows if result is not None]
        samples: dict[int, list[float]] = defaultdict(list)
        for chunk_start in range(0, len(result_ids), 500):
            chunk = result_ids[chunk_start:chunk_start + 500]
            for sample in session.scalars(select(SampleRow).where(SampleRow.result_id.in_(chunk))
                                          .order_by(SampleRow.result_id, SampleRow.idx)):
                samples[sample.result_id].append(sample.duration_ns / 1e6)
        roots: dict[int, str] = {}
        for job, model, host, result in rows:
            if model.id not in roots:
                roots[model.id] = lineage_sha(session, model)
            key = lineage_key(job.cell_key, model.sha256, roots[model.id])
            cell = cells.get(key)
            if cell is None:
                label = " · ".join(str(part) for part in (
                    host.name, model.name, job.delegate, f"{job.threads} thr", job.power_mode or "-",
                    job.usb_port or "-"))
                cell = cells[key] = CellTrials(key, job.cell_key, label)
            if job.started_at is not None and job.finished_at is not None:
                cell.seconds += max(0.0, (job.finished_at - job.started_at).total_seconds())
            if job.status == "skipped":
                cell.skipped += 1
            elif result is None or job.status != "succeeded":
                cell.failures.append(f"run {job.run_id}: {job.status}: {job.reason or 'no result'}")
            elif (why := excluded_because(result.detail, include_disturbed, include_invalid)) is not None:
                cell.excluded.append((job.run_id, *why))
            else:
                cell.trials.append(samples.get(result.id, []))
                cell.run_ids.append(job.run_id)
                if result.throttled:
                    cell.throttled += 1
    return cells


def collect_runs(store: Store, run_ids: list[int] | tuple[int, ...], include_disturbed: bool = False,
                 include_invalid: bool = False) -> dict[str, CellTrials]:
    """The cells of every job of these runs, whatever its status: a failed or skipped trial is part of a
    cell's story. No runs, no cells (an empty filter would mean every run)."""
    if not run_ids:
        return {}
    return collect(store, ResultFilter(runs=tuple(run_ids), status="all"), include_disturbed, include_invalid)
