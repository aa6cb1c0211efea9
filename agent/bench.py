"""Run one benchmark job: load, warm up, time ``invoke()`` alone, summarise.

Only ``invoke()`` is inside the timed region: input preparation and output
reads are outside it, as in the seeds' harnesses and TFLite's benchmark_model.
The runtime is a backend (``agent/backends``); this one timing loop times
every backend the same way.
"""

import hashlib
import math
import os
import random
import time

from . import backends, conditions, contact, gpu_conditions, power
from .backends.base import JobFailed, one_line
from .result_builder import ResultBuilder, timing_document
from .schema import validate_job

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)

__all__ = ["JobFailed", "file_sha256", "percentile", "run_job", "summarize", "time_invokes"]


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


def _checked_invoke(invoke, errors):
    try:
        invoke()
    except errors as exc:
        raise JobFailed("benchmark", "invoke failed: {}".format(one_line(exc)))


def time_invokes(invoke, timing, errors=(ValueError, RuntimeError)):
    """Warm up, then time ``invoke`` (a backend's bare call); returns the timing part of a result.

    ``errors``: what the backend's runtime raises when the model fails (``Backend.invoke_errors``).
    """
    first_started = clock_ns()
    _checked_invoke(invoke, errors)
    first_ns = clock_ns() - first_started
    warmup_runs = 1
    warmup_started = first_started
    while (warmup_runs < timing["warmup_min_runs"]
           or clock_ns() - warmup_started < timing["warmup_min_seconds"] * 1e9):
        if clock_ns() - warmup_started > timing["max_seconds"] * 1e9:
            break
        _checked_invoke(invoke, errors)
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
            # The bare call, not _checked_invoke(): nothing but invoke() between the clocks.
            before = clock_ns()
            invoke()
            samples.append(clock_ns() - before)
    except errors as exc:
        raise JobFailed("benchmark", "invoke failed: {}".format(one_line(exc)))
    timed_seconds = (clock_ns() - timed_started) / 1e9
    return timing_document(samples, summarize(samples), first_inference_ms=first_ns / 1e6, warmup_runs=warmup_runs,
                           warmup_seconds=warmup_ns / 1e9, timed_seconds=timed_seconds)


def run_job(job):
    """Run a (validated) job document and return a result document; never raises.

    Around the timing: the power mode is set, verified and restored
    (``power.applied``), the backend resolves its device (the Edge TPU's
    ``usb:N``) right before the model loads, and the conditions are read
    before, during (power sampler) and after.
    """
    result = ResultBuilder(job.get("job_id", "?") if isinstance(job, dict) else "?", time.time())
    result.power_restored(contact.take_reports())
    try:
        job = validate_job(job)
        result.set_job_id(job["job_id"])
        path = job["model"]["path"]
        if not os.path.isfile(path):
            raise JobFailed("infrastructure", "model file not found on the device: {}".format(path))
        actual = file_sha256(path)
        if actual != job["model"]["sha256"]:
            raise JobFailed("infrastructure", "model file {} has sha256 {}, expected {}".format(
                path, actual, job["model"]["sha256"]))
        result.conditions_before(conditions.snapshot())
        result.power_requested(job["power"])
        with power.applied(job["power"]) as settings:
            if job["power"]:
                result.power_applied(settings)  # "restore" is filled in when the block exits
            _measure(job, result)
        result.succeeded()
    except JobFailed as exc:
        result.failed(exc.kind, exc.message, exc.status)
    except power.PowerError as exc:
        # Sudo refused, nvpmodel failed, a mode that did not take: the message carries the remedy.
        result.failed("infrastructure", str(exc))
    except ValueError as exc:  # schema errors: the controller sent a bad job
        result.failed("infrastructure", str(exc))
    if result.has_conditions():
        result.conditions_after(conditions.snapshot())
    return result.finish(time.time())


def _measure(job, result):
    """Choose the device, load the model, time it with the power sampler running; fills ``result``."""
    backend = backends.for_job(job)
    try:
        result.devices(backend.select_device())
        init_ns = backend.load(job["model"]["path"])
        result.backend(backend.describe())
        backend.prepare_inputs(seed=random.Random(job["job_id"]).randint(0, 2 ** 31 - 1))
        with conditions.PowerSampler(cpu_bound=job["delegate"] == "cpu") as sampler, \
                gpu_conditions.GpuSampler() as gpu:
            timing = time_invokes(backend.invoker(), job["timing"], backend.invoke_errors)
        during = sampler.summary(inferences=len(timing["samples_ns"]), seconds=timing["timed_seconds"])
        result.conditions_during(during)
        result.gpu(gpu.summary(during))
        result.gpu_timing(backend.gpu_timing(len(timing["samples_ns"])))
        result.timing(timing, init_ns)
    finally:
        backend.close()
