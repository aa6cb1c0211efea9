"""Ask the store whether a run lost or doubled anything: what the fault campaign asserts after each run.

    from orchestrator.integrity import check_run
    report = check_run(store, run_id)
    assert report.ok, report.problems()

Read-only; works on any run, finished or not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select

from agent.result_reader import ResultView

from .lifecycle import TERMINAL
from .store.db import Store
from .store.schema import HostRow, JobRow, ResultRow, SampleRow


@dataclass
class RunIntegrity:
    run_id: int
    jobs: int = 0
    results: int = 0
    by_status: Counter = field(default_factory=Counter)
    non_terminal: list[int] = field(default_factory=list)  # job ids not succeeded/failed/skipped/cancelled
    duplicates: list[int] = field(default_factory=list)  # job ids with more than one result
    misattributed: list[int] = field(default_factory=list)  # result ids whose document names another job
    succeeded_without_result: list[int] = field(default_factory=list)
    result_of_unsucceeded: list[int] = field(default_factory=list)  # job ids with a result but another status
    samples_mismatch: list[int] = field(default_factory=list)  # result ids whose stored samples != count
    cells: dict[str, str] = field(default_factory=dict)  # "host/cell key" -> status, to compare two runs

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> dict[str, list[int]]:
        found = {"non_terminal": self.non_terminal, "duplicates": self.duplicates,
                 "misattributed": self.misattributed, "succeeded_without_result": self.succeeded_without_result,
                 "result_of_unsucceeded": self.result_of_unsucceeded, "samples_mismatch": self.samples_mismatch}
        return {name: ids for name, ids in found.items() if ids}


def check_run(store: Store, run_id: int) -> RunIntegrity:
    report = RunIntegrity(run_id)
    with store.session() as session:
        rows = session.execute(select(JobRow, HostRow.name).join(HostRow, HostRow.id == JobRow.host_id)
                               .where(JobRow.run_id == run_id).order_by(JobRow.id)).all()
        results = session.scalars(select(ResultRow).join(JobRow, JobRow.id == ResultRow.job_id)
                                  .where(JobRow.run_id == run_id)).all()
        sample_counts = dict(session.execute(
            select(SampleRow.result_id, func.count()).join(ResultRow, ResultRow.id == SampleRow.result_id)
            .join(JobRow, JobRow.id == ResultRow.job_id).where(JobRow.run_id == run_id)
            .group_by(SampleRow.result_id)).all())
    jobs = {job.id: job for job, _ in rows}
    report.jobs, report.results = len(rows), len(results)
    for job, host in rows:
        report.by_status[job.status] += 1
        report.cells[f"{host}/{job.cell_key}"] = job.status
        if job.status not in TERMINAL:
            report.non_terminal.append(job.id)
    per_job = Counter(result.job_id for result in results)
    report.duplicates = sorted(job_id for job_id, count in per_job.items() if count > 1)
    for job_id, job in jobs.items():
        if job.status == "succeeded" and not per_job.get(job_id):
            report.succeeded_without_result.append(job_id)
        if job.status != "succeeded" and per_job.get(job_id):
            report.result_of_unsucceeded.append(job_id)
    for result in results:
        job = jobs[result.job_id]
        expected = (job.job_doc or {}).get("job_id")
        named = ResultView(result.detail or {}).job_id
        key_ok = result.spool_key is None or expected is None or result.spool_key.startswith(f"{expected}.")
        if (expected is not None and named != expected) or not key_ok:
            report.misattributed.append(result.id)
        if sample_counts.get(result.id, 0) != result.count:
            report.samples_mismatch.append(result.id)
    return report
