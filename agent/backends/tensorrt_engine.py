"""TensorRT engines: built on the device from an ONNX model, cached by what makes an engine valid.

An engine is specific to the model, the precision it was built at, the
TensorRT version that built it and the GPU it was built for, so the cache key
is exactly those four (``cache_key``); anything else reuses a stale engine or
rebuilds for nothing. Building takes seconds to minutes on a Jetson, so its
time is reported apart from inference (``gpu_timing.engine.build_ms``), and a
cached engine reports that it was cached.

INT8 needs calibration: ``calibration_batches`` generates the data (uniform
random inputs from a seed, as the timing loop's inputs are), and
``make_calibrator`` wraps it in TensorRT's ``IInt8EntropyCalibrator2``.
Random data calibrates the ranges, not the accuracy: an INT8 engine is for
timing, which is what farm measures. The TensorRT Python API used:
``Builder``/``create_network``/``OnnxParser``/``create_builder_config``,
``BuilderFlag.FP16``/``INT8``, ``build_serialized_network`` (8.0 and later).
"""

import os
import re

try:
    from time import perf_counter_ns as clock_ns  # novermin
except ImportError:  # Python 3.6 (JetPack 4) lacks perf_counter_ns
    import time

    def clock_ns():
        return int(time.perf_counter() * 1e9)

PRECISIONS = ("fp32", "fp16", "int8")
CACHE_ENV = "FARM_ENGINE_CACHE"
CALIBRATION_BATCHES = 8


def precision_of(requested):
    """The engine precision for a job's ``precision`` (None: FP32); ValueError for others."""
    precision = requested or "fp32"
    if precision not in PRECISIONS:
        raise ValueError("tensorrt builds engines at {}, not {!r}".format(", ".join(PRECISIONS), precision))
    return precision


def cache_key(model_sha256, precision, trt_version, gpu):
    """The hex key of an engine: sha256 over (model sha, precision, TensorRT version, GPU)."""
    import hashlib  # here: probing for TensorRT (facts) imports this module, and OpenSSL's start is not cheap

    text = "\n".join(str(part) for part in (model_sha256, precision, trt_version, gpu))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _slug(text):
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower() or "unknown"


def cache_dir():
    """Where engines are kept: $FARM_ENGINE_CACHE, else ~/.cache/farm/engines."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "farm", "engines")


def engine_path(model_sha256, precision, trt_version, gpu, folder=None):
    """The cache file for an engine; its name shows the parts, its key tells them apart."""
    key = cache_key(model_sha256, precision, trt_version, gpu)
    name = "{}-{}-trt{}-{}-{}.engine".format(model_sha256[:12], precision, _slug(trt_version), _slug(gpu), key[:16])
    return os.path.join(folder or cache_dir(), name)


def calibration_batches(inputs, seed, count=CALIBRATION_BATCHES):
    """``count`` batches of {input name: array} for INT8 calibration, the same for the same seed.

    ``inputs``: [(name, shape, numpy dtype)]. Floats are uniform in [-1, 1), integers
    span their type, as ``TfliteBackend.prepare_inputs`` fills inputs.
    """
    import numpy

    rng = numpy.random.RandomState(seed)
    batches = []
    for _ in range(count):
        batch = {}
        for name, shape, dtype in inputs:
            dtype = numpy.dtype(dtype)
            shape = tuple(int(d) for d in shape)
            if dtype.kind in "iu":
                info = numpy.iinfo(dtype)
                batch[name] = rng.randint(info.min, int(info.max) + 1, size=shape).astype(dtype)
            else:
                batch[name] = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        batches.append(batch)
    return batches


def make_calibrator(trt, batches, cuda, cache_file=None):
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` through device buffers ``cuda`` allocates."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.remaining = list(batches)
            first = batches[0] if batches else {}
            self.buffers = {name: cuda.malloc(array.nbytes) for name, array in first.items()}

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            if not self.remaining:
                return None
            batch = self.remaining.pop(0)
            for name in names:
                cuda.copy_to_device(self.buffers[name], batch[name])
            return [int(self.buffers[name]) for name in names]

        def read_calibration_cache(self):
            if cache_file and os.path.exists(cache_file):
                with open(cache_file, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache):
            if cache_file:
                _write_atomic(cache_file, bytes(cache))

    return Calibrator()


def _write_atomic(path, data):
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        os.makedirs(folder)
    partial = path + ".partial-{}".format(os.getpid())
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def build(trt, logger, onnx_path, precision, calibrator=None):
    """(serialized engine bytes, build ms) for ``onnx_path`` at ``precision``; RuntimeError says why not."""
    started = clock_ns()
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag,
                                                                 "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # implicit in TensorRT 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        if not parser.parse(handle.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError("TensorRT cannot parse {}: {}".format(onnx_path, "; ".join(errors) or "no reason"))
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT built no engine for {} at {} (see its log)".format(onnx_path, precision))
    return bytes(serialized), (clock_ns() - started) / 1e6


def load_or_build(path, build_engine):
    """(engine bytes, {"cached", "build_ms", "path"}): the cached file, else ``build_engine()`` stored there."""
    if os.path.exists(path):
        with open(path, "rb") as handle:
            return handle.read(), {"cached": True, "build_ms": None, "path": path}
    data, build_ms = build_engine()
    _write_atomic(path, data)
    return data, {"cached": False, "build_ms": build_ms, "path": path}
