"""Reading results back: one filter (:class:`ResultFilter`), one frame of ``v_results`` columns, and the
per-cell trials with their samples that ``farm compare`` and the nightly job judge.

    from orchestrator.results import ResultFilter, results_frame, export
    frame = results_frame(open_store(), ResultFilter(tags=("lab-a",), delegates=("edgetpu",)))
    export(frame, Path("results.parquet"))

``Selection`` and ``load_results`` (the names ``orchestrator.report`` exports) are the same filter and reader.
"""

from .export import export
from .filters import STATUSES, Columns, ResultFilter, missing_runs, parse_when, select_runs, where
from .frame import GROUPS, ModelInfo, grouped, load_results, model_rows, results_frame, samples_frame
from .trials import CellTrials, collect, collect_runs

Selection = ResultFilter

__all__ = ["GROUPS", "STATUSES", "CellTrials", "Columns", "ModelInfo", "ResultFilter", "Selection", "collect", "collect_runs",
           "export",
           "grouped", "load_results", "missing_runs", "model_rows", "parse_when", "results_frame", "samples_frame",
           "select_runs", "where"]
