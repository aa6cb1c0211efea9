"""GPU timing that means what users think: every inference waits for the GPU, copies are timed apart.

A GPU runtime returns from an enqueue long before the GPU has finished, so a
loop that times the enqueue measures nothing. ``PhaseTimer`` makes one
inference three phases, host-to-device copy, compute and device-to-host copy,
each ended by a stream synchronisation, and keeps each phase's duration; the
timing loop in ``bench`` times the whole call as usual, so the result's
``timing`` is the full synchronised inference and ``gpu_timing`` splits it.

Launch modes (the job's ``options.gpu_launch``): ``sync`` runs the network with
the runtime's synchronous call (a framework that waits after each kernel
behaves like this), ``async`` enqueues the whole network on a stream and waits
once, ``graph`` replays it as a captured CUDA graph: one launch. SEEDS §4's
lesson (synchronous kernel launches cost Caffe half its time) is the
difference between the first and the other two.
"""

import time

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)

LAUNCH_MODES = ("sync", "async", "graph")
DEFAULT_LAUNCH = "async"
PHASES = ("h2d", "compute", "d2h")


def phase_summary(samples_ns):
    """{"count", "mean_ms", "median_ms", "min_ms", "max_ms"} of one phase's durations; None when empty."""
    if not samples_ns:
        return None
    values = sorted(s / 1e6 for s in samples_ns)
    count = len(values)
    middle = count // 2
    median = values[middle] if count % 2 else (values[middle - 1] + values[middle]) / 2.0
    return {"count": count, "mean_ms": sum(values) / count, "median_ms": median, "min_ms": values[0],
            "max_ms": values[-1]}


def launch_mode(options):
    """The job's launch mode (``options.gpu_launch``), checked; ValueError names the choices."""
    mode = (options or {}).get("gpu_launch") or DEFAULT_LAUNCH
    if mode not in LAUNCH_MODES:
        raise ValueError("options.gpu_launch must be one of {}, got {!r}".format(", ".join(LAUNCH_MODES), mode))
    return mode


class PhaseTimer(object):
    """One synchronised inference as three timed phases.

    ``h2d``, ``compute`` and ``d2h`` enqueue work (or do it); ``synchronize`` waits for
    the GPU. ``invoke`` is what the timing loop calls; ``document(count)`` summarises
    the last ``count`` inferences (the timed ones, not the warm-up).
    """

    def __init__(self, h2d, compute, d2h, synchronize, launch):
        self.h2d, self.compute, self.d2h, self.synchronize = h2d, compute, d2h, synchronize
        self.launch = launch
        self.samples = {phase: [] for phase in PHASES}

    def invoke(self):
        started = clock_ns()
        self.h2d()
        self.synchronize()
        copied_in = clock_ns()
        self.compute()
        self.synchronize()
        computed = clock_ns()
        self.d2h()
        self.synchronize()
        done = clock_ns()
        self.samples["h2d"].append(copied_in - started)
        self.samples["compute"].append(computed - copied_in)
        self.samples["d2h"].append(done - computed)

    def document(self, count=None, engine=None):
        """The result's ``gpu_timing``: the launch mode, each phase's summary, and the engine's build facts."""
        doc = {"launch": self.launch}
        for phase in PHASES:
            taken = self.samples[phase][-count:] if count else self.samples[phase]
            doc[phase] = phase_summary(taken)
        if engine is not None:
            doc["engine"] = engine
        return doc
