"""Options more than one command takes, each defined once so that its name and help never drift apart.

"\\[" in help texts: typer reads them as Rich markup, where a bare "[default: ...]" is a tag and vanishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import FarmError

DbOption = Annotated[str | None, typer.Option(
    "--db", help="Database URL, e.g. sqlite:///farm.db or postgresql+psycopg://user@host/db "
                 "\\[default: $FARM_DB_URL, else SQLite in the user data dir]")]
InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", "-i", help="Inventory: farm YAML, or Ansible INI, YAML or --list JSON \\[default: this machine only]")]
MatrixFileOption = Annotated[Path | None, typer.Option("--matrix-file", help="YAML file of named matrices")]
AcceptNewHostKeysOption = Annotated[bool, typer.Option(
    "--accept-new-host-keys", help="Trust and remember SSH host keys never seen before")]
KnownHostsOption = Annotated[Path | None, typer.Option(
    "--known-hosts",
    help="known_hosts file for SSH hosts \\[default: the inventory's known_hosts, else ~/.ssh/known_hosts]")]

FORMATS = ("table", "csv", "json")
FormatOption = Annotated[str, typer.Option("--format", "-f", help="table, csv or json")]
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file")]

# What `farm results` and `farm report` select rows by: the fields of orchestrator.results.ResultFilter.
RunsOption = Annotated[list[int] | None, typer.Option("--run", help="These runs (repeatable)")]
HostsOption = Annotated[list[str] | None, typer.Option("--host", help="Only these hosts (repeatable)")]
ModelsOption = Annotated[list[str] | None, typer.Option("--model", help="Model names or families (repeatable)")]
DelegatesOption = Annotated[list[str] | None, typer.Option("--delegate", help="cpu or edgetpu (repeatable)")]
ThreadsOption = Annotated[list[int] | None, typer.Option("--threads", help="Thread counts (repeatable)")]
PowerModesOption = Annotated[list[str] | None, typer.Option(
    "--power-mode", help="Requested power modes, e.g. 5W (repeatable)")]
UsbSpeedsOption = Annotated[list[int] | None, typer.Option(
    "--usb-speed", help="USB speed in Mb/s: 480 (USB2), 5000 (USB3) (repeatable)")]
SinceOption = Annotated[str | None, typer.Option("--since", help="Runs started on or after, YYYY-MM-DD[THH:MM]")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="Runs started before (a bare date includes that day), YYYY-MM-DD[THH:MM]")]
RunTagsOption = Annotated[list[str] | None, typer.Option(
    "--tag", help="Runs with this tag (repeatable: all of them)")]


def check_format(output_format: str) -> None:
    if output_format not in FORMATS:
        raise FarmError(f"--format must be table, csv or json, not '{output_format}'")


def transport_options(accept_new_host_keys: bool, known_hosts: Path | None) -> dict:
    """What --accept-new-host-keys and --known-hosts mean to the SSH transport.

    Without --known-hosts each host's inventory names its file (its known_hosts field), else ~/.ssh/known_hosts.
    """
    options: dict = {"accept_new_host_keys": accept_new_host_keys}
    if known_hosts is not None:
        options["known_hosts"] = known_hosts
    return options
