"""A stand-in for edgetpu_compiler, for machines where the real one cannot run (it is x86-64 Linux only).

It takes the real command line (``-o/--out_dir``, ``-n/--num_segments``, ``-s/--show_operations``,
``-v/--version``, models to co-compile), decides per operation what maps with the same rules as
``farm models check``, and writes what the real compiler writes: ``<name>_edgetpu.tflite`` (or
``<name>_segment_K_of_N_edgetpu.tflite``), ``<name>_edgetpu.log`` with the ``Operator Count Status``
table, and the console summary, in the newer ("remaining") or older ("available") wording
depending on its version. The output model is a real TFLite file whose Edge TPU part is one
``edgetpu-custom-op`` carrying the parameters (so it grows like a real compiled model); ops left
on the CPU follow it with their type and wiring (not their options: the file is for the registry,
not for running). Its version comes from ``FARM_STANDIN_COMPILER_VERSION`` (default 16.0.384591198),
so tests can play a compiler update.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from orchestrator.models.edgetpu_check import MAPPED, check_model
from orchestrator.models.flatbuild import GraphBuilder, Quant, fb
from orchestrator.models.inspect import EDGETPU_CUSTOM_OP, ModelFormatError

DEFAULT_VERSION = "16.0.384591198"
VERSION_ENV = "FARM_STANDIN_COMPILER_VERSION"
ON_CHIP_BYTES = int(7.0 * 1024 ** 2)  # what a USB accelerator offers for caching parameters (SEEDS §2: 6.9-7.6)
_BUILTIN_CUSTOM = 32
_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}  # TensorType -> numpy


def version() -> str:
    return os.environ.get(VERSION_ENV) or DEFAULT_VERSION


def _new_era(text: str) -> bool:
    try:
        return int(text.split(".")[0]) >= 15
    except ValueError:
        return True


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


def compile_one(data: bytes, name: str, segments: int, cache_left: int) -> list[tuple[str, bytes, dict]]:
    """The output files of one input model: [(file name, bytes, summary numbers)]."""
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
        ins = [_copy_tensor(graph, source, t, mapping, False) for t in entry]
        outs = [_copy_tensor(graph, source, t, mapping, False) for t in exits]
        graph.custom_op(EDGETPU_CUSTOM_OP, ins, outs, parameters or b"\0")
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
        used = min(len(parameters), max(0, cache_left))
        cache_left -= used
        suffix = f"_segment_{number}_of_{segments}" if segments > 1 else ""
        results.append((f"{name}{suffix}_edgetpu.tflite", out_bytes, {
            "input": f"{name}{suffix}.tflite", "input_size": len(data), "used": used,
            "off_chip": len(parameters) - used, "remaining": max(0, cache_left),
            "tpu_ops": len(part), "cpu_ops": len(report.ops) - len(mapped) if segments == 1 else 0,
            "table": report.table(), "log": f"{name}_edgetpu.log"}))
    return results


def _table(rows: list[tuple[str, int, str]]) -> list[str]:
    lines = [f"{'Operator':<30} {'Count':<10} Status", ""]
    for op, count, status in rows:
        shown = op if op.isupper() or op == EDGETPU_CUSTOM_OP else "CUSTOM"  # the compiler names custom ops CUSTOM
        lines.append(f"{shown:<30} {count:<10} {status}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgetpu_compiler", add_help=True)
    parser.add_argument("models", nargs="*")
    parser.add_argument("-o", "--out_dir", default=".")
    parser.add_argument("-n", "--num_segments", type=int, default=1)
    parser.add_argument("-s", "--show_operations", action="store_true")
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("-m", "--min_runtime_version", default=None)
    parser.add_argument("-t", "--timeout_sec", type=int, default=180)
    parser.add_argument("-a", "--enable_multiple_subgraphs", action="store_true")
    args = parser.parse_args(argv)
    current = version()
    if args.version:
        print(f"Edgetpu Compiler version {current}")  # what the real 16.0 prints for -v
        return 0
    print(f"Edge TPU Compiler version {current}")
    if not args.models:
        print("No input model specified.", file=sys.stderr)
        return 1
    if args.num_segments < 1:
        print("Invalid --num_segments: must be at least 1.", file=sys.stderr)
        return 1
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_left = ON_CHIP_BYTES
    outputs = []
    for path in args.models:
        try:
            data = Path(path).read_bytes()
            report = check_model(data)
        except (OSError, ModelFormatError) as exc:
            print(f"\nInvalid model: {path}\n{exc}\nCompilation failed!")
            return 1
        if not report.quantized and not report.tpu_ops:
            print(f"\nInvalid model: {path}\nModel not quantized\nCompilation failed!")
            return 1
        if report.already_compiled:
            print(f"\nInvalid model: {path}\nModel is already compiled for the Edge TPU\nCompilation failed!")
            return 1
        name = Path(path).name.removesuffix(".tflite")
        for file_name, content, numbers in compile_one(data, name, args.num_segments, cache_left):
            cache_left = numbers["remaining"]
            (out_dir / file_name).write_bytes(content)
            outputs.append((file_name, content, numbers))
        log = [f"Edge TPU Compiler version {current}", f"Input: {path}",
               f"Output: {out_dir / (name + '_edgetpu.tflite')}", "", *_table(report.table()), ""]
        (out_dir / f"{name}_edgetpu.log").write_text("\n".join(log))
    new = _new_era(current)
    print(f"\nModel compiled successfully in {12 + 3 * len(outputs)} ms.")
    for file_name, content, numbers in outputs:
        print(f"\nInput model: {numbers['input']}\nInput size: {mib(numbers['input_size'])}\n"
              f"Output model: {out_dir / file_name}\nOutput size: {mib(len(content))}")
        print(f"On-chip memory used for caching model parameters: {mib(numbers['used'])}")
        if new:
            print(f"On-chip memory remaining for caching model parameters: {mib(numbers['remaining'])}")
        else:
            print(f"On-chip memory available for caching model parameters: "
                  f"{mib(numbers['used'] + numbers['remaining'])}")
        print(f"Off-chip memory used for streaming uncached model parameters: {mib(numbers['off_chip'])}")
        print("Number of Edge TPU subgraphs: 1")
        print(f"Total number of operations: {numbers['tpu_ops'] + numbers['cpu_ops']}")
        print(f"Operation log: {out_dir / numbers['log']}")
        if numbers["cpu_ops"]:
            print("\nModel successfully compiled but not all operations are supported by the Edge TPU. A "
                  "percentage of the model will instead run on the CPU, which is slower. If possible, consider "
                  "updating your model to use only operations supported by the Edge TPU. For details, visit "
                  "g.co/coral/model-reqs.")
        if new:
            print(f"Number of operations that will run on Edge TPU: {numbers['tpu_ops']}")
            print(f"Number of operations that will run on CPU: {numbers['cpu_ops']}")
        if args.show_operations:
            print("\n" + "\n".join(_table(numbers["table"])))
        else:
            print("See the operation log file for individual operation details.")
    if new:
        print("Compilation child process completed within timeout period.\nCompilation succeeded!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
