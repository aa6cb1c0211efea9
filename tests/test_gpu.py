"""The GPU on simulated Jetsons (devfreq clock, load, GPU rail), GPU timing, the TensorRT engine cache, and the GPU
backends up to their import: what runs here without an NVIDIA GPU."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy
import pytest

from agent import backends, boards, conditions, facts, gpu_conditions
from agent.backends import LoadOptions
from agent.backends.gpu_timing import PhaseTimer, launch_mode, phase_summary
from agent.backends.tensorrt import TensorrtBackend
from agent.backends.tensorrt_engine import cache_key, calibration_batches, engine_path, load_or_build, precision_of
from agent.bench import run_job
from agent.boards import jetson_gpu
from agent.schema import SchemaError, make_job, validate_result
from farm_lab import board_hardware, hardware
from farm_lab.boards import BOARDS, write_device_root
from orchestrator.facts_check import gpu_text
from tests.conftest import SHARED_MODELS
from tests.test_agent import QUICK, sha

NANO_MAX_HZ = 921600000


@pytest.fixture
def nano(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's jetson-nano device root, as `farm lab up` builds it, seen as this device."""
    root = tmp_path / "nano"
    write_device_root(BOARDS["jetson-nano"], root)
    board_hardware.install(BOARDS["jetson-nano"], root)
    interpreter = tmp_path / "python3-first"  # the stand-ins' shebang finds this Python first
    interpreter.mkdir()
    (interpreter / "python3").symlink_to(sys.executable)
    for name, value in hardware.standin_env(root, {"PATH": f"{interpreter}{os.pathsep}{os.environ['PATH']}"}).items():
        monkeypatch.setenv(name, value)
    return root


def test_a_lab_nano_reports_its_gpu_in_facts_and_conditions(nano: Path) -> None:
    gpu = facts.gather()["gpu"]
    assert (gpu["module"], gpu["cuda_cores"], gpu["max_clock_hz"]) == ("jetson-nano", 128, NANO_MAX_HZ)
    # A loaded lab board runs at its cap, which in MAXN (nvpmodel 0) is the hardware's top step.
    assert gpu["clock_hz"] == gpu["cap_hz"] == NANO_MAX_HZ and gpu["load_pct"] == 0.0
    assert gpu["devfreq"] == "57000000.gpu" and gpu["peak_fp32_gflops"] == pytest.approx(235.9296)
    assert gpu["rail"] == "POM_5V_GPU" and isinstance(gpu["rail_mw"], int) and gpu["rail_mw"] > 0
    (nano / "sys/devices/57000000.gpu/load").write_text("873\n")  # nvgpu's load is in tenths of a percent
    assert conditions.snapshot()["gpu"] == {"clock_hz": NANO_MAX_HZ, "cap_hz": NANO_MAX_HZ,
                                            "max_clock_hz": NANO_MAX_HZ, "load_pct": 87.3}
    text = gpu_text(facts.gather())
    assert text.startswith("128 cores, 921.6/921.6 MHz, POM_5V_GPU ") and text.endswith(" mW")


def test_5w_caps_the_gpu_and_a_result_taken_there_is_flagged_below_max(nano: Path) -> None:
    hardware.run_standin(nano, "nvpmodel", "-m", "1")  # 5W: GPU MAX_FREQ 640000000 in nvpmodel.conf
    now = boards.gpu()
    assert now is not None and now["cap_hz"] == now["clock_hz"] == 640000000 and now["max_clock_hz"] == NANO_MAX_HZ
    with conditions.PowerSampler(interval=0.01) as power, gpu_conditions.GpuSampler(interval=0.01) as sampler:
        time.sleep(0.1)
    summary = sampler.summary(power.summary())
    assert summary["below_max"] is True and summary["clock_hz"] == 640000000 and summary["samples"] >= 2
    assert summary["below_max_reason"] == ("GPU clock went down to 640.0 MHz, below its maximum 921.6 MHz "
                                           "(capped at 640.0 MHz)")
    assert summary["peak_fp32_gflops"] == pytest.approx(128 * 0.64 * 2)
    assert summary["rail"] == "POM_5V_GPU" and summary["rail_w"] > 0
    hardware.run_standin(nano, "nvpmodel", "-m", "0")  # back to MAXN: the clock rises to the top again
    assert boards.gpu()["clock_hz"] == NANO_MAX_HZ  # type: ignore[index]
    assert gpu_conditions.summarize(boards.gpu() or {}, [(NANO_MAX_HZ, 50.0)] * 3)["below_max"] is False


