"""The TensorRT backend: an engine built on the device from an ONNX model, timed synchronised per inference.

The job's ``precision`` (fp32, fp16, int8; None is fp32) picks the engine,
which is cached by (model sha, precision, TensorRT version, GPU) and built
when missing (``tensorrt_engine``); its build time is reported apart from
inference, in ``gpu_timing.engine``. Each timed inference copies the inputs
in, runs the network, copies the outputs out, and waits for the GPU after
each step (``gpu_timing.PhaseTimer``). ``options.gpu_launch`` chooses how the
network runs: ``sync`` (execute_v2), ``async`` (execute_async_v3, or v2 before
TensorRT 8.5) or ``graph`` (that enqueue captured once as a CUDA graph).

Without TensorRT or a CUDA binding the job is skipped, saying what is missing
and what the host needs; ``available()`` says the same for the facts.
"""

import importlib

from .base import Backend, JobFailed, one_line
from .cuda_memory import CudaMissing, open_cuda
from .gpu_timing import PhaseTimer, clock_ns, launch_mode
from .tensorrt_engine import build, calibration_batches, engine_path, load_or_build, make_calibrator, precision_of

NEEDS = ("TensorRT's Python bindings (JetPack's python3-libnvinfer, or pip install tensorrt on a PC with an "
         "NVIDIA GPU) and cuda-python or pycuda")


def import_tensorrt():
    """The tensorrt module, or JobFailed (skipped) naming what is missing and what the host needs."""
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        raise JobFailed("unsupported", "tensorrt is not importable on this host ({}); it needs {}".format(
            one_line(exc), NEEDS), status="skipped")


