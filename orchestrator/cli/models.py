"""`farm models ...`: the model registry, Edge TPU checks and compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import FarmError, InputError
from .options import DbOption
from .output import console

models_app = typer.Typer(help="Register, build, inspect, check and compile models.", no_args_is_help=True)

def _open(db: str | None):  # type: ignore[no-untyped-def]
    from ..store import open_store

    return open_store(db)


def _one(store, name: str):  # type: ignore[no-untyped-def]
    from ..models import registry

    found = registry.find_models(store, [name])
    if len(found) != 1:
        raise FarmError(f"'{name}' matches {len(found)} models ({', '.join(m.name for m in found[:5])}): "
                        "give one name or a longer sha256 prefix")
    return found[0]


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    return f"{value / 1024 ** 2:.2f} MiB" if value >= 1024 ** 2 else f"{value / 1024:.2f} KiB" \
        if value >= 1024 else f"{value} B"


@models_app.command("list")
def models_list(db: DbOption = None) -> None:
    """List registered models.

    Example: farm models list
    """
    from ..models import registry

    store = _open(db)
    try:
        rows = registry.list_models(store)
        by_id = {row.id: row.name for row in rows}
    finally:
        store.close()
    table = Table()
    for column in ("name", "family", "source", "sha256", "size", "inputs", "GOP/inference", "Edge TPU"):
        table.add_column(column)
    for row in rows:
        inputs = ", ".join(f"{t['dtype']}{t['shape']}" for t in row.inputs)
        gop = f"{row.ops_per_inference / 1e9:.3f}" if row.ops_per_inference is not None else "?"
        source = row.source if row.source_model_id is None else \
            f"compiled from {by_id.get(row.source_model_id, row.source_model_id)} " \
            f"({row.compiler_version or 'published'})"
        if row.needs_edgetpu and row.source_model_id is None:
            source += " (unlinked twin)"
        table.add_row(row.name, row.family, source, row.sha256[:16], f"{row.size_bytes:,}", inputs, gop,
                      _edgetpu_cell(row))
    console.print(table if rows else "No models registered: try `farm models build --family mobilenet_v2`.")


def _edgetpu_cell(row: Any) -> str:
    if ((row.compile_report or {}).get("summary") or {}).get("subgraphs") == 0:
        return "none: 0 subgraphs"  # compiled, yet every op runs on the CPU: its results measure the CPU
    return "yes" if row.needs_edgetpu else ""


@models_app.command("build")
def models_build(
    family: Annotated[str, typer.Option("--family", help="conv_stack, dense_stack, googlenet, mobilenet_v1, "
                                        "mobilenet_v2 or ssd_mobilenet_v1")],
    layers: Annotated[str | None, typer.Option("--layers", help="Stacks: layer counts, comma separated, "
                                               "e.g. 10,75,300 \\[default: 1]")] = None,
    size: Annotated[str | None, typer.Option("--size", help="Stacks: internal height and width; architectures: "
                                             "input sizes, comma separated \\[default: 224, SSD 300]")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="MobileNets: width multiplier, e.g. 0.25")] = None,
    kernel: Annotated[int | None, typer.Option("--kernel", help="conv_stack: kernel size")] = None,
    filters: Annotated[int | None, typer.Option("--filters", help="conv_stack: filters per layer")] = None,
    units: Annotated[int | None, typer.Option("--units", help="dense_stack: units per layer")] = None,
    formats: Annotated[str | None, typer.Option(
        "--format", help="tflite (int8), onnx (fp32, for onnxruntime and TensorRT) or all, comma separated "
                         "\\[default: tflite; googlenet: onnx,tflite]")] = None,
    db: DbOption = None,
) -> None:
    """Generate models (SEEDS §2 stacks, GoogLeNet, MobileNet v1/v2, SSD MobileNet) and register them.

    Example: farm models build --family mobilenet_v2
             farm models build --family conv_stack --layers 10,75,300 --format all
             farm models build --family googlenet
    """
    from ..models import registry

    known = registry.families()
    if family not in known:
        raise FarmError(f"unknown model family '{family}' (known: {', '.join(sorted(known))})")
    sweep = known[family].sweep
    overrides: dict[str, Any] = {k: v for k, v in {"alpha": alpha, "kernel": kernel, "filters": filters,
                                                   "units": units}.items() if v is not None}
    values = _numbers("--layers", layers) if layers else None
    if sweep == "size":
        if layers:
            raise FarmError(f"{family} has no --layers: sweep its input with --size, e.g. --size 224,192")
        values = _numbers("--size", size) if size else None
    elif size:
        sizes = _numbers("--size", size)
        if len(sizes) != 1:
            raise FarmError(f"--size takes one value for {family}, not '{size}'")
        overrides["size"] = sizes[0]
    kinds = None
    if formats:
        kinds = known[family].available if formats == "all" else tuple(f.strip() for f in formats.split(",") if f.strip())
        for kind in kinds:
            known[family].builder(kind)  # an unknown format fails here, naming what the family has
    store = _open(db)
    try:
        for row, created in registry.build(store, family, values, kinds, **overrides):
            gop = f"{row.ops_per_inference / 1e9:.3f} GOP" if row.ops_per_inference is not None else "? GOP"
            console.print(f"{'built' if created else 'already registered'}: {row.name} ({row.sha256[:16]}, "
                          f"{row.size_bytes:,} bytes, {gop} per inference)")
    finally:
        store.close()


def _numbers(option: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FarmError(f"{option} must be comma-separated whole numbers, not '{text}'") from None
    if not values:
        raise FarmError(f"{option} needs at least one number")
    return values


@models_app.command("add")
def models_add(
    path: Annotated[Path, typer.Argument(help="A .tflite or .onnx file")],
    name: Annotated[str | None, typer.Option("--name", help="Name to register it under \\[default: file stem]")] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="For a compiled (_edgetpu) file: the model it was compiled from, a registered name or a "
                         ".tflite file \\[default: the registered model its name points at]")] = None,
    db: DbOption = None,
) -> None:
    """Register your own .tflite or .onnx file (an .onnx one runs under the onnxruntime backend). An Edge TPU file (Coral's <name>_edgetpu.tflite) links to its source
    model, so it carries the source's operations per inference; a source links its twins added before it.

    Example: farm models add ./mobilenet_v2_1.0_224_quant.tflite --name mobilenet_v2
             farm models add ./mobilenet_v2_1.0_224_quant_edgetpu.tflite --source mobilenet_v2
    """
    from ..models import registry, twins
    from ..store.schema import ModelRow

    store = _open(db)
    try:
        row, created = registry.add_file(store, path, name=name, source=source)
        with store.session() as session:
            origin = session.get(ModelRow, row.source_model_id) if row.source_model_id is not None else None
        linked = [] if row.needs_edgetpu else twins.twins_of(store, row)
    finally:
        store.close()
    console.print(f"{'registered' if created else 'already registered'}: {row.name} ({row.sha256[:16]}, "
                  f"{row.size_bytes:,} bytes{', Edge TPU' if row.needs_edgetpu else ''})")
    if origin is not None:
        gop = f"{row.ops_per_inference / 1e9:.3f} GOP" if row.ops_per_inference is not None else "? GOP"
        console.print(f"twin of {origin.name}: carries its {gop} per inference")
    elif row.needs_edgetpu:
        console.print("[yellow]unlinked twin:[/yellow] no registered source model; its GOPS stay empty until "
                      "its source is added (or add it with --source NAME|FILE)")
    for twin in linked:
        console.print(f"linked twin: {twin.name}")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name or sha256 prefix (8+ characters)")],
    db: DbOption = None,
) -> None:
    """Show everything stored about one model: tensors, op counts per type, source, compile report.

    Example: farm models show mobilenet_v2-s224
    """
    store = _open(db)
    try:
        from ..store.schema import ModelRow

        row = _one(store, name)
        with store.session() as session:
            source = session.get(ModelRow, row.source_model_id) if row.source_model_id is not None else None
    finally:
        store.close()
    facts = [("name", row.name), ("sha256", row.sha256), ("family", row.family),
             ("source", row.source + (f" from {source.name} ({source.sha256[:16]})" if source else "")),
             ("compiler", row.compiler_version or ""), ("parameters", _params(row.params)),
             *_twin_facts(row, source),
             ("size", f"{row.size_bytes:,} bytes ({_size(row.size_bytes)})"), ("file", row.path),
             ("needs Edge TPU", "yes" if row.needs_edgetpu else "no"),
             ("ops/inference", f"{row.ops_per_inference:,} ({row.ops_per_inference / 1e9:.3f} GOP; "
                               f"{_macs(row.op_counts) / 1e6:.1f} M multiply-adds in conv/dense layers)"
              if row.ops_per_inference is not None else "unknown"),
             ("registered", f"{row.created_at:%Y-%m-%d %H:%M:%S}")]
    for kind, tensors in (("input", row.inputs), ("output", row.outputs)):
        for tensor in tensors:
            facts.append((kind, f"{tensor['name']}: {tensor['dtype']} {tensor['shape']}"))
    table = Table(show_header=False, title=row.name)
    for key, value in facts:
        table.add_row(key, str(value))
    console.print(table)
    counts = row.op_counts or {}
    if counts.get("operators"):
        ops = Table(title="Operations per inference (multiply + add = 2)")
        for column in ("operator", "count", "operations", "share"):
            ops.add_column(column, justify="left" if column == "operator" else "right")
        total = counts.get("total") or 0
        for op, n in sorted(counts["operators"].items(), key=lambda kv: -(counts["by_op"].get(kv[0]) or 0)):
            value = counts["by_op"].get(op)
            ops.add_row(op, str(n), f"{value:,}" if value is not None else "not counted",
                        f"{100 * value / total:.1f}%" if value is not None and total else "")
        console.print(ops)
    if row.compile_report:
        _print_compile_report(row.compile_report)


def _twin_facts(row: Any, source: Any) -> list[tuple[str, str]]:
    if not row.needs_edgetpu:
        return []
    twin = (row.params or {}).get("twin") or {}
    kind = twin.get("kind") or ("segment" if (row.compile_report or {}).get("segment") is not None else "compiled")
    if kind == "segment":
        kind = f"segment {twin.get('segment', (row.compile_report or {}).get('segment'))} of " \
               f"{twin.get('num_segments', (row.compile_report or {}).get('num_segments'))}"
    elif kind == "co-compiled":
        kind += " with " + ", ".join(twin.get("co_compiled_with") or [])
    if source is None:
        unlinked = f"{kind}; unlinked: no source model registered, so its operations per inference and GOPS " \
            "are left empty"
        return [("Edge TPU twin", unlinked)]
    if kind.startswith("segment"):
        return [("Edge TPU twin", (f"{kind} of {source.name}; a segment's share of its operations is not known, "
                                  "so it has no GOPS"))]
    return [("Edge TPU twin", f"{kind}; of {source.name}, whose operations per inference it carries")]


def _macs(counts: dict[str, Any] | None) -> float:
    """Multiply-adds of the layers papers count (their figure for MobileNet v1 is 569 M)."""
    by_op = (counts or {}).get("by_op") or {}
    return sum(by_op.get(op, 0) for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")) / 2


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _print_compile_report(report: dict[str, Any]) -> None:
    summary = report.get("summary") or {}
    table = Table(show_header=False, title=f"Edge TPU compiler {report.get('compiler_version')}")
    rows = [("on-chip memory used", _size(summary.get("on_chip_used_bytes"))),
            ("on-chip memory " + ("remaining" if summary.get("era") == "remaining" else "available"),
             _size(summary.get("on_chip_remaining_bytes") if summary.get("era") == "remaining"
                   else summary.get("on_chip_available_bytes"))),
            ("off-chip memory used", _size(summary.get("off_chip_used_bytes"))),
            ("Edge TPU subgraphs", summary.get("subgraphs")),
            ("operations on Edge TPU / CPU", f"{summary.get('tpu_ops')} / {summary.get('cpu_ops')}"),
            ("co-compiled with", ", ".join(report.get("co_compiled_with") or []) or "-"),
            ("segment", f"{report['segment']} of {report['num_segments']}" if report.get("segment") is not None
             else "-")]
    group = report.get("co_compile_group")
    if group:
        shared = f"{_size(group['capacity_bytes'])} (every model's used + {_size(group['remaining_bytes'])} remaining)"
        rows.append(("co-compiled group cache", shared))
    rows.extend(("warning", warning) for warning in report.get("warnings") or [])
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    if report.get("operators"):
        ops = Table(title="Operator Count Status")
        for column in ("Operator", "Count", "Status"):
            ops.add_column(column)
        for row in report["operators"]:
            ops.add_row(row["op"], str(row["count"]), row["status"])
        console.print(ops)


@models_app.command("check")
def models_check(
    name: Annotated[str, typer.Argument(help="Model name, sha256 prefix, or a .tflite file path")],
    db: DbOption = None,
) -> None:
    """Check Edge TPU compatibility before compiling: int8 throughout, static shapes, constant weights,
    supported ops; says which operations fall back to the CPU and why. Exit 1 when not all map.

    Example: farm models check mobilenet_v2-s224
             farm models check ./keras_lstm_mnist_ptq.tflite
    """
    from ..bounded_read import read_model_file
    from ..models import twins
    from ..models.edgetpu_check import MAPPED, check_model
    from ..models.inspect import ModelFormatError

    path = Path(name)
    compiled: list[Any] = []
    if name.endswith(".tflite") or path.exists():
        label = str(path)
        data = read_model_file(path)
    else:
        store = _open(db)
        try:
            row = _one(store, name)
            compiled = [t for t in twins.twins_of(store, row) if not twins.is_segment(t)]
        finally:
            store.close()
        label, data = row.name, Path(row.path).read_bytes()
    try:
        report = check_model(data)
    except ModelFormatError as exc:
        raise InputError(label, str(exc)) from None
    table = Table(title=f"Edge TPU check: {label}")
    for column in ("Operator", "Count", "Status"):
        table.add_column(column)
    for op, count, status in report.table():
        table.add_row(op, str(count), status if status == MAPPED else f"[yellow]{status}[/yellow]")
    console.print(table)
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}")
    if report.ended_by is not None:
        first = report.ops[report.ended_by]
        console.print(f"The Edge TPU subgraph ends at {first.label}: {first.status}"
                      f"{f' ({first.detail})' if first.detail else ''}; it and everything that depends on it run "
                      "on the CPU.")
    for op, count, reason in report.fallbacks():
        console.print(f"CPU: {op} ×{count}: {reason}")
    for caution in report.cautions:
        console.print(f"[yellow]caution:[/yellow] {caution}")
    for twin in compiled:
        _print_twin_comparison(report, twin)
    if report.compatible:
        console.print(f"All {report.tpu_ops} operations map to the Edge TPU.")
        return
    console.print(f"{report.tpu_ops} of {len(report.ops)} operations map to the Edge TPU; "
                  f"{report.cpu_ops} run on the CPU.")
    raise typer.Exit(1)


def _print_twin_comparison(report: Any, twin: Any) -> None:
    from ..models import twins

    actual = twins.cpu_ops_of(twin)
    if actual is None:
        console.print(f"twin {twin.name}: what it runs on the CPU is not recorded, so it cannot be compared")
        return
    rows = twins.compare_with_twin(report.tpu_by_op(), report.cpu_by_op(), actual)
    table = Table(title=f"Predicted vs compiled twin {twin.name} ({twin.compiler_version or 'published'})")
    for column in ("Operator", "TPU predicted", "TPU actual", "CPU predicted", "CPU actual", ""):
        table.add_column(column, justify="left" if column == "Operator" else "right")
    for row in rows:
        table.add_row(row["op"], str(row["predicted_tpu"]), str(row["actual_tpu"]), str(row["predicted_cpu"]),
                      str(row["actual_cpu"]), "" if row["agrees"] else "[red]differs[/red]")
    console.print(table)
    differing = [row["op"] for row in rows if not row["agrees"]]
    if differing:
        console.print(f"The prediction differs from {twin.name} for {', '.join(differing)}.")
    else:
        console.print(f"The prediction matches {twin.name}: {sum(actual.values())} operations on the CPU.")


@models_app.command("compile")
def models_compile(
    names: Annotated[list[str], typer.Argument(help="Models to co-compile (names or sha256 prefixes)")],
    compiler: Annotated[list[str] | None, typer.Option(
        "--compiler", help="edgetpu_compiler to run; repeat it to compile with several versions side by side "
                           "\\[default: $FARM_EDGETPU_COMPILER, else PATH]")] = None,
    num_segments: Annotated[int, typer.Option("--num-segments", "-n",
                                              help="Split each model for an N-TPU pipeline")] = 1,
    search_delegate: Annotated[bool, typer.Option(
        "--search-delegate", help="Let the compiler search for a delegate that compiles (its -d)")] = False,
    db: DbOption = None,
) -> None:
    """Compile models for the Edge TPU on this machine and register each result, linked to its source and
    the compiler's version (several models are co-compiled to share the parameter cache).

    Example: farm models compile mobilenet_v2-s224 --compiler /usr/bin/edgetpu_compiler
             farm models compile mobilenet_v1-s224 mobilenet_v2-s224 --num-segments 2
             farm models compile mobilenet_v2-s224 --compiler ./compiler-15/edgetpu_compiler \\
                 --compiler ./compiler-16/edgetpu_compiler
    """
    import os

    from ..models.compiler import compile_models

    store = _open(db)
    try:
        sources = [_one(store, name) for name in names]
        if len({s.id for s in sources}) != len(sources):
            raise FarmError("a model is named twice: each model can be co-compiled once")
        chosen = compiler or [os.environ.get("FARM_EDGETPU_COMPILER")]  # type: ignore[list-item]
        results = compile_models(store, sources, compiler=chosen, num_segments=num_segments,
                                 search_delegate=search_delegate)
    finally:
        store.close()
    versions = sorted({r.report["compiler_version"] for r in results})
    table = Table(title=f"Edge TPU compiler {', '.join(versions)}" if results else None)
    for column in ("model", "from", "compiler", "size", "on-chip used", "off-chip used", "TPU ops", "CPU ops", ""):
        table.add_column(column)
    for result in results:
        summary = result.report.get("summary") or {}
        table.add_row(result.row.name, result.source.name, result.report["compiler_version"],
                      _size(result.row.size_bytes), _size(summary.get("on_chip_used_bytes")),
                      _size(summary.get("off_chip_used_bytes")), str(summary.get("tpu_ops")),
                      str(summary.get("cpu_ops")), "new" if result.created else "already registered")
    console.print(table)
    shown: set[str] = set()
    for result in results:
        group = result.report.get("co_compile_group")
        if group and f"{group['id']}{result.report['compiler_version']}" not in shown:
            shown.add(f"{group['id']}{result.report['compiler_version']}")
            console.print(f"co-compiled group {group['id']}: {_size(group['capacity_bytes'])} on-chip cache "
                          f"shared, {_size(group['remaining_bytes'])} of it left free")
        for warning in result.report.get("warnings") or []:
            console.print(f"[yellow]warning:[/yellow] {warning}; results measured on {result.row.name} are flagged")
        if result.report.get("log_check") and result.report["log_check"] != "no operation log":
            console.print(f"[yellow]warning:[/yellow] {result.row.name}: {result.report['log_check']}")

