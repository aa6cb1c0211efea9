"""`farm report` on a lab run with models compiled by the stand-in compiler: a co-compiled group's shared
on-chip cache and an operator table for each segment of a segmented compile (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tflite

from agent.bench import summarize
from orchestrator.inventory import Host
from orchestrator.models import registry
from orchestrator.report import Selection, build_report, render
from orchestrator.report.build import CO_COMPILED, COMPILER_CHANGES, SEGMENTS, SPEEDUP, THROUGHPUT
from orchestrator.store import open_store, records
from orchestrator.store.db import Store
from orchestrator.store.schema import ModelRow
from tests.conftest import SHARED_MODELS
from tests.model_setup import register_models
from tests.seed_data import DEEPLAB, samples_around
from tests.test_cli_run import farm
from tests.test_edgetpu_standin import make_compiler
from tests.test_edgetpu_twins import DEEPLAB as DEEPLAB_SOURCE
from tests.test_edgetpu_twins import DEEPLAB_TWIN

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

MIB = 1024 ** 2
NO_RUNTIME_BOARD = "jetson-nano-jp4"


def test_report_from_a_lab_run_shows_the_group_cache_and_each_segments_operators(
        running_lab: RunningLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    new, old = make_compiler(tmp_path, "16.0.384591198"), make_compiler(tmp_path, "15.0.340273435")
    register_models(db, builds=[("conv_stack", [1, 2])], compiles=[  # setup in this process: tests/model_setup.py
        (["conv_stack-l1", "conv_stack-l2"], [str(new)], 1), (["conv_stack-l2"], [str(new)], 2),
        (["conv_stack-l1"], [str(old), str(new)], 1)])
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


def store_deeplab_results(store: Store, cpu: ModelRow, twin: ModelRow) -> None:
    """SEEDS §1's Jetson Nano means for dm0.5 at 1..4 threads: the CPU model and the Edge TPU twin on USB3."""
    host_id = records.upsert_host(store, Host(name="nano-1", transport="ssh", address="192.0.2.10",
                                              board="jetson-nano"))
    facts_id = records.add_facts(store, host_id, {"board": "NVIDIA Jetson Nano Developer Kit", "cpu_count": 4})
    run_id = records.create_run(store, "deeplab", "seed.yaml", ["seed"])
    cells = [(cpu, "cpu", t + 1, None, ms) for t, ms in enumerate(DEEPLAB[("jetson-nano", "cpu",
                                                                            "deeplabv3_mnv2_dm05")])]
    cells += [(twin, "edgetpu", t + 1, "2-1", ms) for t, ms in enumerate(DEEPLAB[("jetson-nano", "edgetpu",
                                                                                  "deeplabv3_mnv2_dm05")])]
    jobs = [{"host_id": host_id, "model_id": model.id, "delegate": delegate, "threads": threads, "power_mode": None,
             "usb_port": port, "usb_speed": 5000 if port else None, "timing": {},
             "cell_key": f"nano-1|{model.sha256[:16]}|{delegate}|{threads}|-|{port or '-'}"}
            for model, delegate, threads, port, _ in cells]
    for job_id, (_, _, _, port, ms) in zip(records.add_jobs(store, run_id, jobs), cells, strict=True):
        samples = samples_around(ms)
        records.store_result(store, job_id, facts_id, "3.6.9", {
            "runtime": {"name": "tflite_runtime", "version": "2.1.0"},
            "edgetpu": {"port": port, "device": "usb:0"} if port else None,
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 50.0,
                       "first_inference_ms": ms * 1.5, "warmup_runs": 1}})
    records.finish_run(store, run_id, "finished")


def test_a_published_pair_fills_the_speedup_table_and_its_gops(db_url: str) -> None:
    store = open_store(db_url)
    try:
        twin, _ = registry.add_file(store, DEEPLAB_TWIN)
        cpu, _ = registry.add_file(store, DEEPLAB_SOURCE)  # added second: the twin links now
        store_deeplab_results(store, cpu, twin)
        report = build_report(store, Selection(), with_plots=False)
    finally:
        store.close()
    (row,) = report.table(SPEEDUP).itertuples()
    assert row.model == "deeplabv3_mnv2_dm05_pascal_quant"
    assert (row.cpu_ms, row.edgetpu_USB3_ms, row.speedup_USB3) == pytest.approx((179, 153, 179 / 153))
    rate = report.table(THROUGHPUT)
    best_tpu = rate[(rate["delegate"] == "edgetpu") & (rate["threads"] == 4)].iloc[0]
    # The source's 1.736 GOP per inference over the twin's 153 ms, not the CPU side's 0.297 GOP.
    assert best_tpu["gops_per_inference"] == pytest.approx(1.736, abs=0.0005)
    assert best_tpu["gops"] == pytest.approx(1.736 / 0.153, rel=1e-3)


def test_an_unlinked_twin_has_no_gops_rather_than_wrong_ones(db_url: str) -> None:
    store = open_store(db_url)
    try:
        twin, _ = registry.add_file(store, DEEPLAB_TWIN)
        cpu, _ = registry.add_file(store, SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite")  # not its source
        store_deeplab_results(store, cpu, twin)
        report = build_report(store, Selection(), with_plots=False)
    finally:
        store.close()
    rate = report.table(THROUGHPUT)
    assert set(rate["delegate"]) == {"cpu"}  # the twin's rows are left out, not filled with 0.297 GOP
