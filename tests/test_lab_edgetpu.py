"""Edge TPU cells that really run in the lab: the x86 host's two USB accelerators on the stand-in
libedgetpu store succeeded results with port, measured speed, usb:N and the simulated mark, and
`farm report` builds SEEDS §2's speed-up and USB2/USB3 tables from them (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.report import Selection, build_report, render
from orchestrator.report.build import SPEEDUP
from orchestrator.store import open_store
from tests.model_setup import register_models
from tests.test_cli_run import farm

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

COMPILER = Path(__file__).parents[1] / "farm_lab" / "bin" / "edgetpu_compiler"  # the stand-in compiler
DEEP = 250  # past the 7 MiB the stand-in compiler caches (about 146 of these layers): 5.2 MB stream per invoke


def test_a_lab_run_stores_simulated_edgetpu_cells_on_both_ports_and_reports_the_speedup(
        running_lab: RunningLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    register_models(db, builds=[("conv_stack", [2, DEEP])],  # setup in this process: tests/model_setup.py
                    compiles=[([f"conv_stack-l{layers}"], [str(COMPILER)], 1) for layers in (2, DEEP)])
    compiled = {m["name"] for m in json.loads(farm("query", "--db", db, "--format", "json",
                                                   "select name from models where source = 'compiled'").stdout)}
    assert len(compiled) == 2
    host = running_lab.host("x86-usb")
    matrix = tmp_path / "matrices.yaml"
    matrix.write_text(f"""
matrices:
  seeds2:
    models: [conv_stack-l2, {", ".join(sorted(compiled))}]
    threads: [1]
    usb_ports: all
    hosts: [{host.name}]
    timing: {{warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0, max_seconds: 20}}
""")
    farm("run", "--matrix", "seeds2", "--matrix-file", str(matrix), "--inventory",
         str(running_lab.lab.inventory_path), "--db", db)
    rows = json.loads(farm("results", "--status", "all", "--format", "json", "--db", db).stdout)
    tpu = [r for r in rows if r["delegate"] == "edgetpu"]
    assert len(tpu) == 4 and {r["status"] for r in tpu} == {"succeeded"}, [r["reason"] for r in tpu]
    # Each port at its measured speed, as libedgetpu numbers them, and every one marked simulated.
    assert {(r["usb_port"], r["usb_speed"], r["edgetpu_device"]) for r in tpu} == \
        {("2-1", 5000, "usb:0"), ("1-1.2", 480, "usb:1")}
    assert {r["simulated"] for r in tpu} == {"stand-in"} and {r["libedgetpu"] for r in tpu} == {"stand-in"}
    cpu = [r for r in rows if r["delegate"] == "cpu"]
    assert len(cpu) == 1 and all(r["simulated"] is None and r["status"] == "succeeded" for r in cpu)
    table = farm("results", "--db", db).stdout
    assert "simulated" in table and "stand-in" in table

    store = open_store(db)
    try:
        report = build_report(store, Selection(), with_plots=False)
    finally:
        store.close()
    speedup = report.table(SPEEDUP)
    assert speedup["model"].tolist() == ["conv_stack-l2"]
    assert (speedup["speedup_USB3"] > 1).all() and (speedup["simulated"] == "stand-in").all()
    assert any("stand-in libedgetpu" in note for note in report.notes)
    # USB2's cost: small where nothing streams, large once the parameters outgrow the on-chip cache.
    by = {(r["source_model"], r["usb_speed"]): r["median_ms"] for r in tpu}
    # (The model says 0.7 ms and about 100 ms; a loaded machine adds delay, never removes it.)
    shallow = by[("conv_stack-l2", 480)] - by[("conv_stack-l2", 5000)]
    deep = by[(f"conv_stack-l{DEEP}", 480)] - by[(f"conv_stack-l{DEEP}", 5000)]
    assert deep > 50 and deep > 3 * shallow, (shallow, deep)
    render.to_markdown(report, tmp_path / "report.md")  # what `farm report --markdown` writes
    page = (tmp_path / "report.md").read_text()
    assert SPEEDUP in page and "USB2 / USB3" in page and "stand-in" in page
