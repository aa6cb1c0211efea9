"""SEEDS §4's arithmetic from its published numbers: peak, ideal time and measured-over-ideal in `farm report`."""

from __future__ import annotations

import pandas as pd
import pytest

from agent.boards.jetson_gpu import peak_gflops, spec_for
from orchestrator.report import Selection, build_report
from orchestrator.report.build import CROSS_RUNTIME, FP16, GPU_PEAK
from orchestrator.results import results_frame
from orchestrator.store import open_store
from tests.seed_gpu import GOOGLENET_OPS, load_seed_gpu


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # SQLite only: the lifted columns' SQL on both dialects is what test_gpu_columns_read_alike checks.
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('gpu') / 'farm.db'}")
    load_seed_gpu(store)
    yield build_report(store, Selection(), with_plots=False)
    store.close()


def _row(table: pd.DataFrame, **match: object) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for column, value in match.items():
        mask &= table[column] == value
    assert mask.sum() == 1, f"{match} matches {mask.sum()} rows of\n{table}"
    return table[mask].iloc[0]


def test_the_board_families_know_the_seeds_peaks() -> None:
    tx1, tx2 = spec_for("jetson-tx1"), spec_for("jetson-tx2")
    assert tx1 is not None and tx2 is not None
    # "1.0 GHz x 256 cores x 2 = 512 GFLOP/s": the TX1's clock is 998.4 MHz, which the seed rounds to 1.0 GHz.
    assert peak_gflops(tx1["cuda_cores"], tx1["max_clock_hz"]) == pytest.approx(512, rel=0.003)
    assert peak_gflops(tx2["cuda_cores"], tx2["max_clock_hz"]) == pytest.approx(665.6)
    assert peak_gflops(256, 1.3e9, "fp16") == pytest.approx(2 * 665.6)
    nano = spec_for("NVIDIA Jetson Nano Developer Kit")
    assert nano is not None and (nano["cuda_cores"], nano["max_clock_hz"]) == (128, 921600000)
    # The Nano's FP16 peak is NVIDIA's "472 GFLOPS".
    assert round(peak_gflops(nano["cuda_cores"], nano["max_clock_hz"], "fp16")) == 472


def test_seeds_s4_ideal_times_and_measured_over_ideal(report) -> None:  # type: ignore[no-untyped-def]
    peak = report.table(GPU_PEAK)
    tx1 = _row(peak, host="tx1", backend="tensorrt", precision="fp32")
    tx2 = _row(peak, host="tx2", backend="tensorrt", precision="fp32")
    assert round(tx1["ideal_ms"]) == 4 and round(tx2["ideal_ms"]) == 3  # "ideal 4 ms", "ideal 3 ms"
    assert tx2["peak_gflops"] == pytest.approx(665.6)
    assert tx1["clock_mhz"] == pytest.approx(998.4) and tx1["below_max_clock"] == "no"
    for row in (tx1, tx2):  # "measured time is ~3x the ideal": a third of the peak achieved
        assert 2.8 <= row["measured_vs_ideal"] <= 3.2
        assert row["share_of_peak"] == pytest.approx(1 / row["measured_vs_ideal"])
        assert row["achieved_gflops"] == pytest.approx(GOOGLENET_OPS / (row["median_ms"] * 1e6))
    fp16 = _row(peak, host="tx1", backend="tensorrt", precision="fp16")
    # FP16's peak is twice FP32's, so its ideal time is half, and 1.9x faster is a bit further from it.
    assert fp16["peak_gflops"] == pytest.approx(2 * tx1["peak_gflops"])
    assert fp16["ideal_ms"] == pytest.approx(tx1["ideal_ms"] / 2)
    assert fp16["measured_vs_ideal"] == pytest.approx(tx1["measured_vs_ideal"] * 2 / 1.9)
    assert not any("below its maximum clock" in note for note in report.notes)


def test_fp16_speedup_and_runtimes_side_by_side(report) -> None:  # type: ignore[no-untyped-def]
    half = report.table(FP16)
    for host in ("tx1", "tx2"):
        assert _row(half, host=host, backend="tensorrt")["fp16_speedup"] == pytest.approx(1.9)
    cross = report.table(CROSS_RUNTIME)
    median = {(row.host, row.runtime, row.precision): row.median_ms for row in cross.itertuples()}
    # "TensorRT is 3-4x faster than Caffe", "TX2 is ~1.3x TX1".
    assert 3 <= median[("tx1", "caffe GPU", "fp32")] / median[("tx1", "TensorRT GPU", "fp32")] <= 4
    assert median[("tx1", "TensorRT GPU", "fp32")] / median[("tx2", "TensorRT GPU", "fp32")] == pytest.approx(1.3)
    assert median[("tx1", "TensorRT GPU", "fp16")] < median[("tx1", "TensorRT GPU", "fp32")]

def test_gpu_columns_read_alike_and_a_slowed_gpu_is_flagged(db_url: str) -> None:
    store = open_store(db_url)
    try:
        load_seed_gpu(store, clock_min_hz={"jetson-tx2": 1_100_000_000})
        frame = results_frame(store)
        tx2 = frame[frame["host"] == "tx2"]
        assert set(tx2["precision"]) == {"fp32", "fp16"} and set(tx2["backend"]) == {"tensorrt", "caffe"}
        assert (tx2["gpu_cuda_cores"] == 256).all() and (tx2["gpu_clock_min_hz"] == 1.1e9).all()
        assert set(frame["gpu_launch"]) == {"async", "sync"}
        report = build_report(store, Selection(), with_plots=False)
        peak = report.table(GPU_PEAK)
        assert set(peak[peak["host"] == "tx2"]["below_max_clock"]) == {"yes"}
        assert set(peak[peak["host"] == "tx1"]["below_max_clock"]) == {"no"}
        assert sum("tx2" in note and "below its maximum clock" in note for note in report.notes) == 3
    finally:
        store.close()


def test_launch_modes_side_by_side() -> None:
    from orchestrator.report.gpu import launch_modes

    cells = [("googlenet", "tx1", "tensorrt", "fp32", launch, ms)
             for launch, ms in (("sync", 24.0), ("async", 12.0), ("graph", 10.0))]
    cells.append(("googlenet", "tx1", "tensorrt", "fp16", "async", 6.0))  # one mode only: no comparison
    frame = pd.DataFrame([{"status": "succeeded", "run_id": 1, "model": m, "host": h, "backend": b, "precision": p,
                           "gpu_launch": launch, "median_ms": ms, "gpu_cuda_cores": 256, "model_sha256": "a" * 64,
                           "delegate": "gpu", "threads": 1, "power_mode": None}
                          for m, h, b, p, launch, ms in cells])
    table = launch_modes(frame)
    assert len(table) == 1 and table.iloc[0]["precision"] == "fp32"
    row = table.iloc[0]
    assert (row["sync_ms"], row["async_ms"], row["graph_ms"]) == (24.0, 12.0, 10.0)
    assert row["sync_vs_async"] == pytest.approx(2.0) and row["sync_vs_graph"] == pytest.approx(2.4)
