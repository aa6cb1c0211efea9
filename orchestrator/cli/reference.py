"""`farm reference`: published reference times (pycoral's CSVs, the seeds' tables) shown beside results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import FarmError
from .options import DbOption
from .output import console

reference_app = typer.Typer(help="Import and list published reference times that `farm report` shows beside "
                            "results.", no_args_is_help=True)


@reference_app.command("import")
def reference_import(
    files: Annotated[list[Path] | None, typer.Argument(help="pycoral reference CSVs (space-delimited, header "
                                                       "'MODEL INFERENCE_TIME' or 'MODEL DATA_SET ..._TIME')")] = None,
    board: Annotated[str | None, typer.Option("--board", help="The board the file was measured on, as your "
                                              "inventory's `board:` names it (e.g. raspberry-pi-4b)")] = None,
    setting: Annotated[list[str] | None, typer.Option("--setting", help="KEY=VALUE the references hold for, "
                                                      "repeatable: usb_speed=5000, threads=1, power_mode=10W")] = None,
    delegate: Annotated[str | None, typer.Option("--delegate", help="cpu or edgetpu [default: edgetpu when the "
                                                 "model name ends in _edgetpu, else cpu]")] = None,
    seeds: Annotated[bool, typer.Option("--seeds", help="Import the seeds' published tables (SEEDS §1 DeepLab "
                                        "thread sweep, SEEDS §2 Jetson Nano 10W/5W, USB3/USB2)")] = False,
    db: DbOption = None,
) -> None:
    """Store published reference times; a reference already stored for the same board, model, delegate,
    setting, metric and data set takes the new value.

    pycoral publishes one file per board: x86-64 with the USB Accelerator on USB 3.0, Raspberry Pi 3 B and
    3 B+ (USB 2.0), 4 B, and the Dev Board (aarch64). Its times are means (200 invokes on the Edge TPU, 20 on
    the CPU); `farm report` compares them with each result's mean.

    Examples:
      farm reference import inference_reference_x86_64.csv --board x86-64 --setting usb_speed=5000
      farm reference import inference_reference_rp3b+.csv --board raspberry-pi-3b+ --setting usb_speed=480
      farm reference import --seeds
    """
    from ..references import import_references, parse_pycoral_csv
    from ..references.model import parse_setting
    from ..references.seeds import seed_references
    from ..store import open_store

    if not files and not seeds:
        raise FarmError("nothing to import: name one or more pycoral reference CSVs, or --seeds")
    if files and not board:
        raise FarmError("--board is required with a reference file: which board were these times measured on?")
    if delegate is not None and delegate not in ("cpu", "edgetpu"):
        raise FarmError(f"--delegate {delegate!r}: expected cpu or edgetpu")
    settings = dict(parse_setting(s) for s in setting or [])
    refs = [ref for path in files or [] for ref in parse_pycoral_csv(path, board or "", settings, delegate)]
    if seeds:
        refs += seed_references()
    store = open_store(db)
    try:
        added, replaced = import_references(store, refs)
    finally:
        store.close()
    console.print(f"{len(refs)} reference(s): {added} added, {replaced} replaced")


@reference_app.command("list")
def reference_list(board: Annotated[str | None, typer.Option("--board", help="Only this board")] = None,
                   db: DbOption = None) -> None:
    """List the stored references.

    Example: farm reference list --board raspberry-pi-4b
    """
    from ..references import list_references
    from ..store import open_store

    store = open_store(db)
    try:
        refs = list_references(store, board)
    finally:
        store.close()
    table = Table(title=f"{len(refs)} reference(s)")
    for column in ("board", "model", "delegate", "setting", "metric", "data set", "stat", "ms", "source"):
        table.add_column(column, justify="right" if column == "ms" else "left", overflow="fold")
    for ref in refs:
        table.add_row(ref.board, ref.model, ref.delegate, ref.setting_key or "-", ref.metric, ref.dataset or "-",
                      ref.stat, f"{ref.value_ms:.2f}", ref.source)
    console.print(table)


@reference_app.command("remove")
def reference_remove(source: Annotated[str | None, typer.Option("--source", help="Only references from this "
                                                                "file name (or 'SEEDS §1')")] = None,
                     board: Annotated[str | None, typer.Option("--board", help="Only this board")] = None,
                     db: DbOption = None) -> None:
    """Remove stored references (all of them when neither --source nor --board is given).

    Example: farm reference remove --source inference_reference_rp3b.csv
    """
    from ..references.stored import remove_references
    from ..store import open_store

    store = open_store(db)
    try:
        removed = remove_references(store, source, board)
    finally:
        store.close()
    console.print(f"{removed} reference(s) removed")
