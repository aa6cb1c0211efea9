"""Stand-in for cuda-python's ``cuda.cudart``: the runtime calls farm's tensorrt backend makes, over host memory.

Every call returns a tuple whose first item is the error (0 is cudaSuccess), as cuda-python's do.
Work enqueued on a stream runs at once, except while the stream captures a graph: then it is recorded.
"""

import ctypes
import enum

import numpy

_buffers = {}     # device pointer -> the numpy array that holds it
_capturing = {}   # stream -> list of recorded callables, while capturing
calls = []        # the names of the calls made, for tests


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0


class _Properties:
    name = b"Stand-in GPU (no NVIDIA device)\0\0"


def _ok(*values):
    return (cudaError_t.cudaSuccess, *values)


def cudaStreamCreate():
    calls.append("cudaStreamCreate")
    return _ok(len(calls) + 1000)


def cudaMalloc(size):
    calls.append("cudaMalloc")
    array = numpy.zeros(max(1, int(size)), dtype=numpy.uint8)
    pointer = array.ctypes.data
    _buffers[pointer] = array
    return _ok(pointer)


def enqueue(stream, work):
    """Run ``work`` now, or record it when ``stream`` is capturing a graph (the stand-in TensorRT uses this too)."""
    if stream in _capturing:
        _capturing[stream].append(work)
    else:
        work()


def cudaMemcpyAsync(dst, src, count, kind, stream):
    calls.append("cudaMemcpyAsync")
    if int(dst) == 0 or int(src) == 0:
        return (cudaError_t.cudaErrorInvalidValue,)
    enqueue(stream, lambda: ctypes.memmove(int(dst), int(src), int(count)))
    return _ok()


def cudaStreamSynchronize(stream):
    calls.append("cudaStreamSynchronize")
    return _ok()


def cudaStreamBeginCapture(stream, mode):
    calls.append("cudaStreamBeginCapture")
    _capturing[stream] = []
    return _ok()


def cudaStreamEndCapture(stream):
    calls.append("cudaStreamEndCapture")
    return _ok(tuple(_capturing.pop(stream)))


def cudaGraphInstantiate(graph, flags):
    calls.append("cudaGraphInstantiate")
    return _ok(graph)


def cudaGraphLaunch(executable, stream):
    calls.append("cudaGraphLaunch")
    for work in executable:
        work()
    return _ok()


def cudaGetDeviceProperties(device):
    return _ok(_Properties())


def device_array(pointer, nbytes):
    """The host array behind a device pointer (for the stand-in TensorRT's kernels)."""
    return _buffers[int(pointer)][:nbytes]
