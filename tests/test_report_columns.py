"""The report reads only REPORT_COLUMNS of v_results: every view column its code names must be among them,
or a table would find the column missing and silently leave its part out."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.report.columns import REPORT_COLUMNS
from orchestrator.results.rows import DERIVED_FROM
from tests.test_report import V_RESULTS_COLUMNS

REPORT_DIR = Path(__file__).resolve().parent.parent / "orchestrator" / "report"


def named_in_report_code() -> set[str]:
    """Every view column the report package spells out: as a string, an attribute (row.median_ms) or the
    model_{k}_ms pattern of multi-model cells."""
    names: set[str] = set()
    for path in REPORT_DIR.glob("*.py"):
        if path.name == "columns.py":
            continue
        code = path.read_text()
        names |= set(re.findall(r"[\"']([a-z_0-9]+)[\"']", code)) | set(re.findall(r"\.([a-z_0-9]+)\b", code))
        if "model_{k}_ms" in code:
            names |= {f"model_{k}_ms" for k in range(3)}
    return names & (set(V_RESULTS_COLUMNS) | set(DERIVED_FROM))


def test_every_view_column_the_report_code_names_is_read() -> None:
    named = named_in_report_code()
    assert {"median_ms", "model_1_ms", "window_start", "gpu_launch", "usb_speed"} <= named  # the scan finds them
    assert named - set(REPORT_COLUMNS) == set()


def test_the_report_columns_are_view_columns_and_leave_most_json_out() -> None:
    assert set(REPORT_COLUMNS) - set(V_RESULTS_COLUMNS) <= set(DERIVED_FROM)
    left_out = set(V_RESULTS_COLUMNS) - set(REPORT_COLUMNS)
    assert {"temp_before_c", "agent_version", "run_started_at", "min_ms"} <= left_out
