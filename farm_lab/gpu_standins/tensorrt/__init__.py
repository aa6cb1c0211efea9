"""Stand-in for TensorRT's Python bindings (8.5+ API): what farm's tensorrt backend calls (see ../README.md).

Builder/network/OnnxParser/builder config build a "serialized engine": the ONNX model's inputs and
outputs (names, shapes, types) and the precision, as JSON. An INT8 build asks its calibrator for
batches until it returns None and writes a calibration cache, as TensorRT does. The runtime's engine
names its tensors; its execution context runs by writing each output as the sum of all inputs.
"""

import enum
import json

import numpy

__version__ = "8.6.1.standin"
builds = []  # (precision, calibration batches) per build, for tests


class Logger:
    WARNING = 2

    def __init__(self, severity=WARNING):
        self.severity = severity


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


_NUMPY = {DataType.FLOAT: numpy.float32, DataType.HALF: numpy.float16, DataType.INT8: numpy.int8,
          DataType.INT32: numpy.int32}
_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32}


def nptype(dtype):
    return _NUMPY[dtype]


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


class _Network:
    def __init__(self):
        self.tensors = []


class OnnxParser:
    def __init__(self, network, logger):
        self.network = network
        self.errors = []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]

    def parse(self, data):
        import onnx

        try:
            model = onnx.load_model_from_string(bytes(data))
        except Exception as exc:  # noqa: BLE001 - TensorRT reports a parse failure, it does not raise
            self.errors.append(f"ModelImporter: failed to parse the ONNX protobuf: {exc}")
            return False
        initialized = {init.name for init in model.graph.initializer}
        for values, mode in ((model.graph.input, TensorIOMode.INPUT), (model.graph.output, TensorIOMode.OUTPUT)):
            for value in values:
                if value.name in initialized:
                    continue
                kind = value.type.tensor_type
                self.network.tensors.append({"name": value.name, "mode": int(mode),
                                             "shape": [d.dim_value or 1 for d in kind.shape.dim],
                                             "dtype": int(_ONNX_TYPES.get(kind.elem_type, DataType.FLOAT))})
        return True


class _Config:
    def __init__(self):
        self.flags = set()
        self.int8_calibrator = None

    def set_flag(self, flag):
        self.flags.add(flag)


class Builder:
    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        return _Network()

    def create_builder_config(self):
        return _Config()

    def build_serialized_network(self, network, config):
        precision = "int8" if BuilderFlag.INT8 in config.flags else "fp16" if BuilderFlag.FP16 in config.flags \
            else "fp32"
        batches = 0
        calibrator = config.int8_calibrator
        if precision == "int8":
            if calibrator is None:
                return None  # TensorRT: INT8 without a calibrator (or Q/DQ nodes) builds nothing
            names = [t["name"] for t in network.tensors if t["mode"] == TensorIOMode.INPUT]
            if calibrator.read_calibration_cache() is None:
                while calibrator.get_batch(names) is not None:
                    batches += 1
                calibrator.write_calibration_cache(json.dumps({"batches": batches}).encode())
        builds.append((precision, batches))
        return bytearray(json.dumps({"precision": precision, "tensors": network.tensors}).encode())


class _Engine:
    def __init__(self, doc):
        self.doc = doc
        self.tensors = doc["tensors"]

    @property
    def num_io_tensors(self):
        return len(self.tensors)

    def get_tensor_name(self, index):
        return self.tensors[index]["name"]

    def _tensor(self, name):
        return next(t for t in self.tensors if t["name"] == name)

    def get_tensor_mode(self, name):
        return TensorIOMode(self._tensor(name)["mode"])

    def get_tensor_shape(self, name):
        return tuple(self._tensor(name)["shape"])

    def get_tensor_dtype(self, name):
        return DataType(self._tensor(name)["dtype"])

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine):
        self.engine = engine
        self.addresses = {}
        self.runs = 0

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = int(pointer)
        return True

    def _run(self):
        from cuda import cudart

        arrays = {}
        for tensor in self.engine.tensors:
            dtype = numpy.dtype(_NUMPY[DataType(tensor["dtype"])])
            nbytes = int(numpy.prod(tensor["shape"])) * dtype.itemsize
            arrays[tensor["name"]] = cudart.device_array(self.addresses[tensor["name"]], nbytes).view(dtype)
        total = sum(float(arrays[t["name"]].astype(numpy.float64).sum()) for t in self.engine.tensors
                    if t["mode"] == TensorIOMode.INPUT)
        for tensor in self.engine.tensors:
            if tensor["mode"] == TensorIOMode.OUTPUT:
                arrays[tensor["name"]][...] = total
        self.runs += 1

    def execute_v2(self, bindings):
        self._run()
        return True

    def execute_async_v3(self, stream_handle):
        from cuda import cudart

        cudart.enqueue(stream_handle, self._run)
        return True


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        return _Engine(json.loads(bytes(data).decode()))
