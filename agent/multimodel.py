"""Jobs of several model files: multi-model placements and pipelined segments.

A job with ``models`` (SEEDS §3) loads each model into its own interpreter, each on the device the
controller chose for it (``placement``: ``same-tpu`` puts every model on one TPU, so each invoke swaps
the other's parameters out; ``separate-tpus`` gives each its own; ``cocompiled`` puts a co-compiled
group on one TPU, sharing the cache), and invokes them in turn: one round is one inference of each.
It records each model's latency and the cell's throughput (inferences of all models per second).

A job with ``segments`` runs them as a pipeline (``agent/pipeline.py``): one interpreter per segment,
each on its own TPU or on the CPU, and records steady-state throughput and per-inference latency.

Both use the TFLite backend per file, so device selection and the Edge TPU delegate load exactly as
for a one-model job. Python 3.6.
"""

import random

from . import backends, interference
from .backends.base import JobFailed, LoadOptions, one_line
from .pipeline import PipelineError, PipelineRunner, time_pipeline

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 lacks perf_counter_ns
    import time

    def clock_ns():
        return int(time.perf_counter() * 1e9)


def _part_backends(job, parts):
    """One backend per file, each with its own device request (the part's, else the job's)."""
    made = []
    for part in parts:
        request = part.get("edgetpu") if part.get("edgetpu") is not None else job.get("edgetpu")
        if request is not None and job.get("edgetpu") and job["edgetpu"].get("ports"):
            request = dict(request, ports=job["edgetpu"]["ports"])
        options = LoadOptions(job["delegate"], job["threads"], device_request=request,
                              precision=job.get("precision"), extra=job.get("options"))
        made.append(backends.get(job.get("backend") or backends.DEFAULT_BACKEND)(options))
    return made


def _load_all(parts, made):
    """Select every part's device, then load each; returns (devices, total init ns)."""
    devices = [backend.select_device().get("edgetpu") for backend in made]
    init_ns = 0
    for part, backend in zip(parts, made):
        init_ns += backend.load(part["path"])
    return devices, init_ns


def _part_doc(part, backend, device):
    doc = {"path": part["path"], "sha256": part["sha256"], "name": part.get("name"),
           "device": backend.describe().get("device")}
    if device is not None:
        doc["port"] = device.get("port")
        doc["speed"] = device.get("speed")
    return doc


def measure_models(job, result, sampler, summarize, timing_document):
    """Time a multi-model job: per model its own invoke, the models in turn, round after round."""
    parts = job["models"]
    made = _part_backends(job, parts)
    try:
        devices, init_ns = _load_all(parts, made)
        if devices and devices[0] is not None:
            result.devices({"edgetpu": devices[0]})
        result.backend(made[0].describe())
        seed = random.Random(job["job_id"]).randint(0, 2 ** 31 - 1)
        for offset, backend in enumerate(made):
            backend.prepare_inputs(seed=seed + offset)
        invokes = [backend.invoker() for backend in made]
        errors = made[0].invoke_errors
        meter = _meter(job, 1)
        with sampler:
            per_model, rounds, first_ns, warmup_runs, warmup_s, timed_s = _time_rounds(invokes, job["timing"], errors,
                                                                                    meter)
        result.interference(meter.document())
        totals = [sum(values) for values in zip(*per_model)]
        timing = timing_document(totals, summarize(totals), first_inference_ms=first_ns / 1e6,
                                 warmup_runs=warmup_runs, warmup_seconds=warmup_s, timed_seconds=timed_s)
        result.timing(timing, init_ns)
        models = []
        for part, backend, device, samples in zip(parts, made, devices, per_model):
            doc = _part_doc(part, backend, device)
            doc["summary"] = summarize(samples)
            doc["samples_ns"] = samples
            models.append(doc)
        throughput = len(parts) * rounds / timed_s if timed_s > 0 else None
        timing["throughput_ips"] = throughput
        result.multi_model({
            "placement": job.get("placement"),
            "models": models,
            "count": len(models),
            # Flat, by position, so the store's view can lift them ("m0", "m1", ...: JSON paths, not indexes).
            "medians_ms": {"m{}".format(i): m["summary"]["median_ms"] for i, m in enumerate(models)},
            "rounds": rounds,
            "throughput_ips": throughput,
        })
    finally:
        for backend in made:
            backend.close()


