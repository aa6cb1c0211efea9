"""Run one benchmark job: load, warm up, time ``invoke()`` alone, summarise.

Only ``invoke()`` is inside the timed region: input preparation and output
reads are outside it, as in the seeds' harnesses and TFLite's benchmark_model.
The runtime is a backend (``agent/backends``); this one timing loop times
every backend the same way.
"""

import math
import os
import random
import time

from . import (
    backends,
    conditions,
    contact,
    gpu_conditions,
    hostlock,
    interference,
    model_hash,
    multimodel,
    power,
    validity,
)
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


file_sha256 = model_hash.file_sha256


class _Parts(object):
    """Milliseconds per part of a job's own work (the result's ``agent_work``), each ``mark`` ending one."""

    def __init__(self):
        self.doc = {}
        self._since = time.perf_counter()

    def restart(self):
        self._since = time.perf_counter()

    def mark(self, name):
        now = time.perf_counter()
        self.doc[name] = round((now - self._since) * 1e3, 3)
        self._since = now


def _checked_invoke(invoke, errors):
    try:
        invoke()
    except errors as exc:
        raise JobFailed("benchmark", "invoke failed: {}".format(one_line(exc)))


def time_invokes(invoke, timing, errors=(ValueError, RuntimeError), meter=None):
    """Warm up, then time ``invoke`` (a backend's bare call); returns the timing part of a result.

    ``errors``: what the backend's runtime raises when the model fails (``Backend.invoke_errors``).
    ``meter``: an ``interference.Meter``, read right before and right after the timed loop (not inside it).
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
    enough = False
    if meter is not None:
        meter.start()
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
    if meter is not None:
        meter.stop()
    # Not enough when the loop stopped: max_seconds ended it before min_runs and min_seconds were met.
    return timing_document(samples, summarize(samples), first_inference_ms=first_ns / 1e6, warmup_runs=warmup_runs,
                           warmup_seconds=warmup_ns / 1e9, timed_seconds=timed_seconds, cut_short=not enough)


def run_job(job):
    """Run a (validated) job document and return a result document; never raises.

    Around the timing: the power mode is set, verified and restored
    (``power.applied``), the backend resolves its device (the Edge TPU's
    ``usb:N``) right before the model loads, and the conditions are read
    before, during (power sampler) and after.
    """
    result = ResultBuilder(job.get("job_id", "?") if isinstance(job, dict) else "?", time.time())
    parts = _Parts()
    result.power_restored(contact.take_reports())
    try:
        job = validate_job(job)
        result.set_job_id(job["job_id"])
        path = job["model"]["path"]
        if not os.path.isfile(path):
            raise JobFailed("infrastructure", "model file not found on the device: {}".format(path))
        parts.restart()
        actual, parts.doc["hash_cached"] = model_hash.verified_sha256(path)
        parts.mark("hash_ms")
        if actual != job["model"]["sha256"]:
            raise JobFailed("infrastructure", "model file {} has sha256 {}, expected {}".format(
                path, actual, job["model"]["sha256"]))
        # A multi-model job's and a pipeline's other files: each checked as the first is.
        for part in list(job.get("models") or []) + list(job.get("segments") or []):
            _check_file(part["path"], part["sha256"])
        before = conditions.snapshot()
        result.conditions_before(before)
        parts.mark("conditions_before_ms")
        result.power_requested(job["power"])
        with power.applied(job["power"]) as settings:
            if job["power"]:
                result.power_applied(settings)  # "restore" is filled in when the block exits
            parts.mark("power_apply_ms")
            _measure(job, result, before, parts)
            parts.restart()
        parts.mark("power_restore_ms")
        result.succeeded()
    except JobFailed as exc:
        result.failed(exc.kind, exc.message, exc.status)
    except power.PowerError as exc:
        # Sudo refused, nvpmodel failed, a mode that did not take: the message carries the remedy.
        result.failed("infrastructure", str(exc))
    except ValueError as exc:  # schema errors: the controller sent a bad job
        result.failed("infrastructure", str(exc))
    if result.has_conditions():
        parts.restart()
        result.conditions_after(conditions.snapshot())
        parts.mark("conditions_after_ms")
    if parts.doc:
        result.agent_work(parts.doc)
    if result.doc.get("status") == "succeeded":
        result.validity(validity.check(job["timing"], result.doc))
    return result.finish(time.time())


def _check_file(path, sha256):
    if not os.path.isfile(path):
        raise JobFailed("infrastructure", "model file not found on the device: {}".format(path))
    actual, _ = model_hash.verified_sha256(path)
    if actual != sha256:
        raise JobFailed("infrastructure", "model file {} has sha256 {}, expected {}".format(path, actual, sha256))


def _others(job):
    """The spool keys of the other jobs holding a lock on this host now (whole-host or a device)."""
    own = job["job_id"] + "."
    return {doc.get("key") for doc in hostlock.holders()
            if doc.get("key") and not str(doc.get("key")).startswith(own)}


def _measure(job, result, before, parts):
    """Choose the device(s), load, time with the power sampler running; fills ``result``.

    ``before``: the conditions just read, whose firmware throttling reading is the sampler's first.
    Around the timed part it records which locks the job held and which other jobs held locks on the
    host when its timed window began and ended (``concurrency``): per-accelerator jobs run beside each
    other, and their results say so.
    """
    beside = _others(job)
    # The sampler runs around the timed loop only (each measure enters it): loads are not measured.
    sampler = conditions.PowerSampler(cpu_bound=job["delegate"] == "cpu", first_throttling=before["throttling"])
    if job.get("models"):
        multimodel.measure_models(job, result, sampler, summarize, timing_document)
    elif job.get("segments"):
        multimodel.measure_pipeline(job, result, sampler, summarize, timing_document)
    else:
        _measure_one(job, result, sampler, parts)
    timing = result.doc.get("timing") or {}
    window_end = time.time()
    beside |= _others(job)
    result.conditions_during(sampler.summary(inferences=len(timing.get("samples_ns") or []),
                                             seconds=timing.get("timed_seconds")))
    concurrency = job.get("concurrency") or {}
    result.concurrency({
        "mode": concurrency.get("mode") or "host",
        "locks": hostlock.job_devices(job) or ["host"],
        "window_start": window_end - float(timing.get("timed_seconds") or 0.0),
        "window_end": window_end,
        "beside": len(beside),
        "beside_jobs": sorted(beside),
    })


def _measure_one(job, result, sampler, parts):
    """One model: choose the device, load the model, time it."""
    backend = backends.for_job(job)
    try:
        result.devices(backend.select_device())
        init_ns = backend.load(job["model"]["path"])
        result.backend(backend.describe())
        backend.prepare_inputs(seed=random.Random(job["job_id"]).randint(0, 2 ** 31 - 1))
        meter = interference.Meter(threads=job["threads"], cpu_bound=job["delegate"] == "cpu",
                                   thresholds=job.get("interference"))
        with sampler, gpu_conditions.GpuSampler() as gpu:
            timing = time_invokes(backend.invoker(), job["timing"], backend.invoke_errors, meter=meter)
            parts.restart()
        parts.mark("sampler_stop_ms")
        # One inference after another: the rate is the timed loop's (a host's total adds jobs side by side).
        seconds = timing["timed_seconds"]
        timing["throughput_ips"] = len(timing["samples_ns"]) / seconds if seconds > 0 else None
        during = sampler.summary(inferences=len(timing["samples_ns"]), seconds=timing["timed_seconds"])
        result.gpu(gpu.summary(during))
        result.gpu_timing(backend.gpu_timing(len(timing["samples_ns"])))
        result.timing(timing, init_ns)
        result.interference(meter.document())
    finally:
        backend.close()
