"""`farm report` on a lab run with models compiled by the stand-in compiler: a co-compiled group's shared
on-chip cache and an operator table for each segment of a segmented compile (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import tflite

from orchestrator.models import registry
from orchestrator.report import Selection, build_report, render
from orchestrator.report.build import CO_COMPILED, COMPILER_CHANGES, SEGMENTS
from orchestrator.store import open_store
from tests.test_cli_run import farm
from tests.test_edgetpu_standin import make_compiler

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

MIB = 1024 ** 2
NO_RUNTIME_BOARD = "jetson-nano-jp4"


def test_report_from_a_lab_run_shows_the_group_cache_and_each_segments_operators(
        running_lab: RunningLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    new, old = make_compiler(tmp_path, "16.0.384591198"), make_compiler(tmp_path, "15.0.340273435")
    farm("models", "build", "--family", "conv_stack", "--layers", "1,2", "--db", db)
    farm("models", "compile", "conv_stack-l1", "conv_stack-l2", "--compiler", str(new), "--db", db)
    farm("models", "compile", "conv_stack-l2", "--num-segments", "2", "--compiler", str(new), "--db", db)
    farm("models", "compile", "conv_stack-l1", "--compiler", str(old), "--compiler", str(new), "--db", db)
    compiled = [m["name"] for m in json.loads(farm("query", "--db", db, "--format", "json",
                                                   "select name from models where source = 'compiled'").stdout)]
    assert len(compiled) == 6
    host = next(h.name for h in running_lab.inventory.hosts if h.board != NO_RUNTIME_BOARD)
    matrix = tmp_path / "matrices.yaml"
    matrix.write_text(f"""
matrices:
  compiled:
    models: [conv_stack-l1, {", ".join(compiled)}]
    threads: [1]
    hosts: [{host}]
    timing: {{warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0, max_seconds: 20}}
""")
    farm("run", "--matrix", "compiled", "--matrix-file", str(matrix), "--inventory",
         str(running_lab.lab.inventory_path), "--db", db)
    store = open_store(db)
    try:
        report = build_report(store, Selection(), with_plots=False)
        source = next(m for m in registry.list_models(store) if m.name == "conv_stack-l2")
    finally:
        store.close()
    groups = report.table(CO_COMPILED)
    assert len(groups) == 2 and groups["group"].nunique() == 1
    # The group's cache is both models' used plus the remaining figure once: the 7 MiB the stand-in offers.
    expected = groups["on_chip_used_mib"].sum() + groups["group_remaining_mib"].iloc[0]
    assert groups["group_cache_mib"].tolist() == [expected, expected]
    assert abs(expected - 7.0) <= 0.01
    segments = next(s for s in report.sections if s.title == SEGMENTS).blocks
    assert len(segments) == 2 and all(not table.empty for table in segments.values())
    assert all(set(table["status"]) == {"Mapped to Edge TPU"} for table in segments.values())
    # The segments split the source between them: their rows add up to the source graph's operator count.
    graph = tflite.Model.GetRootAsModel(Path(source.path).read_bytes(), 0).Subgraphs(0)
    assert sum(table["count"].sum() for table in segments.values()) == graph.OperatorsLength()
    changes = report.table(COMPILER_CHANGES)
    assert changes["compiler"].tolist() == ["15.0.340273435", "16.0.384591198"]
    assert changes["model"].unique().tolist() == ["conv_stack-l1"]
    page = render.to_html(report)
    assert CO_COMPILED in page and SEGMENTS in page and COMPILER_CHANGES in page