def test_a_jetpack5_orin_reads_its_gpu_through_the_hwmon_rails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "orin"
    node = root / "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"
    node.mkdir(parents=True)
    # A JetPack 5 AGX Orin 32 GB: its devfreq table tops out at 930.75 MHz, below the 64 GB module's 1.3 GHz.
    for name, value in (("available_frequencies", "306000000 624750000 930750000"), ("cur_freq", "624750000"),
                        ("max_freq", "930750000"), ("min_freq", "306000000")):
        (node / name).write_text(value + "\n")
    (root / "sys/devices/17000000.ga10b/load").write_text("250\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("NVIDIA Jetson AGX Orin Developer Kit\0")
    (root / "proc/device-tree/compatible").write_text("nvidia,p3737-0000+p3701-0004\0nvidia,tegra234\0")
    (root / "etc").mkdir()
    (root / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178\n")
    hardware.install_ina3221(root, layout="hwmon")
    monkeypatch.setenv("FARM_DEVICE_ROOT", str(root))
    gpu = boards.gpu()
    assert gpu is not None and gpu["module"] == "jetson-agx-orin" and gpu["cuda_cores"] == 2048
    assert gpu["max_clock_hz"] == 930750000, "the hardware's top step wins over the 64 GB module's figure"
    assert (gpu["clock_hz"], gpu["load_pct"], gpu["rail"]) == (624750000, 25.0, "VDD_CPU_GPU_CV")
    assert gpu["rail_mw"] == 500  # mV x mA from the hwmon files: ORIN_RAILS' VDD_CPU_GPU_CV at rest in mode 0


def test_module_figures_and_which_name_picks_which_gpu() -> None:
    assert jetson_gpu.spec_for("jetson-agx-orin")["cuda_cores"] == 2048  # type: ignore[index]
    assert jetson_gpu.spec_for("jetson-agx-xavier")["max_clock_hz"] == 1377000000  # type: ignore[index]
    assert jetson_gpu.spec_for("NVIDIA Jetson Xavier NX Developer Kit")["cuda_cores"] == 384  # type: ignore[index]
    assert jetson_gpu.spec_for("nvidia,p3767-0005")["module"] == "jetson-orin-nano"  # type: ignore[index]
    assert jetson_gpu.spec_for("nvidia,p3767-0000")["module"] == "jetson-orin-nx"  # type: ignore[index]
    assert jetson_gpu.spec_for("quill")["module"] == "jetson-tx2"  # type: ignore[index]
    assert jetson_gpu.spec_for("rpi4", "Raspberry Pi 4 Model B Rev 1.4") is None
    assert jetson_gpu.peak_gflops(None, 1e9) is None


def test_boards_without_a_gpu_report_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "rpi"
    write_device_root(BOARDS["rpi4"], root)
    board_hardware.install(BOARDS["rpi4"], root)
    monkeypatch.setenv("FARM_DEVICE_ROOT", str(root))
    found = facts.gather()
    assert found["gpu"] is None and conditions.snapshot()["gpu"] is None and gpu_text(found) == ""
    # The matrix plans a tensorrt cell from the backend the facts describe, which says what the host needs.
    assert "tensorrt is not importable" in found["backends"]["tensorrt"]["error"]


def test_phase_timer_waits_for_each_phase_and_keeps_the_timed_inferences() -> None:
    big = numpy.ones((512, 512), dtype=numpy.float32)
    device, out = numpy.empty_like(big), numpy.empty(16, dtype=numpy.float32)
    waits: list[str] = []

    def compute() -> None:  # real work, far more than either copy
        for _ in range(4):
            numpy.dot(device, device)

    timer = PhaseTimer(lambda: numpy.copyto(device, big), compute, lambda: numpy.copyto(out, device[0, :16]),
                       lambda: waits.append("sync"), "async")
    for _ in range(7):
        timer.invoke()
    assert waits == ["sync"] * 21, "every phase ends with a synchronisation"
    doc = timer.document(count=5, engine={"cached": True, "build_ms": None})
    assert doc["launch"] == "async" and doc["engine"]["cached"] is True
    assert doc["h2d"]["count"] == doc["compute"]["count"] == doc["d2h"]["count"] == 5
    assert doc["compute"]["median_ms"] > doc["d2h"]["median_ms"], doc
    assert phase_summary([1_000_000, 3_000_000]) == {"count": 2, "mean_ms": 2.0, "median_ms": 2.0, "min_ms": 1.0,
                                                     "max_ms": 3.0}
    assert launch_mode({}) == "async" and launch_mode({"gpu_launch": "graph"}) == "graph"
    with pytest.raises(ValueError, match="sync, async, graph"):
        launch_mode({"gpu_launch": "eager"})


def test_engine_cache_key_calibration_data_and_build_once(tmp_path: Path) -> None:
    base = ("a" * 64, "fp16", "8.2.1", "jetson-nano")
    key = cache_key(*base)
    assert key == cache_key(*base) and len(key) == 64
    for index, other in enumerate(("b" * 64, "int8", "8.5.2", "jetson-tx2")):  # each part changes the engine
        changed = list(base)
        changed[index] = other
        assert cache_key(*changed) != key
    path = engine_path(*base, folder=str(tmp_path))
    assert Path(path).name.startswith("aaaaaaaaaaaa-fp16-trt8.2.1-jetson-nano-") and path.endswith(".engine")
    assert precision_of(None) == "fp32"
    with pytest.raises(ValueError, match="fp32, fp16, int8"):
        precision_of("int4")

    inputs = [("data", (1, 3, 224, 224), "float32"), ("ids", (1, 8), "int8")]
    first, again = calibration_batches(inputs, seed=3), calibration_batches(inputs, seed=3)
    assert len(first) == 8 and all(numpy.array_equal(a["data"], b["data"]) for a, b in zip(first, again, strict=True))
    assert not numpy.array_equal(first[0]["data"], first[1]["data"]), "each batch is new data"
    assert first[0]["data"].shape == (1, 3, 224, 224) and first[0]["data"].dtype == numpy.float32
    assert -1.0 <= first[0]["data"].min() < -0.9 and 0.9 < first[0]["data"].max() < 1.0
    assert first[0]["ids"].dtype == numpy.int8 and first[0]["ids"].min() >= -128

    builds: list[int] = []

    def build() -> tuple[bytes, float]:
        builds.append(1)
        return b"serialized engine", 1234.5

    data, built = load_or_build(path, build)
    cached, reused = load_or_build(path, build)
    assert data == cached == b"serialized engine" and builds == [1]
    assert (built["cached"], built["build_ms"]) == (False, 1234.5) and (reused["cached"], reused["build_ms"]) == (True,
                                                                                                                 None)


def _job(path: Path, **kwargs: object) -> dict:
    return make_job("gpu-job", str(path), sha(path), timing=QUICK, **kwargs)  # type: ignore[arg-type]


def test_tensorrt_is_exercised_up_to_its_import_and_skipped_with_what_the_host_needs(tmp_path: Path) -> None:
    model = tmp_path / "googlenet.onnx"
    model.write_bytes(b"\x08\x07stand-in bytes: the backend stops at the import, before parsing")
    for precision in ("fp32", "fp16", "int8"):
        result = validate_result(run_job({**_job(model, backend="tensorrt", delegate="gpu"), "precision": precision}))
        assert result["status"] == "skipped" and result["error"]["kind"] == "unsupported"
        assert "tensorrt is not importable on this host" in result["error"]["message"]
        assert "python3-libnvinfer" in result["error"]["message"] and "cuda-python or pycuda" in result["error"]["message"]
    refused = run_job({**_job(model, backend="tensorrt", delegate="gpu"), "precision": "int4"})
    assert refused["status"] == "failed" and "'precision' must be one of fp32, fp16, int8" in refused["error"]["message"]
    eager = run_job(_job(model, backend="tensorrt", delegate="gpu", options={"gpu_launch": "eager"}))
    assert eager["status"] == "skipped" and "gpu_launch" in eager["error"]["message"]
    tflite = run_job(_job(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite", backend="tensorrt", delegate="gpu"))
    assert tflite["status"] == "skipped" and "is a TFLite flatbuffer" in tflite["error"]["message"]
    available = TensorrtBackend.available()
    assert available["name"] is None and "tensorrt is not importable" in available["error"]
    assert backends.available()["tensorrt"] == available
    assert TensorrtBackend(LoadOptions("gpu", 1)).describe()["precision"] is None


def test_the_tflite_gpu_delegate_is_skipped_where_the_device_has_none() -> None:
    result = validate_result(run_job(_job(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite", delegate="gpu")))
    assert result["status"] == "skipped" and result["error"]["kind"] == "unsupported"
    assert "libtensorflowlite_gpu_delegate.so cannot be loaded on this host" in result["error"]["message"]


def test_a_cpu_result_on_a_lab_nano_carries_the_gpu_it_did_not_use(nano: Path) -> None:
    result = validate_result(run_job(_job(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite")))
    assert result["status"] == "succeeded", result.get("error")
    assert result["gpu"]["module"] == "jetson-nano" and result["gpu"]["below_max"] is False
    assert result["conditions"]["before"]["gpu"]["clock_hz"] == NANO_MAX_HZ
    assert "gpu_timing" not in result, "the TFLite CPU backend has no GPU timings"
    with pytest.raises(SchemaError, match="result.gpu: field 'below_max'"):
        validate_result({**result, "gpu": {**result["gpu"], "below_max": "no"}})
    with pytest.raises(SchemaError, match="result.gpu_timing.h2d: field 'median_ms'"):
        validate_result({**result, "gpu_timing": {"launch": "graph", "h2d": {"median_ms": "fast"}}})


RUN_JOBS = """
import json, sys
from agent.bench import run_job
import tensorrt
from cuda import cudart
results = [run_job(job) for job in json.loads(sys.stdin.read())]
print(json.dumps({"results": results, "builds": tensorrt.builds, "calls": sorted(set(cudart.calls))}))
"""


def test_the_tensorrt_path_end_to_end_on_the_stand_in_runtime(nano: Path, tmp_path: Path) -> None:
    """The backend's own code path (build, cache, calibrate, copy, launch, synchronise) against stand-ins for
    TensorRT and cuda-python that keep their API (farm_lab/gpu_standins), on the lab Nano's device root."""
    import json
    import subprocess

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(model))
    jobs = [{**_job(model, backend="tensorrt", delegate="gpu", options=options), "precision": precision}
            for precision, options in (("fp32", {}), ("fp32", {}), ("fp16", {"gpu_launch": "graph"}),
                                       ("int8", {"gpu_launch": "sync"}))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(hardware.__file__).parent / "gpu_standins"),
                                                        str(Path(__file__).resolve().parents[1])]),
           "FARM_ENGINE_CACHE": str(tmp_path / "engines")}
    done = subprocess.run([sys.executable, "-c", RUN_JOBS], input=json.dumps(jobs), capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    first, cached, half, int8 = (validate_result(r) for r in out["results"])
    for result in (first, cached, half, int8):
        assert result["status"] == "succeeded", result.get("error")
        assert result["backend"]["runtime"] == "tensorrt" and result["backend"]["device"] == "jetson-nano"
        timing = result["gpu_timing"]
        assert timing["h2d"]["count"] == timing["compute"]["count"] == len(result["timing"]["samples_ns"])
        # The whole inference the loop timed holds its three synchronised phases.
        assert result["timing"]["summary"]["median_ms"] >= timing["compute"]["median_ms"]
    assert first["gpu_timing"]["engine"]["cached"] is False and first["gpu_timing"]["engine"]["build_ms"] > 0
    assert cached["gpu_timing"]["engine"]["cached"] is True and cached["gpu_timing"]["engine"]["build_ms"] is None
    assert (first["gpu_timing"]["launch"], half["gpu_timing"]["launch"], int8["gpu_timing"]["launch"]) == \
        ("async", "graph", "sync")
    assert [p for p, _ in out["builds"]] == ["fp32", "fp16", "int8"], "one build per precision, the rest cached"
    assert out["builds"][-1] == ["int8", 8], "INT8 calibrated on the eight generated batches"
    assert {"cudaGraphLaunch", "cudaStreamBeginCapture", "cudaMemcpyAsync"} <= set(out["calls"])
    assert half["backend"]["precision"] == "fp16" and half["gpu"]["module"] == "jetson-nano"
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 3
