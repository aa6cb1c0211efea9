"""The ONNX Runtime backend: an ``.onnx`` model through one execution provider (CPU, CUDA or TensorRT).

The job's ``delegate`` names the provider (``cpu``, ``cuda``, ``tensorrt``).
ONNX Runtime silently falls back to the CPU when a provider it was given
cannot start, so the provider the session actually runs with is read back
(``InferenceSession.get_providers()``) and recorded; a job whose provider did
not take fails rather than timing the CPU under a GPU's name.

Precision: the model file's own types run on any provider. FP16 and INT8 of
an FP32 file are TensorRT's (the TensorRT provider's ``trt_fp16_enable`` and
``trt_int8_enable`` options); the CPU and CUDA providers run the types the
file has, so such a cell is skipped with that reason.

``onnxruntime`` and ``numpy`` are imported only when a job or the facts ask:
most devices lack them, and the agent's floor is Python 3.6 (onnxruntime
1.10 is the last release with CPython 3.6 wheels, 1.14.1 for 3.7).
"""

import functools
import importlib
import time

from .base import Backend, JobFailed, one_line

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)

# The job's delegate -> ONNX Runtime's provider name, and what it runs on (the result's "accelerator").
PROVIDERS = {
    "cpu": ("CPUExecutionProvider", "cpu"),
    "cuda": ("CUDAExecutionProvider", "gpu"),
    "tensorrt": ("TensorrtExecutionProvider", "gpu"),
}
# Precisions the TensorRT provider builds from an FP32 model, and the option that turns each on.
TENSORRT_PRECISION_OPTIONS = {"fp16": "trt_fp16_enable", "int8": "trt_int8_enable"}
# ONNX TensorProto element types -> the precision a model with such inputs runs at.
_INPUT_PRECISIONS = {"tensor(float)": "fp32", "tensor(float16)": "fp16", "tensor(int8)": "int8",
                     "tensor(uint8)": "int8", "tensor(double)": "fp64"}
MISSING_HINT = ("pip install onnxruntime (CPU; wheels for CPython 3.7+ on x86-64 and aarch64, 1.10.0 is the last "
                "for 3.6), or onnxruntime-gpu / NVIDIA's Jetson Zoo wheel for the CUDA and TensorRT providers")

_cached = None


class RuntimeMissing(RuntimeError):
    """onnxruntime cannot be imported on this device."""


def load_runtime():
    """The imported onnxruntime module, or RuntimeMissing saying what the host would need."""
    global _cached
    if _cached is not None:
        return _cached
    try:
        module = importlib.import_module("onnxruntime")
    except Exception as exc:  # noqa: BLE001 - a broken install (numpy ABI) raises more than ImportError
        import platform

        raise RuntimeMissing("onnxruntime is not importable on this host ({}: {}) under Python {} on {}. "
                             "Install it: {}".format(type(exc).__name__, one_line(exc), platform.python_version(),
                                                     platform.machine(), MISSING_HINT))
    _cached = module
    return module


def available_providers(module):
    try:
        return list(module.get_available_providers())
    except Exception:  # noqa: BLE001 - an old or broken build: the CPU provider is always compiled in
        return ["CPUExecutionProvider"]


def describe_runtime():
    """{"name", "version", "error", "providers"}: for the facts, never raising."""
    try:
        module = load_runtime()
    except RuntimeMissing as exc:
        return {"name": None, "version": None, "error": str(exc), "providers": []}
    return {"name": "onnxruntime", "version": getattr(module, "__version__", None), "error": None,
            "providers": available_providers(module)}


def precision_problem(delegate, precision, native):
    """Why ``delegate`` cannot run a model whose own precision is ``native`` at ``precision``; None if it can.

    Shared with the controller's matrix, which skips such cells before sending them.
    """
    if precision is None or precision == native:
        return None
    if delegate == "tensorrt" and precision in TENSORRT_PRECISION_OPTIONS and native == "fp32":
        return None
    if precision in TENSORRT_PRECISION_OPTIONS and native == "fp32":
        return ("ONNX Runtime's {} runs the model file's own types ({}); {} of an fp32 model needs the "
                "TensorRT provider (delegate tensorrt, option {})".format(
                    PROVIDERS.get(delegate, (delegate,))[0], native, precision, TENSORRT_PRECISION_OPTIONS[precision]))
    return "ONNX Runtime cannot run this {} model at {}: build or add a {} model instead".format(
        native, precision, precision)


def _precision_of(session):
    inputs = session.get_inputs()
    return _INPUT_PRECISIONS.get(inputs[0].type, "fp32") if inputs else "fp32"


