"""SEEDS §2's published figures, stored as results through farm's own store API.

The numbers are the write-up's (Jetson Nano at 10W and 5W, Edge TPU USB Accelerator on a USB3
and a USB2 port, conv-only stacks and the MobileNet/SSD table); only the samples around each
published time are made up, symmetric so that their median is the published value exactly.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select

from agent.bench import summarize
from orchestrator.inventory import Host
from orchestrator.store import records
from orchestrator.store.db import Store
from orchestrator.store.schema import ModelRow

MIB = 1024 * 1024
OPS_PER_CONV_LAYER = 128 * 128 * 7 * 7 * 32 * 32 * 2  # 1,644,167,168
USB = {"USB3": ("2-1", 5000), "USB2": ("1-1.2", 480)}
THREADS = {"10W": 4, "5W": 2}  # 10W: 4 cores at 1.43 GHz; 5W: 2 cores at 0.92 GHz

# (layers, power mode) -> (CPU ms, Edge TPU USB3 ms, Edge TPU USB2 ms)
CONV = {
    (10, "10W"): (1200.5, 7.8, 8.5),
    (300, "10W"): (39274.7, 249.1, 397.0),
    (10, "5W"): (1725.5, 11.8, 12.0),
}
# SEEDS §2 compiler report for the conv stacks: on-chip available 5.01 MiB; used 5.00 MiB from 75 layers on,
# the rest streamed off-chip (11.85 MiB at 300 layers).
CONV_COMPILE = {10: {"on_chip_used_mib": None, "off_chip_used_mib": None}, 300: {"on_chip_used_mib": 5.00,
                                                                                 "off_chip_used_mib": 11.85}}
# name -> (tflite MiB, edgetpu MiB, on-chip available, on-chip used, {power: (CPU, USB3, USB2)})
REAL = {
    "mobilenet_v1_1.0_224": (4.08, 4.32, 7.14, 4.21, {"10W": (107.4, 2.4, 8.5), "5W": (159.4, 3.5, 11.0)}),
    "mobilenet_v2_1.0_224": (3.41, 3.89, 6.91, 3.75, {"10W": (89.7, 2.5, 10.0), "5W": (133.7, 3.5, 14.5)}),
    "coco_ssd_mobilenet_v1": (3.99, 4.45, 7.62, 4.23, {"10W": (149.3, 11.5, 32.8), "5W": (222.4, 16.2, 49.8)}),
}
SSD_OPERATORS = [("CUSTOM", 1, "Operation is working on an unsupported data type"),
                 ("CONCATENATION", 2, "Mapped to Edge TPU"), ("CONV_2D", 34, "Mapped to Edge TPU"),
                 ("DEPTHWISE_CONV_2D", 13, "Mapped to Edge TPU"), ("RESHAPE", 13, "Mapped to Edge TPU"),
                 ("LOGISTIC", 1, "Mapped to Edge TPU")]
COMPILER = "1.0.249710469"


def samples_around(ms: float, n: int = 21, step: float = 0.002) -> list[int]:
    half = n // 2
    return [round(ms * 1e6 * (1 + k * step)) for k in range(-half, half + 1)]


def _model(store: Store, name: str, family: str, size_mib: float, ops: int | None, params: dict[str, Any],
           source: ModelRow | None = None, report: dict[str, Any] | None = None) -> ModelRow:
    with store.session() as session:
        existing = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if existing is not None:  # a second seeded host measures the same models
            return existing
        row = ModelRow(sha256=hashlib.sha256(name.encode()).hexdigest(), name=name, family=family, params=params,
                       source="compiled" if source else "imported", path=f"/seed/{name}.tflite",
                       size_bytes=int(size_mib * MIB), inputs=[], outputs=[], ops_per_inference=ops,
                       needs_edgetpu=source is not None, source_model_id=source.id if source else None,
                       compiler_version=COMPILER if source else None, compile_report=report)
        session.add(row)
        session.commit()
        return row


def _report(available: float, used: float | None, off_chip: float | None,
            operators: list[tuple[str, int, str]] | None = None) -> dict[str, Any]:
    ops = operators or []
    return {"compiler_version": COMPILER, "summary": {
        "on_chip_available_bytes": int(available * MIB), "on_chip_capacity_bytes": int(available * MIB),
        "on_chip_used_bytes": None if used is None else int(used * MIB),
        "off_chip_used_bytes": None if off_chip is None else int(off_chip * MIB),
        "tpu_ops": sum(c for _, c, s in ops if s.startswith("Mapped")) if ops else None,
        "cpu_ops": sum(c for _, c, s in ops if not s.startswith("Mapped")) if ops else None},
        "operators": [{"op": o, "count": c, "status": s} for o, c, s in ops]}


def load_seed(store: Store, host: str = "nano-1") -> int:
    """Store the seed's figures as one run (tagged 'seed'); returns the run id."""
    host_id = records.upsert_host(store, Host(name=host, transport="ssh", address="192.0.2.10", board="jetson-nano"))
    facts_id = records.add_facts(store, host_id, {"board": "NVIDIA Jetson Nano Developer Kit", "cpu_count": 4,
                                                  "kernel": "4.9.140-tegra", "l4t": "32.2.1", "jetpack": "4.2.1",
                                                  "os": "Ubuntu 18.04.2 LTS", "agent_version": "0.1.0",
                                                  "edgetpu": {"library": {"version": "12.1"}}})
    run_id = records.create_run(store, "seed-s2", "seed.yaml", ["seed"])
    cells: list[tuple[ModelRow, str, int, str, str | None, float]] = []
    for layers in sorted({layers for layers, _ in CONV}):
        cpu = _model(store, f"conv_stack-l{layers}", "conv_stack", 0.05 * layers, layers * OPS_PER_CONV_LAYER,
                     {"layers": layers, "size": 128, "kernel": 7, "filters": 32})
        compile_info = CONV_COMPILE[layers]
        tpu = _model(store, f"conv_stack-l{layers}+edgetpu-{COMPILER}", "conv_stack", 0.05 * layers + 0.1,
                     layers * OPS_PER_CONV_LAYER, {"layers": layers, "compiled_from": cpu.sha256}, source=cpu,
                     report=_report(5.01, compile_info["on_chip_used_mib"], compile_info["off_chip_used_mib"]))
        for (lay, power), (cpu_ms, usb3_ms, usb2_ms) in CONV.items():
            if lay == layers:
                cells += [(cpu, "cpu", THREADS[power], power, None, cpu_ms),
                          (tpu, "edgetpu", 1, power, "USB3", usb3_ms), (tpu, "edgetpu", 1, power, "USB2", usb2_ms)]
    for name, (tflite_mib, edgetpu_mib, available, used, times) in REAL.items():
        family = name.rsplit("_1.0", 1)[0] if "1.0" in name else "ssd_mobilenet_v1"
        cpu = _model(store, name, family, tflite_mib, None, {})
        tpu = _model(store, f"{name}+edgetpu-{COMPILER}", family, edgetpu_mib, None, {}, source=cpu,
                     report=_report(available, used, None, SSD_OPERATORS if "ssd" in name else None))
        for power, (cpu_ms, usb3_ms, usb2_ms) in times.items():
            cells += [(cpu, "cpu", THREADS[power], power, None, cpu_ms),
                      (tpu, "edgetpu", 1, power, "USB3", usb3_ms), (tpu, "edgetpu", 1, power, "USB2", usb2_ms)]
    jobs = [{"host_id": host_id, "model_id": model.id, "delegate": delegate, "threads": threads,
             "power_mode": power, "usb_port": USB[usb][0] if usb else None, "usb_speed": USB[usb][1] if usb else None,
             "cell_key": f"{host}|{model.sha256[:16]}|{delegate}|{threads}|{power}|{usb or '-'}", "timing": {}}
            for model, delegate, threads, power, usb, _ in cells]
    job_ids = records.add_jobs(store, run_id, jobs)
    for job_id, (*_, ms) in zip(job_ids, cells, strict=True):
        samples = samples_around(ms)
        port = jobs[job_ids.index(job_id)]["usb_port"]
        records.store_result(store, job_id, facts_id, "3.6.9", {
            "runtime": {"name": "tflite_runtime", "version": "2.1.0"},
            "conditions": {"before": {"max_temperature_c": 41.5}, "after": {"max_temperature_c": 47.0}},
            "edgetpu": {"port": port, "device": "usb:0" if port == "2-1" else "usb:1"} if port else None,
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 50.0,
                       "first_inference_ms": ms * 1.5, "warmup_runs": 1}})
    records.finish_run(store, run_id, "finished")
    return run_id


