"""The ``v_results`` columns a report reads: every other column is left in the database.

A report on the latest 1,000 nightlies reads 55,000 rows; each JSON column of the view is lifted out of
the result document row by row (SQLite's json_extract and PostgreSQL's ``->`` on json parse the document
each time), and each column costs Python time per row, so reading all 97 columns was most of the report's
time (README, "A store that scales"). ``tests/test_report_columns.py`` checks that every view column the
report's code names is listed here: a table that read a column left out would silently see it missing.
"""

from __future__ import annotations

from ..references.model import SETTING_COLUMNS

REPORT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((
    # cells and their dimensions (the job id: which of one cell's results in one run is the newest)
    "run_id", "job_id", "status", "reason", "host", "board", "model", "model_family", "model_sha256", "source_model",
    "ops_per_inference", "delegate", "threads", "power_mode", "usb_port", "usb_speed", "layers", "backend",
    "precision",
    # the statistics
    "samples", "mean_ms", "median_ms", "p90_ms", "p99_ms", "std_ms", "gops",
    # hosts and toolchains, run labels
    "runtime", "runtime_version", "python", "os", "kernel", "l4t", "jetpack", "libedgetpu", "compiler_version",
    "run_labels",
    # Edge TPUs: simulated lab, several at once, placements, pipelines
    "edgetpu_device", "simulated", "concurrency", "jobs_beside", "window_start", "window_end", "throughput_ips",
    "placement", "model_set", "models_in_cell", "num_segments", "model_0_ms", "model_1_ms", "model_2_ms",
    # interference and validity
    "cpu_share", "other_load", "disturbed_reason", "invalid_reason", "disturbed", "valid",
    # GPUs
    "gpu_module", "gpu_cuda_cores", "gpu_clock_hz", "gpu_clock_min_hz", "gpu_max_clock_hz", "gpu_rail_w",
    "gpu_launch", "h2d_ms", "d2h_ms", "engine_build_ms",
    # what a published reference's settings may name (farm reference import)
    *SETTING_COLUMNS,
)))