class OnnxruntimeBackend(Backend):
    name = "onnxruntime"
    delegates = tuple(PROVIDERS)
    runtime_modules = ("onnxruntime", "numpy")
    # onnxruntime raises its own exception classes (Fail, InvalidArgument, RuntimeException), all RuntimeError.
    invoke_errors = (ValueError, RuntimeError)

    def __init__(self, options):
        Backend.__init__(self, options)
        self.session = None
        self.module = None
        self.feeds = None
        self.native = None
        self.provider_options = {}

    @classmethod
    def available(cls):
        return describe_runtime()

    @classmethod
    def preload(cls):
        try:
            load_runtime()
        except RuntimeMissing:
            pass  # the job reports it, in its result

    def load(self, model_path):
        try:
            module = load_runtime()
        except RuntimeMissing as exc:
            raise JobFailed("unsupported", str(exc), status="skipped")
        self.module = module
        provider, _ = PROVIDERS[self.options.delegate]
        present = available_providers(module)
        if provider not in present:
            raise JobFailed("unsupported", "this onnxruntime {} has no {} (it has {}): install onnxruntime-gpu "
                            "with CUDA{} for delegate {}".format(
                                getattr(module, "__version__", "?"), provider, ", ".join(present),
                                " and TensorRT" if self.options.delegate == "tensorrt" else "",
                                self.options.delegate), status="skipped")
        settings = module.SessionOptions()
        # One job, one thread count: the intra-op pool is the parallelism TFLite's num_threads sets.
        settings.intra_op_num_threads = self.options.threads
        settings.inter_op_num_threads = 1
        try:
            # Read the file's own precision first only when the job asks for one: it costs a second load.
            self.native = self._native_precision(module, model_path, settings) \
                if self.options.precision is not None else None
            problem = precision_problem(self.options.delegate, self.options.precision, self.native)
            if problem:
                raise JobFailed("unsupported", problem, status="skipped")
            self.provider_options = {}
            if self.options.delegate == "tensorrt" and self.options.precision in TENSORRT_PRECISION_OPTIONS:
                self.provider_options[TENSORRT_PRECISION_OPTIONS[self.options.precision]] = True
            providers = [(provider, self.provider_options)] if provider != "CPUExecutionProvider" else []
            # The CPU provider last: ONNX Runtime places there what a GPU provider cannot take.
            providers.append(("CPUExecutionProvider", {}))
            started = clock_ns()
            session = module.InferenceSession(model_path, sess_options=settings, providers=providers)
        except JobFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's exceptions have no common public base
            raise JobFailed("benchmark", "model failed to load in onnxruntime: {}".format(one_line(exc)))
        elapsed = clock_ns() - started
        if self.native is None:
            self.native = _precision_of(session)
        used = list(session.get_providers())
        if not used or used[0] != provider:
            raise JobFailed("infrastructure", "onnxruntime was asked for {} but the session runs on {}: the "
                            "provider failed to start (see the agent's log for ONNX Runtime's warning)".format(
                                provider, ", ".join(used) or "nothing"))
        self.session = session
        return elapsed

    @staticmethod
    def _native_precision(module, model_path, settings):
        """The precision of the model file itself, from its first input's element type."""
        return _precision_of(module.InferenceSession(model_path, sess_options=settings,
                                                     providers=["CPUExecutionProvider"]))

    def prepare_inputs(self, seed):
        import numpy  # onnxruntime depends on numpy, so it is present wherever it is

        rng = numpy.random.RandomState(seed)
        feeds = {}
        for detail in self.session.get_inputs():
            shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in detail.shape)
            kind = detail.type
            if kind in ("tensor(int8)", "tensor(uint8)", "tensor(int32)", "tensor(int64)"):
                dtype = numpy.dtype(kind[7:-1])
                info = numpy.iinfo(dtype)
                low, high = max(int(info.min), -128), min(int(info.max), 127)
                feeds[detail.name] = rng.randint(low, high + 1, size=shape).astype(dtype)
            elif kind == "tensor(float16)":
                feeds[detail.name] = rng.uniform(-1.0, 1.0, size=shape).astype(numpy.float16)
            else:
                feeds[detail.name] = rng.uniform(-1.0, 1.0, size=shape).astype(numpy.float32)
        self.feeds = feeds

    def invoker(self):
        # run() returns only when every output is on the host: a GPU provider's work is finished inside it.
        return functools.partial(self.session.run, None, self.feeds)

    def describe(self):
        provider, accelerator = PROVIDERS[self.options.delegate]
        used = list(self.session.get_providers()) if self.session is not None else []
        return {"runtime": "onnxruntime", "version": getattr(self.module, "__version__", None),
                "delegate": self.options.delegate, "device": accelerator if accelerator == "cpu" else "cuda:0",
                "precision": self.options.precision or self.native, "name": self.name,
                "accelerator": accelerator, "provider": used[0] if used else provider, "providers": used,
                "provider_options": {k: str(v) for k, v in self.provider_options.items()}}

    def close(self):
        self.session = None
