"""A stand-in for edgetpu_compiler, for machines where the real one cannot run (it is x86-64 Linux only).

It takes the real command line (``-o/--out_dir``, ``-n/--num_segments``, ``-s/--show_operations``,
``-d/--search_delegate``, ``-t/--timeout_sec``, ``-v/--version``, models to co-compile), decides per
operation what maps with the same rules as ``farm models check``, and writes what the real compiler
writes: ``<name>_edgetpu.tflite`` and ``<name>_edgetpu.log`` (a segment: ``<name>_segment_K_of_N_edgetpu``
``.tflite``/``.log``), and the console summary of the version it plays
(``FARM_STANDIN_COMPILER_VERSION``, default 16.0.384591198), as the published outputs of each show it:

- 2.0: ``available`` printed before ``used``; 2.1 and later: ``used`` then ``remaining``.
- 14 and later: the TPU/CPU operation counts; 16.0 omits them when every operation maps, and prints its
  timeout timer (``-t``), ``Compilation child process completed within timeout period.`` and the outcome.
- Co-compiling: ``Models compiled successfully`` and one block per model, ``remaining`` shared by the
  group; a later model that does not fit what is left gets 0.00B on-chip, all its parameters off-chip.
- ``--num_segments``: a banner and block per segment.
- Nothing mappable: ``Number of Edge TPU subgraphs: 0`` and the model written back without a custom op.

Failures the model cannot cause are played on demand through ``FARM_STANDIN_COMPILER_FAULT``:
``large-activations:K`` (segment K fails after the ones before it), ``search:N`` (``-d`` fails N attempts
before succeeding), ``internal``, ``crash`` (exit 139, no output), ``opcode`` (an op it cannot parse) and
``truncated-log`` (an operation log missing its last row).
The output model is a real TFLite file whose Edge TPU part is one ``edgetpu-custom-op`` carrying the
parameters (so it grows like a real compiled model); ops left on the CPU follow it with their type and
wiring (not their options: the file is for the registry, not for running).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from orchestrator.models.edgetpu_check import MAPPED, check_model
from orchestrator.models.flatbuild import GraphBuilder, Quant, fb
from orchestrator.models.inspect import EDGETPU_CUSTOM_OP, ModelFormatError
from orchestrator.models.opcount import OP_NAMES, ops_of

DEFAULT_VERSION = "16.0.384591198"
VERSION_ENV = "FARM_STANDIN_COMPILER_VERSION"
FAULT_ENV = "FARM_STANDIN_COMPILER_FAULT"
ON_CHIP_BYTES = int(7.0 * 1024 ** 2)  # what a USB accelerator offers for caching parameters (SEEDS §2: 6.9-7.6)
_BUILTIN_CUSTOM = 32
_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}  # TensorType -> numpy


def version() -> str:
    return os.environ.get(VERSION_ENV) or DEFAULT_VERSION


def _version_at_least(text: str, wanted: tuple[int, int]) -> bool:
    try:
        parts = tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return True
    return parts + (0,) * (2 - len(parts)) >= wanted


def mib(value: int) -> str:
    if value == 0:
        return "0.00B"
    if value < 1024 * 1024:
        return f"{value / 1024:.2f}KiB"
    return f"{value / 1024 ** 2:.2f}MiB"


class _Source:
    """The parts of an input model the stand-in needs: tensors, ops, parameter bytes."""

    def __init__(self, data: bytes) -> None:
        self.model = fb["Model"].Model.GetRootAs(data, 0)
        self.graph = self.model.Subgraphs(0)

    def tensor(self, index: int):  # type: ignore[no-untyped-def]
        return self.graph.Tensors(index)

    def data(self, index: int) -> bytes:
        buffer = self.tensor(index).Buffer()
        if buffer <= 0:
            return b""
        length = self.model.Buffers(buffer).DataLength()
        return self.model.Buffers(buffer).DataAsNumpy().tobytes() if length else b""

    def op_io(self, index: int) -> tuple[list[int], list[int]]:
        op = self.graph.Operators(index)
        inputs = [int(i) for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
        outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        return inputs, outputs

    def code(self, index: int) -> tuple[int, str | None, bytes]:
        op = self.graph.Operators(index)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode().decode() if code.CustomCode() else None
        options = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        return builtin, custom, options


def _copy_tensor(graph: GraphBuilder, source: _Source, index: int, mapping: dict[int, int],
                 with_data: bool) -> int:
    if index in mapping:
        return mapping[index]
    tensor = source.tensor(index)
    quant = None
    q = tensor.Quantization()
    if q is not None and q.ScaleLength():
        quant = Quant([float(s) for s in q.ScaleAsNumpy()], [int(z) for z in q.ZeroPointAsNumpy()],
                      q.QuantizedDimension())
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    raw = source.data(index) if with_data else b""
    dtype = _DTYPES.get(tensor.Type())
    data = np.frombuffer(raw, dtype=dtype).reshape(shape) if raw and dtype is not None else None
    mapping[index] = graph.tensor((tensor.Name() or b"").decode(), shape, tensor.Type(), quant, data)
    return mapping[index]


# The custom op's data, which the stand-in libedgetpu (farm_lab/standins/libedgetpu) reads: a magic,
# the co-compile group's caching token (zeros alone), on-chip and off-chip parameter bytes, the
# operations (multiply + add = 2) on convolution-like and on dense layers, then the parameters.
CUSTOM_MAGIC = b"FARMTPU1"
_DENSE_OPS = {"FULLY_CONNECTED", "BATCH_MATMUL"}


def custom_data(group_token: bytes, on_chip: int, off_chip: int, ops: tuple[int, int], parameters: bytes) -> bytes:
    token = (group_token or b"").ljust(8, b"\0")[:8]
    numbers = b"".join(int(v).to_bytes(8, "little") for v in (on_chip, off_chip, *ops))
    return CUSTOM_MAGIC + token + numbers + parameters


def _part_ops(source: _Source, part: list[int]) -> tuple[int, int]:
    """(convolution-like, dense) operations of the ops in ``part``, counted as farm's op counter does."""
    conv = dense = 0
    for index in part:
        builtin, custom, _ = source.code(index)
        name = OP_NAMES.get(builtin, "CUSTOM") if builtin != _BUILTIN_CUSTOM else (custom or "CUSTOM")
        inputs, outputs = source.op_io(index)
        shapes = [tuple(int(d) for d in source.tensor(t).ShapeAsNumpy()) if source.tensor(t).ShapeLength() else ()
                  for t in inputs]
        out_shapes = [tuple(int(d) for d in source.tensor(t).ShapeAsNumpy()) if source.tensor(t).ShapeLength()
                      else () for t in outputs]
        ops = ops_of(name, shapes, out_shapes, source.graph.Operators(index)) or 0
        if name in _DENSE_OPS:
            dense += ops
        else:
            conv += ops
    return conv, dense


