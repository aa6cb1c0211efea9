"""``farm lab``: start, stop and inspect the simulated lab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.errors import FarmError

from .boards import BOARDS, DEFAULT_BOARDS

app = typer.Typer(
    help="A simulated lab of real OpenSSH servers on loopback addresses, each posing as a board "
         "(Jetson Nano, Raspberry Pi, Coral Dev Board, x86 with USB accelerators).\n\n"
         "Example: farm lab up --hosts 6",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """One paragraph and exit status 1, the way ``farm`` itself reports errors, also when run on its own."""
    try:
        yield
    except FarmError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _say() -> Callable[[str], None]:
    return lambda line: console.print(line, highlight=False, soft_wrap=True)

# Help texts escape "\\[": typer reads them as Rich markup, where "[default: ...]" is a tag and would vanish.
DirOption = Annotated[Path | None, typer.Option(
    "--dir", help="The lab's directory (keys, configs, inventory) \\[default: the farm data dir / lab]")]


@app.command()
def up(
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=1, help="How many hosts the lab has")] = 6,
    directory: DirOption = None,
    boards: Annotated[list[str] | None, typer.Option(
        "--boards", help=f"Boards to assign round-robin, comma-separated or repeated; known: {', '.join(BOARDS)} "
                         f"\\[default: {','.join(DEFAULT_BOARDS)}]")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="SSH port of every host \\[default: 22 as root, else 2222]")] = None,
) -> None:
    """Start the lab (or grow or shrink it to --hosts) and write its inventory.

    Each host is a real sshd on its own loopback address (127.0.0.2, .3, ...)
    with a directory laid out like its board, and the Python and TFLite
    runtime its real twin would have. The first run prepares those Pythons
    (a minute or two); later runs reuse them. Hosts already up keep running;
    hosts beyond --hosts are stopped. The inventory's path is printed last.
    Needs openssh-server (apt-get install openssh-server).

    Example: farm lab up --hosts 6
             inv=$(farm lab up --hosts 6 | tail -n 1)
             farm inventory check -i "$inv" && farm run --matrix all -i "$inv"
             farm lab up -n 2 --boards jetson-nano,rpi4 --dir /tmp/lab --port 2222
             farm lab down
    """
    from .lab import Lab

    chosen = [b.strip() for value in boards or [] for b in value.split(",") if b.strip()] or None
    lab = Lab(directory)
    with _user_errors():
        inventory = lab.up(hosts, chosen, port, say=_say())
    console.print(f"Known hosts: {lab.known_hosts}   Shell: ssh -F {lab.ssh_config_path} "
                  f"{lab.hosts()[0].name}", highlight=False, soft_wrap=True)
    # The inventory names the lab's known_hosts itself (its defaults' known_hosts): no --known-hosts needed.
    console.print(f"Try: farm inventory check -i {inventory}", highlight=False, soft_wrap=True)
    # Last line, plain: scripts read it with `tail -n 1`.
    print(inventory)


@app.command()
def down(
    directory: DirOption = None,
    purge: Annotated[bool, typer.Option(
        "--purge", help="Also delete the lab's directory, device roots and host workdirs (Pythons stay cached)")]
        = False,
) -> None:
    """Stop every sshd of the lab, and the sessions and agents they serve.

    Example: farm lab down
             farm lab down --dir /tmp/lab --purge
    """
    from .lab import Lab

    lab = Lab(directory)
    if lab.state() is None:
        console.print(f"No lab in {lab.dir}.", highlight=False)
        return
    with _user_errors():
        stopped = lab.down(purge=purge)
    console.print(f"Stopped {len(stopped)} host(s)" + (f": {', '.join(stopped)}" if stopped else "")
                  + (f"; removed {lab.dir}" if purge else "") + ".", highlight=False, soft_wrap=True)


@app.command()
def status(directory: DirOption = None) -> None:
    """Show each host of the lab and whether its sshd is up; exits with 1 when any host is down.

    Example: farm lab status
             farm lab status --dir /tmp/lab
    """
    from .lab import Lab

    lab = Lab(directory)
    hosts = lab.status()
    if not hosts:
        console.print(f"No lab in {lab.dir}: start one with 'farm lab up --hosts 6'.", highlight=False)
        raise typer.Exit(1)
    table = Table(title=f"Lab in {lab.dir}")
    for column in ("host", "address", "python", "runtime", "state"):
        table.add_column(column, no_wrap=True)
    for entry in hosts:
        host = entry.host
        spec = BOARDS.get(host.board)
        state = "[green]up[/green]" if entry.up else "[red]down[/red]"
        table.add_row(host.name, f"{host.address}:{host.port}", spec.python if spec else "?",
                      spec.runtime.label.replace("-runtime", "") if spec and spec.runtime else "none", state)
    console.print(table)
    console.print(f"Inventory: {lab.inventory_path}\nKnown hosts: {lab.known_hosts}\n"
                  f"Pythons: {', '.join(sorted({h.host.python for h in hosts}))}", highlight=False, soft_wrap=True)
    if not all(entry.up for entry in hosts):
        raise typer.Exit(1)
