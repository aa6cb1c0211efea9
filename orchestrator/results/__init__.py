"""Reading results back: one filter (:class:`ResultFilter`), one frame of ``v_results`` columns, and the
per-cell trials with their samples that ``farm compare`` and the nightly job judge.

    from orchestrator.results import ResultFilter, results_frame, export
    frame = results_frame(open_store(), ResultFilter(tags=("lab-a",), delegates=("edgetpu",)))
    export(frame, Path("results.parquet"))

``Selection`` and ``load_results`` (the names ``orchestrator.report`` exports) are the same filter and reader.
"""

from __future__ import annotations

import importlib
from typing import Any

# Each name by the module that defines it, loaded on first use: `farm results` reads rows (rows.py)
# without pandas, and importing this package must not import pandas for it (README, "Short commands").
_WHERE = {
    "export": "export",
    **dict.fromkeys(("STATUSES", "Columns", "ResultFilter", "missing_runs", "parse_when", "select_runs", "where"),
                    "filters"),
    **dict.fromkeys(("GROUPS", "grouped", "load_results", "results_frame", "samples_frame"), "frame"),
    **dict.fromkeys(("ModelInfo", "Rows", "model_rows", "results_rows"), "rows"),
    **dict.fromkeys(("CellTrials", "collect", "collect_runs"), "trials"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get("ResultFilter" if name == "Selection" else name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), "ResultFilter" if name == "Selection" else name)
    # Kept as the package's own attribute: importing the submodule `export` set `export` to the module.
    globals()[name] = value
    return value


__all__ = ["GROUPS", "STATUSES", "CellTrials", "Columns", "ModelInfo", "ResultFilter", "Rows", "Selection", "collect",
           "collect_runs", "export", "grouped", "load_results", "missing_runs", "model_rows", "parse_when",
           "results_frame", "results_rows", "samples_frame", "select_runs", "where"]