def compile_one(data: bytes, name: str, segments: int, cache_left: int, later_model: bool = False,
                group_token: bytes = b"") -> list[tuple[str, bytes, dict]]:
    """The output files of one input model: [(file name, bytes, summary numbers)]. A later model of a
    co-compile caches its parameters only if they all fit in what the earlier ones left."""
    report = check_model(data)
    source = _Source(data)
    mapped = [v.index for v in report.ops if v.status == MAPPED]
    parts = [mapped[k * len(mapped) // segments:(k + 1) * len(mapped) // segments] for k in range(segments)] \
        if segments > 1 else [mapped]
    results = []
    for number, part in enumerate(parts):
        graph = GraphBuilder(f"edgetpu_compiler stand-in {version()}")
        mapping: dict[int, int] = {}
        members = set(part)
        produced = {t for i in part for t in source.op_io(i)[1]}
        consumed_inside = {t for i in part for t in source.op_io(i)[0]}
        parameters = b"".join(source.data(t) for i in part for t in source.op_io(i)[0])
        entry = sorted({t for i in part for t in source.op_io(i)[0] if not source.data(t) and t not in produced})
        later = [i for i in range(source.graph.OperatorsLength()) if i not in members]
        needed_later = {t for i in later for t in source.op_io(i)[0]}
        graph_outputs = {int(source.graph.Outputs(k)) for k in range(source.graph.OutputsLength())}
        exits = sorted(t for t in produced if t in needed_later or t in graph_outputs or t not in consumed_inside)
        fits = len(parameters) <= cache_left
        used = (len(parameters) if fits else 0) if later_model else min(len(parameters), max(0, cache_left))
        cache_left -= used
        if part:
            ins = [_copy_tensor(graph, source, t, mapping, False) for t in entry]
            outs = [_copy_tensor(graph, source, t, mapping, False) for t in exits]
            # How much sits on-chip, and a co-compile's shared caching token, are compiled into the model:
            # the same source co-compiled and compiled alone gives two different files.
            graph.custom_op(EDGETPU_CUSTOM_OP, ins, outs,
                            custom_data(group_token, used, len(parameters) - used, _part_ops(source, part), parameters))
        else:  # nothing maps: 0 Edge TPU subgraphs, the model written back with its ops as they were
            ins = [_copy_tensor(graph, source, int(source.graph.Inputs(k)), mapping, False)
                   for k in range(source.graph.InputsLength())]
            outs = []
        last = number == len(parts) - 1
        cpu_side = [v for v in report.ops if v.status != MAPPED]
        if segments == 1:
            for index in later:
                if index < (part[0] if part else 0):
                    continue
                builtin, custom, options = source.code(index)
                inputs, outputs = source.op_io(index)
                new_in = [_copy_tensor(graph, source, t, mapping, True) for t in inputs]
                new_out = [_copy_tensor(graph, source, t, mapping, False) for t in outputs]
                if builtin == _BUILTIN_CUSTOM:
                    graph.custom_op(custom or "CUSTOM", new_in, new_out, options)
                else:
                    graph.op(builtin, new_in, new_out)
        final_outputs = [mapping[t] for t in sorted(graph_outputs) if t in mapping] or outs
        out_bytes = graph.finish(ins, final_outputs)
        suffix = f"_segment_{number}_of_{segments}" if segments > 1 else ""
        # A segment's table lists its own ops; the ops left to the CPU go with the last segment.
        rows = [v for v in report.ops if v.index in members] + (cpu_side if last else [])
        table = sorted(Counter((v.op, v.status) for v in rows).items())
        results.append((f"{name}{suffix}_edgetpu.tflite", out_bytes, {
            "input": f"{name}{suffix}.tflite" if segments > 1 else f"{name}.tflite", "input_size": len(data),
            "used": used, "off_chip": len(parameters) - used, "remaining": max(0, cache_left),
            "tpu_ops": len(part), "cpu_ops": len(cpu_side) if last else 0, "subgraphs": 1 if part else 0,
            "table": [(op, n, status) for (op, status), n in table], "log": f"{name}{suffix}_edgetpu.log"}))
    return results


def _table(rows: list[tuple[str, int, str]]) -> list[str]:
    lines = [f"{'Operator':<30} {'Count':<10} Status", ""]
    for op, count, status in rows:
        shown = op if op.isupper() or op == EDGETPU_CUSTOM_OP else "CUSTOM"  # the compiler names custom ops CUSTOM
        lines.append(f"{shown:<30} {count:<10} {status}")
    return lines


def _fault() -> tuple[str, int]:
    kind, _, number = (os.environ.get(FAULT_ENV) or "").partition(":")
    return kind, int(number) if number.isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgetpu_compiler", add_help=True)
    parser.add_argument("models", nargs="*")
    parser.add_argument("-o", "--out_dir", default=".")
    parser.add_argument("-n", "--num_segments", type=int, default=1)
    parser.add_argument("-s", "--show_operations", action="store_true")
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("-m", "--min_runtime_version", default=None)
    parser.add_argument("-t", "--timeout_sec", type=int, default=180)
    parser.add_argument("-d", "--search_delegate", action="store_true")
    parser.add_argument("-k", "--delegate_search_step", type=int, default=1)
    parser.add_argument("-a", "--enable_multiple_subgraphs", action="store_true")
    args = parser.parse_args(argv)
    current = version()
    fault, fault_at = _fault()
    if fault == "crash":
        return 139  # a segmentation fault: the real compiler dies before printing its banner
    if args.version:
        print(f"Edgetpu Compiler version {current}")  # what the real 16.0 prints for -v
        return 0
    play = _Play(current, args)
    print(f"Edge TPU Compiler version {current}")
    if not args.models:
        print("No input model specified.", file=sys.stderr)
        return 1
    if args.num_segments < 1:
        print("Invalid --num_segments: must be at least 1.", file=sys.stderr)
        return 1
    if args.search_delegate and play.v16:
        print(f"Searching for valid delegate with step {args.delegate_search_step}")
    if fault == "search" and args.search_delegate:
        for attempt in range(fault_at):
            play.timer()
            play.failed("ERROR: Restored original execution plan after delegate application failure.",
                        "Compilation failed: Compilation failed due to large activation tensors in model.")
            print(f"Intermediate tensors: attempt{attempt}/tensor_a, attempt{attempt}/tensor_b")
    play.timer()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_left = ON_CHIP_BYTES
    outputs = []
    for position, path in enumerate(args.models):
        try:
            data = Path(path).read_bytes()
            report = check_model(data)
        except (OSError, ModelFormatError) as exc:
            return play.failed(f"\nInvalid model: {path}", str(exc), "Model could not be parsed")
        if fault == "opcode":
            return play.failed("ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'",
                               "ERROR: Registration failed.", f"\nInvalid model: {path}", "Model could not be parsed")
        if fault == "internal":
            return play.failed("Internal compiler error. Aborting!")
        if not report.quantized and not report.tpu_ops:
            return play.failed(f"\nInvalid model: {path}", "Model not quantized")
        if report.already_compiled:
            return play.failed(f"\nInvalid model: {path}", "Model is already compiled for the Edge TPU")
        name = Path(path).name.removesuffix(".tflite")
        token = hashlib.sha256("\n".join(args.models).encode()).digest()[:8] if len(args.models) > 1 else b""
        for file_name, content, numbers in compile_one(data, name, args.num_segments, cache_left, position > 0,
                                                       token):
            segment = len([o for o in outputs if o[2]["model"] == name])
            if fault == "large-activations" and args.num_segments > 1 and segment == fault_at:
                return play.failed("ERROR: Restored original execution plan after delegate application failure.",
                                   "Compilation failed: Compilation failed due to large activation tensors in model.")
            cache_left = numbers["remaining"]
            numbers["model"] = name
            (out_dir / file_name).write_bytes(content)
            log = [f"Edge TPU Compiler version {current}", f"Input: {path}", f"Output: {out_dir / file_name}", "",
                   *_table(numbers["table"]), ""]
            if fault == "truncated-log":  # a log cut short, as a full disk or an interrupted copy leaves it
                log = log[:-2]
            (out_dir / numbers["log"]).write_text("\n".join(log))
            outputs.append((file_name, content, numbers))
            if args.num_segments > 1:  # each segment is compiled on its own, with its own banner and block
                play.block(out_dir, file_name, content, numbers, numbers["remaining"], single=True)
    if args.num_segments == 1:
        co_compiled = len(args.models) > 1
        print(f"\nModel{'s' if co_compiled else ''} compiled successfully in {12 + 3 * len(outputs)} ms.")
        for file_name, content, numbers in outputs:
            # Co-compiled models share the cache: each block shows what the group leaves, once it is placed.
            play.block(out_dir, file_name, content, numbers, cache_left, single=False)
    return play.succeeded()


class _Play:
    """What the version being played prints, where versions differ."""

    def __init__(self, current: str, args: argparse.Namespace) -> None:
        self.args = args
        self.v16 = _version_at_least(current, (16, 0))
        self.remaining_era = _version_at_least(current, (2, 1))
        self.counts = _version_at_least(current, (14, 0))

    def timer(self) -> None:
        if self.v16:
            print(f"Started a compilation timeout timer of {self.args.timeout_sec} seconds.")

    def failed(self, *lines: str) -> int:
        print("\n".join(lines))
        if self.v16:
            print("Compilation child process completed within timeout period.")
        print("Compilation failed!")
        return 1

    def succeeded(self) -> int:
        if self.v16:
            print("Compilation child process completed within timeout period.\nCompilation succeeded!")
        return 0

    def block(self, out_dir: Path, file_name: str, content: bytes, numbers: dict, remaining: int,
              single: bool) -> None:
        if single:
            print(f"\nModel compiled successfully in {12 + numbers['tpu_ops']} ms.")
        print(f"\nInput model: {numbers['input']}\nInput size: {mib(numbers['input_size'])}\n"
              f"Output model: {out_dir / file_name}\nOutput size: {mib(len(content))}")
        if self.remaining_era:
            print(f"On-chip memory used for caching model parameters: {mib(numbers['used'])}")
            print(f"On-chip memory remaining for caching model parameters: {mib(remaining)}")
        else:
            print(f"On-chip memory available for caching model parameters: {mib(numbers['used'] + remaining)}")
            print(f"On-chip memory used for caching model parameters: {mib(numbers['used'])}")
        print(f"Off-chip memory used for streaming uncached model parameters: {mib(numbers['off_chip'])}")
        print(f"Number of Edge TPU subgraphs: {numbers['subgraphs']}")
        print(f"Total number of operations: {numbers['tpu_ops'] + numbers['cpu_ops']}")
        print(f"Operation log: {out_dir / numbers['log']}")
        if numbers["cpu_ops"]:
            print("\nModel successfully compiled but not all operations are supported by the Edge TPU. A "
                  "percentage of the model will instead run on the CPU, which is slower. If possible, consider "
                  "updating your model to use only operations supported by the Edge TPU. For details, visit "
                  "g.co/coral/model-reqs.")
        if self.counts and not (self.v16 and numbers["cpu_ops"] == 0):  # 16.0 omits them when all map
            print(f"Number of operations that will run on Edge TPU: {numbers['tpu_ops']}")
            print(f"Number of operations that will run on CPU: {numbers['cpu_ops']}")
        if self.args.show_operations:
            print("\n" + "\n".join(_table(numbers["table"])))
        else:
            print("See the operation log file for individual operation details.")


if __name__ == "__main__":
    sys.exit(main())
