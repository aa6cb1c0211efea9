"""Reports from stored results: the seeds' tables and charts, in the terminal, Markdown or one HTML file.

    from orchestrator.report import Selection, load_results, build_report, export
    frame = load_results(open_store(), Selection(latest=True, delegates=("edgetpu",)))
    export(frame, Path("results.parquet"))

``Selection`` and ``load_results`` are :mod:`orchestrator.results`' ``ResultFilter`` and ``results_frame``.
"""

from ..results import Selection, export, load_results, parse_when, select_runs
from .build import Report, build_report

__all__ = ["Report", "Selection", "build_report", "export", "load_results", "parse_when", "select_runs"]
