"""SEEDS §4's figures (GoogLeNet on Jetson TX1 / TX2 with TensorRT), stored as results through farm's store API.

Published: GoogLeNet at batch 1, 224x224 is ~2 GFLOPs; TX1 peak 256 cores x 1.0 GHz x 2 = 512 GFLOP/s
(ideal 4 ms), TX2 665.6 GFLOP/s (ideal 3 ms); measured TensorRT time is ~3x the ideal; TensorRT is 3-4x
faster than Caffe; FP16 is nearly 2x FP32; TX2 is ~1.3x TX1. The write-up gives these relations, not
its raw times, so the measured medians below are the relations applied to the ideal: TX1 TensorRT FP32
at 3x its ideal, FP16 1.9x faster, Caffe 3.5x slower, TX2 1.3x faster than TX1 at each. The GPUs' clocks
are the boards' maximum (998.4 MHz on the TX1, 1300 MHz on the TX2), as under jetson_clocks.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from agent.bench import summarize
from agent.boards.jetson_gpu import peak_gflops, spec_for
from orchestrator.inventory import Host
from orchestrator.store import records
from orchestrator.store.db import Store
from orchestrator.store.schema import ModelRow
from tests.seed_data import samples_around

GOOGLENET_OPS = 2_000_000_000
MEASURED_OVER_IDEAL = 3.0
FP16_SPEEDUP = 1.9
TENSORRT_OVER_CAFFE = 3.5
TX2_OVER_TX1 = 1.3


def _ideal_ms(board: str) -> float:
    spec = spec_for(board)
    assert spec is not None
    return GOOGLENET_OPS / (peak_gflops(spec["cuda_cores"], spec["max_clock_hz"]) * 1e6)


def medians() -> dict[tuple[str, str, str], float]:
    """(board, runtime, precision) -> median ms, from the seed's relations."""
    tx1 = MEASURED_OVER_IDEAL * _ideal_ms("jetson-tx1")
    out = {}
    for board, scale in (("jetson-tx1", 1.0), ("jetson-tx2", 1 / TX2_OVER_TX1)):
        out[(board, "tensorrt", "fp32")] = tx1 * scale
        out[(board, "tensorrt", "fp16")] = tx1 * scale / FP16_SPEEDUP
        out[(board, "caffe", "fp32")] = tx1 * scale * TENSORRT_OVER_CAFFE
    return out


def load_seed_gpu(store: Store, clock_min_hz: dict[str, int] | None = None) -> int:
    """Store the §4 figures as one run over a TX1 and a TX2; returns the run id.

    ``clock_min_hz``: {board: the lowest clock sampled}, for a board that ran below its maximum.
    """
    with store.session() as session:
        model = session.scalar(select(ModelRow).where(ModelRow.name == "googlenet"))
        if model is None:
            model = ModelRow(sha256=hashlib.sha256(b"googlenet").hexdigest(), name="googlenet", family="googlenet",
                             params={}, source="imported", path="/seed/googlenet.onnx", size_bytes=28_000_000,
                             inputs=[], outputs=[], ops_per_inference=GOOGLENET_OPS, needs_edgetpu=False)
            session.add(model)
            session.commit()
    run_id = records.create_run(store, "seed-s4", "seed.yaml", ["seed-s4"])
    cells = list(medians().items())
    jobs, hosts = [], {}
    for (board, runtime, precision), _ in cells:
        if board not in hosts:
            hosts[board] = records.upsert_host(store, Host(name=board.replace("jetson-", ""), transport="ssh",
                                                           address="192.0.2.40", board=board))
        jobs.append({"host_id": hosts[board], "model_id": model.id, "delegate": "gpu", "threads": 1,
                     "backend": runtime, "precision": precision,
                     "cell_key": f"{board}|googlenet|{runtime}|{precision}", "timing": {}})
    for job_id, ((board, runtime, precision), ms) in zip(records.add_jobs(store, run_id, jobs), cells, strict=True):
        spec = spec_for(board)
        assert spec is not None
        samples = samples_around(ms)
        clock = spec["max_clock_hz"]
        records.store_result(store, job_id, None, "3.6.9", {
            "schema": 2, "runtime": {"name": runtime, "version": "5.0"},
            "backend": {"runtime": runtime, "version": "5.0", "delegate": "gpu", "device": spec["module"],
                        "precision": precision},
            "gpu": {**spec, "clock_hz": clock, "clock_min_hz": (clock_min_hz or {}).get(board, clock), "samples": 20,
                    "peak_fp32_gflops": peak_gflops(spec["cuda_cores"], clock)},
            "gpu_timing": {"launch": "async" if runtime == "tensorrt" else "sync"},
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 900.0,
                       "first_inference_ms": ms * 2, "warmup_runs": 1}})
    records.finish_run(store, run_id, "finished")
    return run_id
