"""`farm toolchain`: compiler, runtime and OS versions per host, and every change since the last probe."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..exit_codes import INFRASTRUCTURE
from .options import AcceptNewHostKeysOption, DbOption, InventoryOption, KnownHostsOption, transport_options
from .output import console


def toolchain(
    inventory: InventoryOption = None,
    compiler: Annotated[str | None, typer.Option("--compiler", help="edgetpu_compiler to ask for its version "
                                                 "\\[default: $FARM_EDGETPU_COMPILER, else PATH]")] = None,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
    db: DbOption = None,
) -> None:
    """List toolchain versions per host and on the controller (edgetpu_compiler, libedgetpu, TFLite runtime,
    pycoral, L4T/JetPack, kernel) and record every change since the last probe as an event.

    Example: farm toolchain --inventory lab.yaml --known-hosts ~/.ssh/farm_known_hosts
    """
    from .. import toolchain as tc
    from ..inventory import load_inventory
    from ..store import open_store

    hosts = list(load_inventory(inventory).hosts)
    store = open_store(db)
    try:
        probe = tc.probe_and_record(store, hosts, transport_options(accept_new_host_keys, known_hosts),
                                    compiler)
    finally:
        store.close()
    changed = {(c["host"], c["component"]): c for c in probe.changes}
    table = Table(title="Toolchain")
    for column in ("host", "component", "version", "change"):
        table.add_column(column)
    for result in probe.hosts:
        if result.error:
            table.add_row(result.host, "", "[red]unreachable[/red]", result.error[:100])
            continue
        for component in tc.COMPONENTS:
            change = changed.get((result.host, component))
            table.add_row(result.host, component, result.versions.get(component) or "-",
                          f"[bold yellow]was {change['old'] or 'absent'}[/bold yellow]" if change else "")
    console.print(table)
    if probe.changes:
        console.print(f"{len(probe.changes)} change(s) recorded as toolchain events.")
    else:
        console.print("No toolchain change since the last probe.")
    if any(result.error for result in probe.hosts):
        raise typer.Exit(INFRASTRUCTURE)  # a host could not be probed
