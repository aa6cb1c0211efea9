"""What every inference backend offers the one timing loop in ``bench``.

A backend wraps one runtime (TFLite today; ONNX Runtime and TensorRT are
planned) behind five steps: choose the device, load the model with options,
prepare inputs, hand over the bare invoke call, and describe what ran. The
timing loop never learns which runtime it times, so every backend's numbers
are measured the same way.
"""

import abc


class JobFailed(Exception):
    """The job cannot produce a measurement; ``kind`` says whose fault it is.

    ``kind``: "benchmark" (the model or runtime failed), "infrastructure" (the
    host or the controller did), "unsupported" (this host cannot run the cell).
    ``status`` is "failed", or "skipped" when this host cannot run the cell at all.
    """

    def __init__(self, kind, message, status="failed"):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.status = status


class LoadOptions(object):
    """How the job wants its model loaded, in the backend-neutral terms of the job document.

    ``device_request``: the job's request for an accelerator (for the Edge TPU,
    its ``edgetpu`` object); ``precision``: None for what the model file says,
    else a backend's name for it ("fp16", "int8"); ``extra``: the job's free
    ``options`` object, for settings only one backend understands.
    """

    def __init__(self, delegate, threads, device_request=None, precision=None, extra=None):
        self.delegate = delegate
        self.threads = threads
        self.device_request = device_request
        self.precision = precision
        self.extra = dict(extra or {})

    @classmethod
    def from_job(cls, job):
        return cls(job["delegate"], job["threads"], device_request=job.get("edgetpu"),
                   precision=job.get("precision"), extra=job.get("options"))


def one_line(exc):
    """An exception as one line of text, for error messages that end up in a table cell."""
    return " ".join(str(exc).split()) or type(exc).__name__


class Backend(abc.ABC):
    """One runtime's way to load, feed, invoke and describe a model.

    Used once per job, in this order::

        backend = get("tflite")(options)
        devices = backend.select_device()   # {"edgetpu": {...}} or {}: recorded even if loading fails
        backend.load(model_path)            # raises JobFailed
        backend.prepare_inputs(seed)
        invoke = backend.invoker()          # the bare call the loop times
        ...
        backend.describe()                  # the result's "backend" sub-document
        backend.close()

    Failures are JobFailed with the kind set; a failure inside ``invoke`` is one
    of ``invoke_errors``, which the loop turns into a benchmark failure, so that
    nothing but the runtime's own call sits between the clocks.
    """

    # The registry's name for it and what a job's "delegate" may be with it.
    name = None
    delegates = ()
    # Top-level modules ``available`` imports, when that costs a start (``probe_cache``); () probes every time.
    runtime_modules = ()
    # What the runtime raises when a model fails while invoking.
    invoke_errors = (ValueError, RuntimeError)

    def __init__(self, options):
        self.options = options

    @classmethod
    @abc.abstractmethod
    def available(cls):
        """{"name", "version", "error"} for the facts: which runtime this host has, never raising."""

    @classmethod
    def preload(cls):
        """Import the runtime now, so processes forked later find it loaded; a missing one is not an error."""

    def select_device(self):
        """Resolve the device the job asked for, right before loading; the result's sub-documents about it."""
        return {}

    @abc.abstractmethod
    def load(self, model_path):
        """Load the model for ``self.options``; returns the nanoseconds that took (the result's init_ms)."""

    @abc.abstractmethod
    def prepare_inputs(self, seed):
        """Random inputs from ``seed``, set once before timing, as benchmark_model does."""

    @abc.abstractmethod
    def invoker(self):
        """The bare callable that runs one inference: the only thing between the timing loop's clocks."""

    @abc.abstractmethod
    def describe(self):
        """What ran: a ``schema.backend_document`` (runtime, version, delegate, device, precision)."""

    def gpu_timing(self, count=None):
        """A GPU backend's timings beside the loop's (copies, engine build, launch mode) over the last
        ``count`` inferences (the timed ones), else None."""
        return

    def close(self):
        """Free the runtime's resources; the job's process ends soon after, so the default does nothing."""
