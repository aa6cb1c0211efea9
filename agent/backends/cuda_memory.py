"""Device memory, streams and CUDA graphs for the GPU backends, through whichever CUDA binding the host has.

JetPack's TensorRT Python comes without a CUDA memory API: hosts add either
NVIDIA's ``cuda-python`` (``cuda.cudart``, which also captures CUDA graphs) or
``pycuda`` (the Jetson samples' choice, no graphs). ``open_cuda`` returns an
adapter over the first one found, or raises CudaMissing naming both.
"""

import importlib


class CudaMissing(RuntimeError):
    """No CUDA binding can be imported."""


def _check(result):
    # cuda-python returns (error, value...) tuples; error 0 is cudaSuccess.
    error = result[0]
    if int(error) != 0:
        raise RuntimeError("CUDA call failed: {}".format(error))
    return result[1] if len(result) == 2 else result[1:]


def _text(name):
    return name.split(b"\0", 1)[0].decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


class Cudart(object):
    """``cuda.cudart`` (cuda-python)."""

    name = "cuda-python"
    graphs = True

    def __init__(self, cudart):
        self.rt = cudart
        self.stream = _check(cudart.cudaStreamCreate())

    def malloc(self, nbytes):
        return _check(self.rt.cudaMalloc(nbytes))

    def copy_to_device(self, pointer, array):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream))

    def copy_to_host(self, array, pointer):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream))

    def synchronize(self):
        _check(self.rt.cudaStreamSynchronize(self.stream))

    def stream_handle(self):
        return int(self.stream)

    def device_name(self):
        return _text(_check(self.rt.cudaGetDeviceProperties(0)).name)

    def capture(self, enqueue):
        """A callable that replays ``enqueue``'s work as one CUDA graph launch."""
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        _check(self.rt.cudaStreamBeginCapture(self.stream, mode))
        enqueue()
        graph = _check(self.rt.cudaStreamEndCapture(self.stream))
        executable = _check(self.rt.cudaGraphInstantiate(graph, 0))
        return lambda: _check((self.rt.cudaGraphLaunch(executable, self.stream)[0], None))


class Pycuda(object):
    """``pycuda.driver`` with ``pycuda.autoinit``'s context."""

    name = "pycuda"
    graphs = False

    def __init__(self, driver):
        self.driver = driver
        self.stream = driver.Stream()

    def malloc(self, nbytes):
        return self.driver.mem_alloc(nbytes)

    def copy_to_device(self, pointer, array):
        self.driver.memcpy_htod_async(pointer, array, self.stream)

    def copy_to_host(self, array, pointer):
        self.driver.memcpy_dtoh_async(array, pointer, self.stream)

    def synchronize(self):
        self.stream.synchronize()

    def stream_handle(self):
        return self.stream.handle

    def device_name(self):
        return self.driver.Device(0).name()

    def capture(self, enqueue):
        raise RuntimeError("pycuda cannot capture CUDA graphs; install cuda-python for gpu_launch 'graph'")


def open_cuda():
    """The first CUDA binding found, as an adapter; CudaMissing says what was tried."""
    tried = []
    try:
        return Cudart(importlib.import_module("cuda.cudart"))
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        tried.append("cuda-python ({})".format(str(exc).strip().splitlines()[0] if str(exc).strip() else
                                               type(exc).__name__))
    try:
        importlib.import_module("pycuda.autoinit")
        return Pycuda(importlib.import_module("pycuda.driver"))
    except Exception as exc:  # noqa: BLE001
        tried.append("pycuda ({})".format(str(exc).strip().splitlines()[0] if str(exc).strip() else
                                          type(exc).__name__))
    raise CudaMissing("no CUDA binding for device memory: tried " + "; ".join(tried)
                      + ". Install cuda-python or pycuda for this Python.")
