"""Run one benchmark job: load, warm up, time ``invoke()`` alone, summarise.

Only ``invoke()`` is inside the timed region: input preparation and output
reads are outside it, as in the seeds' harnesses and TFLite's benchmark_model.
"""

import hashlib
import math
import os
import random
import time

from .runtime import RuntimeMissing, load_delegate, load_runtime
from .schema import SCHEMA_VERSION, validate_job

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)

EDGETPU_LIBRARY = "libedgetpu.so.1"


class JobFailed(Exception):
    """The job cannot produce a measurement; ``kind`` says whose fault it is."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


def summarize(samples_ns):
    """Summary statistics in milliseconds over the timed samples."""
    values = sorted(s / 1e6 for s in samples_ns)
    count = len(values)
    mean = sum(values) / count
    variance = sum((v - mean) ** 2 for v in values) / count
    return {
        "count": count,
        "mean_ms": mean,
        "median_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "min_ms": values[0],
        "max_ms": values[-1],
        "std_ms": math.sqrt(variance),
    }


def percentile(sorted_values, pct):
    """Linear interpolation between closest ranks (numpy's default method)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = (len(sorted_values) - 1) * pct / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _make_interpreter(job):
    try:
        name, version, module = load_runtime()
    except RuntimeMissing as exc:
        raise JobFailed("infrastructure", str(exc))
    delegates = []
    if job["delegate"] == "edgetpu":
        options = {}
        device = job["options"].get("edgetpu_device")
        if device:
            options["device"] = str(device)
        try:
            delegates.append(load_delegate(module, EDGETPU_LIBRARY, options))
        except (ValueError, OSError, RuntimeMissing) as exc:
            raise JobFailed("infrastructure", "cannot load the Edge TPU delegate {}: {}".format(
                EDGETPU_LIBRARY, exc))
    started = clock_ns()
    try:
        interpreter = module.Interpreter(
            model_path=job["model"]["path"],
            num_threads=job["threads"],
            experimental_delegates=delegates or None,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise JobFailed("benchmark", "model failed to load: {}".format(_one_line(exc)))
    init_ns = clock_ns() - started
    return interpreter, init_ns, {"name": name, "version": version}


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _fill_inputs(interpreter, seed):
    """Random inputs, as benchmark_model uses, set once before timing."""
    import numpy  # the runtime depends on numpy, so it is present wherever it is

    rng = numpy.random.RandomState(seed)
    for detail in interpreter.get_input_details():
        dtype = numpy.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        if dtype.kind in "iu":
            info = numpy.iinfo(dtype)
            data = rng.randint(info.min, int(info.max) + 1, size=shape).astype(dtype)
        elif dtype.kind == "b":
            data = rng.randint(0, 2, size=shape).astype(dtype)
        else:
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        interpreter.set_tensor(detail["index"], data)


def _invoke(interpreter):
    try:
        interpreter.invoke()
    except (ValueError, RuntimeError) as exc:
        raise JobFailed("benchmark", "invoke failed: {}".format(_one_line(exc)))


def time_invokes(interpreter, timing):
    """Warm up, then time invokes; returns the timing part of a result."""
    first_started = clock_ns()
    _invoke(interpreter)
    first_ns = clock_ns() - first_started
    warmup_runs = 1
    warmup_started = first_started
    while (warmup_runs < timing["warmup_min_runs"]
           or clock_ns() - warmup_started < timing["warmup_min_seconds"] * 1e9):
        if clock_ns() - warmup_started > timing["max_seconds"] * 1e9:
            break
        _invoke(interpreter)
        warmup_runs += 1
    warmup_ns = clock_ns() - warmup_started

    samples = []
    timed_started = clock_ns()
    try:
        while True:
            elapsed = clock_ns() - timed_started
            enough = len(samples) >= timing["min_runs"] and elapsed >= timing["min_seconds"] * 1e9
            if samples and (enough or elapsed >= timing["max_seconds"] * 1e9):
                break
            # The bare call, not _invoke(): nothing but invoke() between the clocks.
            before = clock_ns()
            interpreter.invoke()
            samples.append(clock_ns() - before)
    except (ValueError, RuntimeError) as exc:
        raise JobFailed("benchmark", "invoke failed: {}".format(_one_line(exc)))
    return {
        "first_inference_ms": first_ns / 1e6,
        "warmup_runs": warmup_runs,
        "warmup_seconds": warmup_ns / 1e9,
        "timed_seconds": (clock_ns() - timed_started) / 1e9,
        "samples_ns": samples,
        "summary": summarize(samples),
    }


def run_job(job):
    """Run a (validated) job document and return a result document; never raises."""
    started_at = time.time()
    result = {
        "schema": SCHEMA_VERSION,
        "job_id": job.get("job_id", "?") if isinstance(job, dict) else "?",
        "started_at": started_at,
    }
    try:
        job = validate_job(job)
        result["job_id"] = job["job_id"]
        path = job["model"]["path"]
        if not os.path.isfile(path):
            raise JobFailed("infrastructure", "model file not found on the device: {}".format(path))
        actual = file_sha256(path)
        if actual != job["model"]["sha256"]:
            raise JobFailed("infrastructure", "model file {} has sha256 {}, expected {}".format(
                path, actual, job["model"]["sha256"]))
        interpreter, init_ns, runtime = _make_interpreter(job)
        result["runtime"] = runtime
        _fill_inputs(interpreter, seed=random.Random(job["job_id"]).randint(0, 2 ** 31 - 1))
        timing = time_invokes(interpreter, job["timing"])
        timing["init_ms"] = init_ns / 1e6
        result["timing"] = timing
        result["status"] = "succeeded"
    except JobFailed as exc:
        result["status"] = "failed"
        result["error"] = {"kind": exc.kind, "message": exc.message}
    except ValueError as exc:  # schema errors: the controller sent a bad job
        result["status"] = "failed"
        result["error"] = {"kind": "infrastructure", "message": str(exc)}
    result["finished_at"] = time.time()
    return result
