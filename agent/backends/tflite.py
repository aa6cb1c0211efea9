"""The TFLite backend: tflite_runtime (or its successors) on the CPU, or with the Edge TPU delegate."""

import contextlib
import time

from .base import Backend, JobFailed, one_line
from .edgetpu_delegate import load_tpu_delegate, select_tpu
from .gpu_delegate import load_gpu_delegate
from .tflite_loader import RuntimeMissing, describe_runtime, load_runtime

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    def clock_ns():
        return int(time.perf_counter() * 1e9)


class TfliteBackend(Backend):
    name = "tflite"
    delegates = ("cpu", "edgetpu", "gpu")

    def __init__(self, options):
        Backend.__init__(self, options)
        self.tpu = None
        self.interpreter = None
        self.runtime = None  # (module name, version) once loaded

    @classmethod
    def available(cls):
        return describe_runtime()

    @classmethod
    def preload(cls):
        # A missing runtime is the job's to report, in its result, not the preloader's.
        with contextlib.suppress(RuntimeMissing):
            load_runtime()

    def select_device(self):
        if self.options.delegate != "edgetpu":
            return {}
        self.tpu = select_tpu(self.options.device_request)
        return {"edgetpu": self.tpu}

    def load(self, model_path):
        if self.options.precision is not None:
            raise JobFailed("unsupported", "the tflite backend runs each tensor in the model file's own type; "
                            "it cannot run at precision {!r}".format(self.options.precision), status="skipped")
        try:
            name, version, module = load_runtime()
        except RuntimeMissing as exc:
            raise JobFailed("infrastructure", str(exc))
        self.runtime = (name, version)
        delegates = []
        if self.options.delegate == "edgetpu":
            delegates.append(load_tpu_delegate(module, self.tpu, self.options.extra.get("edgetpu_device")))
        elif self.options.delegate == "gpu":
            delegates.append(load_gpu_delegate(module, self.options.extra.get("gpu_delegate_library")))
        started = clock_ns()
        try:
            interpreter = module.Interpreter(
                model_path=model_path,
                num_threads=self.options.threads,
                experimental_delegates=delegates or None,
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise JobFailed("benchmark", "model failed to load: {}".format(one_line(exc)))
        self.interpreter = interpreter
        return clock_ns() - started

    def prepare_inputs(self, seed):
        import numpy  # the runtime depends on numpy, so it is present wherever it is

        rng = numpy.random.RandomState(seed)
        for detail in self.interpreter.get_input_details():
            dtype = numpy.dtype(detail["dtype"])
            shape = tuple(int(d) for d in detail["shape"])
            if dtype.kind in "iu":
                info = numpy.iinfo(dtype)
                data = rng.randint(info.min, int(info.max) + 1, size=shape).astype(dtype)
            elif dtype.kind == "b":
                data = rng.randint(0, 2, size=shape).astype(dtype)
            else:
                data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
            self.interpreter.set_tensor(detail["index"], data)

    def invoker(self):
        return self.interpreter.invoke

    def describe(self):
        name, version = self.runtime or (None, None)
        if self.options.delegate == "edgetpu":
            device = (self.tpu or {}).get("device") or self.options.extra.get("edgetpu_device")
        elif self.options.delegate == "gpu":
            device = "gpu"
        else:
            device = "cpu"
        # TFLite runs each tensor in the type the model file gives it: there is no precision to choose.
        return {"runtime": name, "version": version, "delegate": self.options.delegate,
                "device": device, "precision": None, "name": self.name,
                "accelerator": "edgetpu" if self.options.delegate == "edgetpu" else "cpu"}

    def close(self):
        self.interpreter = None