class TensorrtBackend(Backend):
    name = "tensorrt"
    delegates = ("gpu",)
    runtime_modules = ("tensorrt", "cuda", "pycuda")
    invoke_errors = (ValueError, RuntimeError)

    def __init__(self, options):
        Backend.__init__(self, options)
        self.trt = self.cuda = self.engine = self.context = None
        self.timer = None
        self.engine_facts = None
        self.precision = None
        self.host_inputs, self.host_outputs, self.device = {}, {}, {}

    @classmethod
    def available(cls):
        try:
            trt = import_tensorrt()
        except JobFailed as exc:
            return {"name": None, "version": None, "error": exc.message}
        try:
            cuda = open_cuda()
        except CudaMissing as exc:
            return {"name": "tensorrt", "version": trt.__version__, "error": str(exc)}
        return {"name": "tensorrt", "version": trt.__version__, "error": None, "cuda": cuda.name}

    def _gpu_name(self):
        """The GPU an engine is built for: the Jetson module its family names, else CUDA's device name."""
        from .. import boards  # imported when asked: the board families import the backends' facts

        gpu = boards.gpu() or {}
        if gpu.get("module"):
            return gpu["module"]
        try:
            return self.cuda.device_name() if self.cuda is not None else "gpu"
        except RuntimeError:
            return gpu.get("devfreq") or "gpu"

    def load(self, model_path):
        try:
            self.precision = precision_of(self.options.precision)
            launch = launch_mode(self.options.extra)
        except ValueError as exc:
            raise JobFailed("unsupported", str(exc), status="skipped")
        if _is_tflite(model_path):
            raise JobFailed("unsupported", "the tensorrt backend builds engines from ONNX models; {} is a TFLite "
                            "flatbuffer".format(model_path), status="skipped")
        self.trt = trt = import_tensorrt()
        try:
            self.cuda = open_cuda()
        except CudaMissing as exc:
            raise JobFailed("unsupported", "{}; it needs {}".format(exc, NEEDS), status="skipped")
        if launch == "graph" and not self.cuda.graphs:
            raise JobFailed("unsupported", "gpu_launch 'graph' needs cuda-python; this host has {}".format(
                self.cuda.name), status="skipped")
        from ..bench import file_sha256  # the same digest the job names the model by

        started = clock_ns()
        logger = trt.Logger(trt.Logger.WARNING)
        path = engine_path(file_sha256(model_path), self.precision, trt.__version__, self._gpu_name())
        try:
            data, self.engine_facts = load_or_build(path, lambda: self._build(logger, model_path))
            runtime = trt.Runtime(logger)
            self.engine = runtime.deserialize_cuda_engine(data)
            self.context = self.engine.create_execution_context()
            self._allocate()
        except RuntimeError as exc:
            raise JobFailed("benchmark", "TensorRT engine failed: {}".format(one_line(exc)))
        self.engine_facts["precision"] = self.precision
        self.timer = PhaseTimer(self._copy_in, self._compute(launch), self._copy_out, self.cuda.synchronize, launch)
        # init_ms is loading the engine and setting it up; a build is reported apart (gpu_timing.engine.build_ms).
        return max(0, clock_ns() - started - int((self.engine_facts["build_ms"] or 0) * 1e6))

    def _io(self):
        """[(name, is_input, shape, numpy dtype)] of the engine's tensors (TensorRT 8.5+ names them)."""
        trt = self.trt
        found = []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            found.append((name, self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                          tuple(self.engine.get_tensor_shape(name)), trt.nptype(self.engine.get_tensor_dtype(name))))
        return found

    def _build(self, logger, model_path):
        calibrator = None
        if self.precision == "int8":
            inputs = _onnx_inputs(model_path)
            calibrator = make_calibrator(self.trt, calibration_batches(inputs, seed=0), self.cuda)
        return build(self.trt, logger, model_path, self.precision, calibrator)

    def _allocate(self):
        import numpy

        for name, is_input, shape, dtype in self._io():
            host = numpy.zeros(shape, dtype=dtype)
            (self.host_inputs if is_input else self.host_outputs)[name] = host
            self.device[name] = self.cuda.malloc(host.nbytes)
            self.context.set_tensor_address(name, int(self.device[name]))

    def _compute(self, launch):
        if launch == "sync":
            bindings = [int(self.device[name]) for name, _, _, _ in self._io()]
            return lambda: self.context.execute_v2(bindings)
        enqueue = lambda: self.context.execute_async_v3(self.cuda.stream_handle())
        if launch == "graph":
            enqueue()  # TensorRT sets itself up on the first enqueue, which must not be captured
            self.cuda.synchronize()
            return self.cuda.capture(enqueue)
        return enqueue

    def _copy_in(self):
        for name, host in self.host_inputs.items():
            self.cuda.copy_to_device(self.device[name], host)

    def _copy_out(self):
        for name, host in self.host_outputs.items():
            self.cuda.copy_to_host(host, self.device[name])

    def prepare_inputs(self, seed):
        inputs = [(name, host.shape, host.dtype) for name, host in self.host_inputs.items()]
        for name, array in calibration_batches(inputs, seed, count=1)[0].items():
            self.host_inputs[name][...] = array

    def invoker(self):
        return self.timer.invoke

    def gpu_timing(self, count=None):
        return self.timer.document(count, engine=self.engine_facts) if self.timer else None

    def describe(self):
        return {"runtime": "tensorrt", "version": getattr(self.trt, "__version__", None), "delegate": "gpu",
                "device": self._gpu_name(), "precision": self.precision}


def _is_tflite(model_path):
    """Whether a file is a TFLite flatbuffer ("TFL3" at byte 4): the agent stores models by sha, not by suffix."""
    with open(model_path, "rb") as handle:
        return handle.read(8)[4:8] == b"TFL3"


def _onnx_inputs(model_path):
    """[(name, shape, dtype)] of an ONNX model's inputs, for calibration data, read with the onnx package."""
    try:
        onnx = importlib.import_module("onnx")
        mapping = importlib.import_module("onnx.helper")
    except ImportError as exc:
        raise RuntimeError("INT8 calibration reads the model's inputs with the onnx package: {}".format(exc))
    model = onnx.load(model_path)
    initialized = {init.name for init in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in initialized:
            continue
        kind = value.type.tensor_type
        shape = [d.dim_value or 1 for d in kind.shape.dim]  # a dynamic dimension calibrates at 1
        out.append((value.name, shape, mapping.tensor_dtype_to_np_dtype(kind.elem_type)))
    return out