# SEEDS §1: DeepLabv3 mean ms at 1/2/3/4 threads; the Nano's accelerator on USB3, the Pi 3 B+'s on USB2.
DEEPLAB = {
    ("rpi3b+", "edgetpu", "deeplabv3_mnv2_dm05"): (459, 377, 352, 333),
    ("rpi3b+", "edgetpu", "deeplabv3_mnv2"): (834, 668, 561, 511),
    ("rpi3b+", "cpu", "deeplabv3_mnv2_dm05"): (862, 537, 445, 385),
    ("rpi3b+", "cpu", "deeplabv3_mnv2"): (1873, 1070, 763, 674),
    ("jetson-nano", "edgetpu", "deeplabv3_mnv2_dm05"): (213, 172, 159, 153),
    ("jetson-nano", "edgetpu", "deeplabv3_mnv2"): (363, 262, 224, 209),
    ("jetson-nano", "cpu", "deeplabv3_mnv2_dm05"): (368, 240, 198, 179),
    ("jetson-nano", "cpu", "deeplabv3_mnv2"): (736, 432, 333, 284),
}
DEEPLAB_USB = {"rpi3b+": ("1-1.2", 480), "jetson-nano": ("2-1", 5000)}


def load_seed_threads(store: Store) -> int:
    """SEEDS §1's thread sweep as one run over two hosts; returns the run id."""
    run_id = records.create_run(store, "seed-s1", "seed.yaml", ["seed-s1"])
    jobs, values = [], []
    for board, (port, speed) in DEEPLAB_USB.items():
        host_id = records.upsert_host(store, Host(name=board, transport="ssh", address="192.0.2.20", board=board))
        for (host, delegate, name), times in DEEPLAB.items():
            if host != board:
                continue
            cpu = _model(store, name, "deeplabv3", 2.0, None, {})
            model = cpu if delegate == "cpu" else _model(store, f"{name}+edgetpu-{COMPILER}", "deeplabv3", 2.2, None,
                                                         {}, source=cpu, report=_report(8.0, 2.0, None))
            for threads, ms in enumerate(times, start=1):
                tpu = delegate == "edgetpu"
                jobs.append({"host_id": host_id, "model_id": model.id, "delegate": delegate, "threads": threads,
                             "usb_port": port if tpu else None, "usb_speed": speed if tpu else None, "timing": {},
                             "cell_key": f"{board}|{model.sha256[:16]}|{delegate}|{threads}"})
                values.append(float(ms))
    for job_id, ms in zip(records.add_jobs(store, run_id, jobs), values, strict=True):
        samples = samples_around(ms, n=20)  # SEEDS §1: 20 inferences, mean reported
        records.store_result(store, job_id, None, "3.7.3", {
            "runtime": {"name": "tflite_runtime", "version": "1.14.0"},
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 80.0,
                       "first_inference_ms": ms * 2, "warmup_runs": 1}})
    records.finish_run(store, run_id, "finished")
    return run_id
