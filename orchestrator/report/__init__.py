"""Reports from stored results: the seeds' tables and charts, in the terminal, Markdown or one HTML file.

    from orchestrator.report import Selection, load_results, build_report, export
    frame = load_results(open_store(), Selection(latest=True, delegates=("edgetpu",)))
    export(frame, Path("results.parquet"))
"""

from .build import Report, build_report
from .data import Selection, export, load_results, parse_when, select_runs

__all__ = ["Report", "Selection", "build_report", "export", "load_results", "parse_when", "select_runs"]
