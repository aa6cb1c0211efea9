"""`farm inventory`: validate or convert an inventory, and reach its hosts to read their facts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..exit_codes import INFRASTRUCTURE
from .options import AcceptNewHostKeysOption, DbOption, InventoryOption, KnownHostsOption, transport_options
from .output import console

inventory_app = typer.Typer(help="Inspect inventories of hosts.", no_args_is_help=True)


@inventory_app.command("show")
def inventory_show(inventory: InventoryOption = None) -> None:
    """Validate an inventory and list its hosts.

    Example: farm inventory show --inventory inventory/example.yaml
    """
    from ..inventory import load_inventory

    inv = load_inventory(inventory)
    table = Table(title=f"{inv.path} ({inv.kind})")
    for column in ("name", "transport", "address", "port", "user", "board", "python", "tags"):
        table.add_column(column)
    for h in inv.hosts:
        table.add_row(h.name, h.transport, h.address, str(h.port), h.user or "", h.board or "", h.python,
                      ", ".join(h.tags))
    console.print(table)


@inventory_app.command("convert")
def inventory_convert(
    inventory: InventoryOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write \\[default: print it]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output file if it exists")] = False,
) -> None:
    """Write an inventory (an Ansible INI, YAML or --list JSON one) as farm YAML.

    Example: farm inventory convert -i hosts.ini -o farm.yaml
    """
    from ..inventory import load_inventory
    from ..inventory_writer import farm_yaml, save

    inv = load_inventory(inventory)
    text = farm_yaml(inv)
    if output is None:
        typer.echo(text, nl=False)
        return
    save(text, output, force=force)
    console.print(f"Wrote {len(inv.hosts)} host(s) from {inv.path} ({inv.kind}) to {output}.")


@inventory_app.command("check")
def inventory_check(
    inventory: InventoryOption = None,
    db: DbOption = None,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
) -> None:
    """Reach every host at once, deploy the agent, store and show its facts.

    Shows per host: reachable or why not, board, OS, Python, TFLite
    runtime and version, CPUs, its GPU (CUDA cores, current/maximum clock,
    GPU rail power), the agent (uploaded; started; or lingering: still
    running from an earlier check, reached without starting Python), and
    what the host says that contradicts the inventory.

    After a check the agent stays for 15 minutes (the inventory's
    agent_linger, or FARM_AGENT_LINGER, in seconds; 0: never), and a
    background process of yours, the SSH keeper, keeps each host's SSH
    connection for the next check, as OpenSSH's ControlPersist does
    (FARM_SSH_KEEPER=0: off). Exits with 1 if a host is unreachable.
    Unknown SSH host keys are refused until you check them and pass
    --accept-new-host-keys once.

    Example: farm inventory check -i lab.yaml
             farm inventory check -i "$(farm lab up --hosts 6 | tail -n 1)"
             farm inventory check -i lab.yaml --accept-new-host-keys
             farm inventory check -i lab.yaml --known-hosts ~/.ssh/farm_known_hosts
    """
    from ..facts_check import check_hosts
    from ..inventory import load_inventory
    from ..store import open_store

    inv = load_inventory(inventory)
    store = open_store(db)
    try:
        with console.status(f"checking {len(inv.hosts)} host(s)"):
            checks = check_hosts(list(inv.hosts), transport_options(accept_new_host_keys, known_hosts),
                                 store)
    finally:
        store.close()
    table = Table(title=f"{inv.path} ({inv.kind})")
    from ..facts_check import gpu_text

    for column in ("host", "reachable", "board", "OS", "Python", "runtime", "CPUs", "GPU", "agent", "notes"):
        table.add_column(column)
    for check in checks:
        facts = check.facts
        runtime = facts.get("runtime") or {}
        runtime_text = f"{runtime.get('name')} {runtime.get('version')}" if runtime.get("name") else "[red]none[/red]"
        if check.reachable:
            table.add_row(check.host.name, "yes", facts.get("board") or f"({check.host.board or '?'})",
                          facts.get("os") or "", (facts.get("python") or {}).get("version", ""), runtime_text,
                          str(facts.get("cpu_count", "")), gpu_text(facts),
                          "uploaded" if check.uploaded_agent else "lingering" if check.lingering else "started",
                          "; ".join(check.contradictions))
        else:
            table.add_row(check.host.name, "[red]no[/red]", check.host.board or "", "", "", "", "", "", "",
                          check.error or "")
    console.print(table)
    down = [c for c in checks if not c.reachable]
    console.print(f"{len(checks) - len(down)} of {len(checks)} host(s) reachable.")
    if down:
        raise typer.Exit(INFRASTRUCTURE)  # hosts unreachable: the farm, not the command line, is at fault
