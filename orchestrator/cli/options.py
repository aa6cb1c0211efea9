"""Options more than one command takes, each defined once so that its name and help never drift apart.

"\\[" in help texts: typer reads them as Rich markup, where a bare "[default: ...]" is a tag and vanishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import FarmError

if TYPE_CHECKING:
    from ..results import ResultFilter

DbOption = Annotated[str | None, typer.Option(
    "--db", help="Database URL, e.g. sqlite:///farm.db or postgresql+psycopg://user@host/db "
                 "\\[default: $FARM_DB_URL, else SQLite in the user data dir]")]
InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", "-i", help="Inventory: farm YAML, or Ansible INI, YAML or --list JSON \\[default: this machine only]")]
MatrixFileOption = Annotated[Path | None, typer.Option("--matrix-file", help="YAML file of named matrices")]
MatrixNameOption = Annotated[str, typer.Option("--matrix", "-m", help="Matrix name; 'all' needs no file")]
HostTagsOption = Annotated[list[str] | None, typer.Option("--tag", help="Only hosts with this tag (repeatable)")]
AcceptNewHostKeysOption = Annotated[bool, typer.Option(
    "--accept-new-host-keys", help="Trust and remember SSH host keys never seen before")]
KnownHostsOption = Annotated[Path | None, typer.Option(
    "--known-hosts",
    help="known_hosts file for SSH hosts \\[default: the inventory's known_hosts, else ~/.ssh/known_hosts]")]

WideOption = Annotated[bool, typer.Option(
    "--wide", help="Every column at full width, whatever the terminal's width (tables only)")]
ColumnsOption = Annotated[list[str] | None, typer.Option(
    "--columns", help="Exactly these columns, by v_results name, comma-separated or repeated: "
                      "--columns host,model,median_ms")]

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
NewRunLabelsOption = Annotated[list[str] | None, typer.Option(
    "--label", help="What this run measures, KEY=VALUE, stored with the run (repeatable): --label commit=3f2a9c1 "
                    "--label firmware=5.1; farm results/report/compare --label select by it")]
RunLabelsOption = Annotated[list[str] | None, typer.Option(
    "--label", help="Runs labelled KEY=VALUE by farm run --label, or KEY with any value (repeatable: all of them)")]


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


def result_filter(*, run_id: list[int] | None, since: str | None, until: str | None, tag: list[str] | None,
                  host: list[str] | None, model: list[str] | None, delegate: list[str] | None,
                  threads: list[int] | None, power_mode: list[str] | None, usb_speed: list[int] | None,
                  label: list[str] | None = None, **rest: object) -> ResultFilter:
    """The one ResultFilter the shared result options above describe; ``rest`` sets latest, status, ..."""
    from ..labels import parse_selectors
    from ..results import ResultFilter, parse_when  # pandas and the store only for commands that read results

    return ResultFilter(
        runs=tuple(run_id or ()), since=parse_when(since) if since else None,
        until=parse_when(until, end_of_day=True) if until else None, tags=tuple(tag or ()), hosts=tuple(host or ()),
        models=tuple(model or ()), delegates=tuple(delegate or ()), threads=tuple(threads or ()),
        power_modes=tuple(power_mode or ()), usb_speeds=tuple(usb_speed or ()), labels=parse_selectors(label),
        **rest)