def _meter(job, concurrent_parts):
    """The interference meter of a multi-part job: its threads are the job's, times the parts that run at once
    (a pipeline's stages; the models of a set run in turn, one at a time)."""
    meter = interference.Meter(threads=job["threads"] * concurrent_parts, cpu_bound=job["delegate"] == "cpu",
                               thresholds=job.get("interference"))
    meter.threads = max(1, min(len(meter.cpus), meter.threads))
    return meter


def _time_rounds(invokes, timing, errors, meter=None):
    """Warm-up rounds, then timed rounds; each model's invoke timed alone. Returns per-model samples.
    ``meter``: an ``interference.Meter``, started right before the timed rounds and stopped right after."""
    try:
        started = clock_ns()
        for invoke in invokes:
            invoke()
        first_ns = clock_ns() - started
        warmup_runs, warmup_started = 1, started
        while (warmup_runs < timing["warmup_min_runs"]
               or clock_ns() - warmup_started < timing["warmup_min_seconds"] * 1e9):
            if clock_ns() - warmup_started > timing["max_seconds"] * 1e9:
                break
            for invoke in invokes:
                invoke()
            warmup_runs += 1
        warmup_s = (clock_ns() - warmup_started) / 1e9
        per_model = [[] for _ in invokes]
        rounds = 0
        if meter is not None:
            meter.start()
        timed_started = clock_ns()
        while True:
            elapsed = clock_ns() - timed_started
            enough = rounds >= timing["min_runs"] and elapsed >= timing["min_seconds"] * 1e9
            if rounds and (enough or elapsed >= timing["max_seconds"] * 1e9):
                break
            for invoke, samples in zip(invokes, per_model):
                before = clock_ns()
                invoke()
                samples.append(clock_ns() - before)
            rounds += 1
    except errors as exc:
        raise JobFailed("benchmark", "invoke failed: {}".format(one_line(exc)))
    timed_s = (clock_ns() - timed_started) / 1e9
    if meter is not None:
        meter.stop()
    return per_model, rounds, first_ns, warmup_runs, warmup_s, timed_s


def measure_pipeline(job, result, sampler, summarize, timing_document):
    """Time a pipelined-segment job: steady-state throughput and each inference's latency."""
    parts = job["segments"]
    made = _part_backends(job, parts)
    runner = None
    try:
        devices, init_ns = _load_all(parts, made)
        if devices and devices[0] is not None:
            result.devices({"edgetpu": devices[0]})
        result.backend(made[0].describe())
        try:
            runner = PipelineRunner([backend.interpreter for backend in made])
        except ValueError as exc:
            raise JobFailed("benchmark", "the segments do not chain: {}".format(exc))
        made[0].prepare_inputs(seed=random.Random(job["job_id"]).randint(0, 2 ** 31 - 1))
        first = made[0].interpreter
        inputs = [first.get_tensor(d["index"]) for d in first.get_input_details()]
        meter = _meter(job, len(parts))
        try:
            with sampler:
                latencies, first_ns, warmup_runs, warmup_s, timed_s, throughput = time_pipeline(
                    runner, inputs, job["timing"], meter)
        except PipelineError as exc:
            raise JobFailed("benchmark", "pipeline failed: {}".format(exc))
        result.interference(meter.document())
        timing = timing_document(latencies, summarize(latencies), first_inference_ms=first_ns / 1e6,
                                 warmup_runs=warmup_runs, warmup_seconds=warmup_s, timed_seconds=timed_s)
        timing["throughput_ips"] = throughput
        result.timing(timing, init_ns)
        segments = []
        for part, backend, device, invoke_ns in zip(parts, made, devices, runner.invoke_ns):
            doc = _part_doc(part, backend, device)
            doc["invoke_median_ms"] = summarize(invoke_ns)["median_ms"] if invoke_ns else None
            segments.append(doc)
        result.pipeline({"num_segments": len(parts), "segments": segments, "throughput_ips": throughput,
                         "in_flight": len(parts)})
    finally:
        if runner is not None:
            runner.close()
        for backend in made:
            backend.close()
