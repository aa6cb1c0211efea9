"""TFLite and ONNX Runtime side by side on the simulated lab, over real SSH: the Jetson Nano's Python 3.7 with
onnxruntime 1.14.1, a Raspberry Pi 4's Python 3.11 with onnxruntime 1.20.1, and stock JetPack 4's Python 3.6
with neither runtime, whose cells are skipped naming what the host would need."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.models import googlenet, onnx_families, registry
from orchestrator.store import open_store
from tests.test_farm_over_ssh import farm, write_inventory

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

MATRIX = """
matrices:
  xrt:
    models: [conv_stack-l1, conv_stack-l1-onnx, googlenet-s224, googlenet-s224-onnx]
    backends: [tflite, onnxruntime]
    threads: [2]
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 1, min_seconds: 0, max_seconds: 60}
"""
BOARDS = {"jetson-nano": ("3.7", "1.14.1"), "rpi4": ("3.11", "1.20.1"), "jetson-nano-jp4": ("3.6", None)}


def test_lab_hosts_run_both_backends_and_a_host_without_them_says_why(running_lab: RunningLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(db)
    try:
        registry.build(store, "conv_stack", [1], ("tflite", "onnx"))
        for name, data in (("googlenet-s224-onnx.onnx", onnx_families.build_googlenet_onnx()),
                           ("googlenet-s224.tflite", googlenet.build_googlenet_tflite())):
            (tmp_path / name).write_bytes(data)
            registry.add_file(store, tmp_path / name, name=name.rsplit(".", 1)[0])
    finally:
        store.close()
    names = {running_lab.host(board).name: board for board in BOARDS}
    inventory = write_inventory(tmp_path / "lab.yaml", running_lab, keep=set(names))
    (tmp_path / "m.yaml").write_text(MATRIX)
    farm("run", "--matrix", "xrt", "--matrix-file", str(tmp_path / "m.yaml"), "--inventory", str(inventory),
         "--db", db, "--known-hosts", str(running_lab.known_hosts))
    rows = json.loads(farm("results", "--db", db, "--status", "all", "--format", "json").stdout)
    assert len(rows) == len(BOARDS) * 4
    for host, board in names.items():
        python, ort_version = BOARDS[board]
        mine = {r["model"]: r for r in rows if r["host"] == host}
        for model in ("conv_stack-l1", "googlenet-s224"):
            tflite, ort = mine[model], mine[model + "-onnx"]
            if ort_version is None:
                assert {tflite["status"], ort["status"]} == {"skipped"}
                assert "onnxruntime is not importable" in ort["reason"] and "Python 3.6" in ort["reason"]
                continue
            assert tflite["status"] == ort["status"] == "succeeded", (tflite, ort)
            assert (ort["python"][:len(python)], ort["runtime"], ort["runtime_version"]) == \
                (python, "onnxruntime", ort_version)
            assert tflite["runtime"] == "tflite_runtime"
    report = farm("report", "--db", db).stdout
    section = report[report.index("Across runtimes"):]
    assert "ONNX Runtime CPU" in section and "TFLite CPU" in section
