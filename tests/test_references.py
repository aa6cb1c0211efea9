"""Published references (pycoral's CSVs, the seeds' tables) beside results, and the report's --stat."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from agent.bench import summarize
from orchestrator.cli import app
from orchestrator.errors import FarmError
from orchestrator.inventory import Host
from orchestrator.references import parse_pycoral_csv
from orchestrator.references.seeds import seed_references
from orchestrator.report import build_report
from orchestrator.report.build import LATENCY, REFERENCES, THREADS
from orchestrator.results import ResultFilter
from orchestrator.store import open_store, records
from orchestrator.store.db import Store
from orchestrator.store.schema import ModelRow

# google-coral/pycoral benchmarks/reference/inference_reference_x86_64.csv, as published (Xeon E5-1650 v3 with
# the USB Accelerator on USB 3.0; means of 200 invokes).
PYCORAL_X86 = """MODEL INFERENCE_TIME
inception_v1_224_quant_edgetpu.tflite 3.06
inception_v4_299_quant_edgetpu.tflite 84.25
ssd_mobilenet_v1_coco_quant_postprocess_edgetpu.tflite 10.02
ssd_mobilenet_v2_face_quant_postprocess_edgetpu.tflite 5.36
mobilenet_v1_1.0_224_quant_edgetpu.tflite 2.17
mobilenet_v2_1.0_224_quant_edgetpu.tflite 2.29
"""
# ...imprinting_reference_training_rp4b.csv: three columns, a training time.
PYCORAL_IMPRINTING = """MODEL DATA_SET TRAINING_TIME
mobilenet_v1_1.0_224_l2norm_quant_edgetpu.tflite random 987.3074939987418
"""


def test_pycoral_reference_files_parse_as_published(tmp_path: Path) -> None:
    path = tmp_path / "inference_reference_x86_64.csv"
    path.write_text(PYCORAL_X86)
    refs = parse_pycoral_csv(path, "x86-usb", {"usb_speed": 5000})
    assert [r.model for r in refs][:2] == ["inception_v1_224_quant_edgetpu", "inception_v4_299_quant_edgetpu"]
    assert {r.delegate for r in refs} == {"edgetpu"}  # from the _edgetpu names
    assert {r.stat for r in refs} == {"mean"} and {r.metric for r in refs} == {"inference"}
    assert refs[4].value_ms == pytest.approx(2.17) and refs[4].settings == {"usb_speed": 5000}
    imprinting = tmp_path / "imprinting_reference_training_rp4b.csv"
    imprinting.write_text(PYCORAL_IMPRINTING)
    (train,) = parse_pycoral_csv(imprinting, "rpi4")
    assert (train.metric, train.dataset, train.value_ms) == ("training", "random", pytest.approx(987.3075))


@pytest.mark.parametrize(("text", "message"), [
    ("MODEL LATENCY\na.tflite 1\n", ":1: header 'MODEL LATENCY' is not a pycoral reference header"),
    ("MODEL INFERENCE_TIME\na.tflite 1\nb.tflite\n", ":3: 1 field(s); expected 2"),
    ("MODEL INFERENCE_TIME\na.tflite fast\n", ":2: time 'fast' is not a number"),
    ("MODEL INFERENCE_TIME\na.tflite -1\n", ":2: time '-1' must be a positive number"),
    ("MODEL INFERENCE_TIME\na.tflite 1\na.tflite 2\n", ":3: a.tflite is listed twice (first on line 2)"),
    ("", ": empty; expected a header line"),
])
def test_a_bad_reference_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ref.csv"
    path.write_text(text)
    with pytest.raises(FarmError) as caught:
        parse_pycoral_csv(path, "x86-usb")
    assert f"{path}{message}" in str(caught.value)


def test_seed_references_hold_the_published_tables() -> None:
    refs = {(r.board, r.model, r.delegate, r.setting_key): r.value_ms for r in seed_references()}
    # SEEDS §1: Jetson Nano, Edge TPU dm0.5 at 4 threads 153 ms; Pi 3 B+ CPU full model at 1 thread 1873 ms.
    assert refs["jetson-nano", "deeplabv3_mnv2_dm05_pascal_quant_edgetpu", "edgetpu", "threads=4"] == 153
    assert refs["rpi3b+", "deeplabv3_mnv2_pascal_quant", "cpu", "threads=1"] == 1873
    # SEEDS §2: 300 conv layers at 10W on USB2 397.0 ms; MobileNet v2 CPU at 5W (2 threads) 133.7 ms.
    assert refs["jetson-nano", "conv_stack-l300_edgetpu", "edgetpu", "power_mode=10W,usb_speed=480"] == 397.0
    assert refs["jetson-nano", "mobilenet_v2_1.0_224_quant", "cpu", "power_mode=5W,threads=2"] == 133.7


def _add_model(store: Store, name: str, delegate: str) -> int:
    with store.session() as session:
        row = ModelRow(sha256=hashlib.sha256(name.encode()).hexdigest(), name=name, family="imported",
                       params={}, source="imported", path=f"/m/{name}.tflite", size_bytes=1000, inputs=[],
                       outputs=[], needs_edgetpu=delegate == "edgetpu")
        session.add(row)
        session.commit()
        return row.id


def _store_results(store: Store, board: str, cells: list[tuple[str, str, int, int | None, float]]) -> int:
    """One run on one host: (model name, delegate, threads, usb speed, mean ms) per cell, 20 samples each
    spread ±10 % around the mean so that mean, median and p90 differ."""
    host_id = records.upsert_host(store, Host(name=f"{board}-1", transport="ssh", address="192.0.2.30", board=board))
    run_id = records.create_run(store, "refs", "refs.yaml", [])
    jobs, model_ids = [], {}
    for name, delegate, threads, speed, _ in cells:
        if name in model_ids:
            model_id = model_ids[name]
        else:
            model_id = model_ids[name] = _add_model(store, name, delegate)
        jobs.append({"host_id": host_id, "model_id": model_id, "delegate": delegate, "threads": threads,
                     "usb_port": "2-1" if speed else None, "usb_speed": speed, "timing": {},
                     "cell_key": f"{board}|{name}|{delegate}|{threads}"})
    for job_id, (*_, mean_ms) in zip(records.add_jobs(store, run_id, jobs), cells, strict=True):
        # A skewed spread: the slow tail pulls the mean above the median.
        samples = [round(mean_ms * 1e6 * f) for f in [0.95] * 14 + [1.0, 1.05, 1.1, 1.2, 1.25, 1.35]]
        scale = mean_ms * 1e6 * 20 / sum(samples)
        samples = [round(s * scale) for s in samples]
        records.store_result(store, job_id, None, "3.11.7", {
            "runtime": {"name": "tflite_runtime", "version": "2.14.0"},
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 5.0,
                       "first_inference_ms": mean_ms, "warmup_runs": 1}})
    records.finish_run(store, run_id, "finished")
    return run_id


def test_report_puts_pycoral_references_beside_results_and_flags_an_outlier(db_url: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "inference_reference_x86_64.csv"
    csv_path.write_text(PYCORAL_X86)
    runner = CliRunner()
    imported = runner.invoke(app, ["reference", "import", str(csv_path), "--board", "x86-usb", "--setting",
                                   "usb_speed=5000", "--db", db_url])
    assert imported.exit_code == 0, imported.output
    assert "6 reference(s): 6 added, 0 replaced" in imported.output
    store = open_store(db_url)
    try:
        run_id = _store_results(store, "x86-usb", [
            ("mobilenet_v1_1.0_224_quant_edgetpu", "edgetpu", 1, 5000, 2.30),  # +6 %: inside pycoral's band
            ("inception_v1_224_quant_edgetpu", "edgetpu", 1, 5000, 2.80),  # -8.5 %
            ("ssd_mobilenet_v1_coco_quant_postprocess_edgetpu", "edgetpu", 1, 5000, 21.0),  # planted: 2.1x
            ("mobilenet_v2_1.0_224_quant_edgetpu", "edgetpu", 1, 480, 9.0),  # USB2: the reference is USB3's
            ("conv_stack-l10", "cpu", 1, None, 50.0),  # no published reference
        ])
        report = build_report(store, ResultFilter(runs=(run_id,)), with_plots=False)
    finally:
        store.close()
    table = report.table(REFERENCES).set_index("model")
    assert sorted(table.index) == ["inception_v1_224_quant_edgetpu", "mobilenet_v1_1.0_224_quant_edgetpu",
                                   "ssd_mobilenet_v1_coco_quant_postprocess_edgetpu"]
    assert (table["stat"] == "mean").all()  # pycoral publishes means: compared with each result's mean
    assert table.loc["mobilenet_v1_1.0_224_quant_edgetpu", "measured_ms"] == pytest.approx(2.30, rel=1e-3)
    assert table.loc["mobilenet_v1_1.0_224_quant_edgetpu", "ratio"] == pytest.approx(2.30 / 2.17, rel=1e-3)
    assert table["check"].to_dict() == {"mobilenet_v1_1.0_224_quant_edgetpu": "ok",
                                        "inception_v1_224_quant_edgetpu": "ok",
                                        "ssd_mobilenet_v1_coco_quant_postprocess_edgetpu": "outside ±30%"}
    flagged = [n for n in report.notes if "outside the ±30% band" in n]
    assert len(flagged) == 1 and "ssd_mobilenet_v1_coco_quant_postprocess_edgetpu" in flagged[0]
    # A narrower band flags the -8.5 % inception result too.
    store = open_store(db_url)
    try:
        narrow = build_report(store, ResultFilter(runs=(run_id,)), with_plots=False, reference_band=0.05)
    finally:
        store.close()
    assert (narrow.table(REFERENCES)["check"] != "ok").sum() == 3


def test_report_stat_changes_the_centre_and_its_spread(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        run_id = _store_results(store, "rpi3b+", [(m, "cpu", t, None, ms) for m, t, ms in [
            ("deeplabv3_mnv2_dm05_pascal_quant", 1, 862.0), ("deeplabv3_mnv2_dm05_pascal_quant", 2, 537.0),
            ("deeplabv3_mnv2_dm05_pascal_quant", 4, 385.0)]])
        by = {stat: build_report(store, ResultFilter(runs=(run_id,)), with_plots=True, stat=stat)
              for stat in ("median", "mean", "p90")}
        rows = pd.read_sql("select threads, mean_ms, median_ms, std_ms, p90_ms, p99_ms from v_results",
                           store.engine).set_index("threads")
    finally:
        store.close()
    assert list(by["median"].table(LATENCY).columns[-3:]) == ["median_ms", "p90_ms", "samples"]
    assert list(by["mean"].table(LATENCY).columns[-3:]) == ["mean_ms", "std_ms", "samples"]
    assert list(by["p90"].table(LATENCY).columns[-3:]) == ["p90_ms", "p99_ms", "samples"]
    # SEEDS §1 tabled means: with --stat mean the sweep shows the means stored, not the (lower) medians.
    (sweep,) = by["mean"].sections[[s.title for s in by["mean"].sections].index(THREADS)].blocks.values()
    assert list(sweep.columns) == ["model", "delegate", "1 thr", "1 thr std", "2 thr", "2 thr std", "4 thr",
                                   "4 thr std"]
    assert sweep.loc[0, "1 thr"] == pytest.approx(862.0, rel=1e-6) == pytest.approx(rows.loc[1, "mean_ms"])
    assert sweep.loc[0, "4 thr std"] == pytest.approx(rows.loc[4, "std_ms"])
    (median_sweep,) = by["median"].sections[[s.title for s in by["median"].sections].index(THREADS)].blocks.values()
    assert median_sweep.loc[0, "1 thr"] == pytest.approx(rows.loc[1, "median_ms"])
    assert median_sweep.loc[0, "1 thr"] < sweep.loc[0, "1 thr"]
    assert median_sweep.loc[0, "2 thr p90"] == pytest.approx(rows.loc[2, "p90_ms"])
    assert [p.slug for p in by["mean"].plots] == ["threads-rpi3b_-1"]
    assert "bars ± one standard deviation" in by["mean"].plots[0].caption


def test_report_cli_refuses_an_unknown_stat(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--stat", "mode"])
    assert result.exit_code == 2 and "'mode' is not one of" in result.output


def test_reference_import_needs_a_board_and_a_known_setting(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(PYCORAL_X86)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    runner = CliRunner()
    no_board = runner.invoke(app, ["reference", "import", str(path), "--db", url])
    assert isinstance(no_board.exception, FarmError) and "--board is required" in str(no_board.exception)
    bad = runner.invoke(app, ["reference", "import", str(path), "--board", "b", "--setting", "speed=5000",
                              "--db", url])
    assert "'speed' is not a setting a reference can name" in str(bad.exception)
    seeds = runner.invoke(app, ["reference", "import", "--seeds", "--db", url])
    again = runner.invoke(app, ["reference", "import", "--seeds", "--db", url])
    assert seeds.exit_code == again.exit_code == 0
    total = len(seed_references())
    assert f"{total} added, 0 replaced" in seeds.output and f"0 added, {total} replaced" in again.output
    listed = runner.invoke(app, ["reference", "list", "--board", "rpi3b+", "--db", url], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "16 reference(s)" in listed.output and "SEEDS §1" in listed.output


def test_nightly_judges_cells_against_a_reference_when_asked(tmp_path: Path) -> None:
    from orchestrator.nightly.runner import Settings, judge
    from orchestrator.references import import_references

    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        path = tmp_path / "inference_reference_x86_64.csv"
        path.write_text(PYCORAL_X86)
        import_references(store, parse_pycoral_csv(path, "x86-usb", {"usb_speed": 5000}))
        run_id = _store_results(store, "x86-usb", [
            ("mobilenet_v1_1.0_224_quant_edgetpu", "edgetpu", 1, 5000, 2.25),  # +4 %: within the band
            ("inception_v1_224_quant_edgetpu", "edgetpu", 1, 5000, 6.5),  # 2.1x the reference: regressed
            ("ssd_mobilenet_v1_coco_quant_postprocess_edgetpu", "edgetpu", 1, 5000, 5.0),  # half: improved
            ("conv_stack-l10", "cpu", 1, None, 50.0),  # no reference: judged as before (no baseline yet)
        ])
        # The first night without the option: no cell has a baseline yet, so each run becomes its own.
        plain = {o.cell.label.split(" · ")[1]: o.verdict.state for o in judge(store, "refs", [run_id], None,
                                                                                Settings())}
        by_reference = {o.cell.label.split(" · ")[1]: o.verdict
                        for o in judge(store, "refs", [run_id], None, Settings(reference_baseline=True))}
    finally:
        store.close()
    assert {name: v.state for name, v in by_reference.items()} == {
        "mobilenet_v1_1.0_224_quant_edgetpu": "unchanged", "inception_v1_224_quant_edgetpu": "regressed",
        "ssd_mobilenet_v1_coco_quant_postprocess_edgetpu": "improved",
        "conv_stack-l10": "unchanged"}  # no reference: its stored baseline, the same run, judges it
    regressed = by_reference["inception_v1_224_quant_edgetpu"]
    assert regressed.baseline_ms == pytest.approx(3.06) and regressed.ratio == pytest.approx(6.5 / 3.06, rel=1e-3)
    assert "inference_reference_x86_64.csv's 3.060 ms (mean)" in regressed.detail
    # Without the option the references change nothing; with it they win over the stored baselines.
    assert set(plain.values()) == {"new"}
