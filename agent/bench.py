"""Run one benchmark job: load, warm up, time ``invoke()`` alone, summarise.

Only ``invoke()`` is inside the timed region: input preparation and output
reads are outside it, as in the seeds' harnesses and TFLite's benchmark_model.
"""

import hashlib
import math
import os
import random
import time

from . import conditions, contact, edgetpu, power
from .runtime import RuntimeMissing, load_delegate, load_runtime
from .schema import SCHEMA_VERSION, validate_job

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)

EDGETPU_LIBRARY = "libedgetpu.so.1"


class JobFailed(Exception):
    """The job cannot produce a measurement; ``kind`` says whose fault it is.

    ``status`` is "failed", or "skipped" when this host cannot run the cell at all.
    """

    def __init__(self, kind, message, status="failed"):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.status = status


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


def _make_interpreter(job, tpu=None):
    try:
        name, version, module = load_runtime()
    except RuntimeMissing as exc:
        raise JobFailed("infrastructure", str(exc))
    delegates = []
    if job["delegate"] == "edgetpu":
        options = {}
        device = (tpu or {}).get("device") or job["options"].get("edgetpu_device")
        if device:
            options["device"] = str(device)
        try:
            delegates.append(load_delegate(module, EDGETPU_LIBRARY, options))
        except (ValueError, OSError, RuntimeMissing) as exc:
            library = (tpu or {}).get("library") or {}
            if tpu is not None and not library.get("path"):
                # The runtime tried and the library is not there: this host cannot run the cell.
                raise JobFailed("unsupported", "{}; the job would have used {} ({})".format(
                    library.get("error") or "{} is not installed".format(EDGETPU_LIBRARY), device,
                    _tpu_text(tpu)), status="skipped")
            raise JobFailed("infrastructure", "cannot load the Edge TPU delegate {} for {}: {}".format(
                EDGETPU_LIBRARY, device or "the first Edge TPU", exc))
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


def _tpu_text(tpu):
    if tpu.get("type") == "pci":
        return "PCIe {}".format(tpu.get("path"))
    return "port {} at {} Mb/s".format(tpu.get("port"), tpu.get("speed"))


def select_tpu(request):
    """The Edge TPU a job asks for, resolved to usb:N now, right before the delegate loads.

    Indexes shift when a TPU loads its firmware and re-enumerates, so the port
    (a sysfs path or an inventory name) is resolved at the last moment. A
    missing library does not stop the resolution: the result still says which
    TPU, port and speed the job would have used.
    """
    request = dict(request or {})
    ports = request.pop("ports", None) or {}
    found = edgetpu.discover()
    try:
        tpu = edgetpu.resolve(request, ports=ports, found=found, need_library=False)
    except edgetpu.EdgeTpuError as exc:
        # A missing or wrong TPU fails the job: the matrix already skips cells the facts rule out,
        # so reaching here means the hardware changed since the facts were read.
        missing = found["library"].get("error")
        raise JobFailed("infrastructure", "{} ({}){}".format(
            exc.message, exc.reason, "; and " + missing if missing else ""))
    tpu["library"] = found["library"]
    tpu["pycoral"] = found["pycoral"]
    tpu["order"] = found["order"]
    return tpu


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
    """Run a (validated) job document and return a result document; never raises.

    Around the timing: the power mode is set, verified and restored
    (``power.applied``), the Edge TPU is resolved to its ``usb:N`` right
    before the delegate loads, and the conditions are read before, during
    (power sampler) and after.
    """
    started_at = time.time()
    result = {
        "schema": SCHEMA_VERSION,
        "job_id": job.get("job_id", "?") if isinstance(job, dict) else "?",
        "started_at": started_at,
    }
    restored = contact.take_reports()
    if restored:
        result["power_restored"] = restored
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
        result["conditions"] = {"before": conditions.snapshot()}
        if job["power"]:
            result["power"] = {"requested": job["power"]}
        with power.applied(job["power"]) as settings:
            if job["power"]:
                result["power"] = settings  # "restore" is filled in when the block exits
            _measure(job, result)
        result["status"] = "succeeded"
    except JobFailed as exc:
        result["status"] = exc.status
        result["error"] = {"kind": exc.kind, "message": exc.message}
    except power.PowerError as exc:
        # Sudo refused, nvpmodel failed, a mode that did not take: the message carries the remedy.
        result["status"] = "failed"
        result["error"] = {"kind": "infrastructure", "message": str(exc)}
    except ValueError as exc:  # schema errors: the controller sent a bad job
        result["status"] = "failed"
        result["error"] = {"kind": "infrastructure", "message": str(exc)}
    if "conditions" in result:
        result["conditions"]["after"] = conditions.snapshot()
        during = result["conditions"].get("during") or {}
        result["throttled"] = bool(during.get("throttled") or result["conditions"]["before"]["throttled"]
                                   or result["conditions"]["after"]["throttled"])
    result["finished_at"] = time.time()
    return result


def _measure(job, result):
    """Select the TPU, load the model, time it with the power sampler running; fills ``result``."""
    tpu = None
    if job["delegate"] == "edgetpu":
        tpu = select_tpu(job["edgetpu"])
        result["edgetpu"] = tpu
    interpreter, init_ns, runtime = _make_interpreter(job, tpu)
    result["runtime"] = runtime
    _fill_inputs(interpreter, seed=random.Random(job["job_id"]).randint(0, 2 ** 31 - 1))
    with conditions.PowerSampler(cpu_bound=job["delegate"] == "cpu") as sampler:
        timing = time_invokes(interpreter, job["timing"])
    result["conditions"]["during"] = sampler.summary(inferences=len(timing["samples_ns"]),
                                                     seconds=timing["timed_seconds"])
    timing["init_ms"] = init_ns / 1e6
    result["timing"] = timing
