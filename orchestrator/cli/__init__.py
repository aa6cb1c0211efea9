"""The ``farm`` command line: one module per command group, named here and loaded when it runs (lazy.py).

Commands import what they run lazily, inside the command, so that ``farm --help`` stays fast and
a command's dependencies (pandas, scipy, paramiko) load only when it runs; this module imports none of
the command modules, so ``farm results`` does not pay for ``farm report``'s imports either.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FarmError
from .lazy import Entry, LazyGroup

# The order `farm --help` lists them in. Each help is the first paragraph of the command's own help
# (tests/test_cli_imports.py holds them to it), so listing the commands loads none of them.
COMMANDS = {
    "toolchain": Entry("toolchain", "toolchain", "List toolchain versions per host and on the controller "
                       "(edgetpu_compiler, libedgetpu, TFLite runtime, pycoral, L4T/JetPack, kernel) and record "
                       "every change since the last probe as an event."),
    "report": Entry("report", "report", "Build the seeds' tables and plots from stored results: latency (median, "
                    "p90), thread sweep, Edge TPU speed-up over CPU, achieved GOPS/TOPS, the compiler report, "
                    "published references beside the results, and latency-vs-layers and thread-sweep charts with "
                    "error bars."),
    "compare": Entry("compare", "compare", "Two runs side by side, cell by cell: medians, ratio B/A, and whether "
                     "the change is beyond noise."),
    "run": Entry("run", "run", "Run a benchmark matrix on the inventory's hosts and store every result."),
    "submit": Entry("sites", "submit", "Store a run and its jobs for `farm serve` controllers to share, and return "
                    "(needs PostgreSQL)."),
    "serve": Entry("sites", "serve", "Serve submitted runs: claim the queued jobs of the hosts this inventory "
                   "reaches and run them."),
    "runs": Entry("runs", "runs", "List the newest runs: status, shared (submitted for `farm serve`) or not, jobs "
                  "by status and site."),
    "status": Entry("runs", "status", "One run's jobs per site and controller, with claim ages, lease left and "
                    "each controller's heartbeat."),
    "results": Entry("results", "results", "Show or export stored results, one row per job with its context."),
    "query": Entry("results", "query", "Run read-only SQL on the store (try the v_results view); writes are "
                   "refused."),
    # `farm lab`: the separate farm_lab package's commands, or a stand-in saying how to get them (see lab.py).
    "lab": Entry("lab", "lab_command", "A simulated lab of real OpenSSH servers on loopback addresses, each posing "
                 "as a board (package farm_lab).", factory=True),
    "db": Entry("db", "db_app", "Manage the results database."),
    "inventory": Entry("inventory", "inventory_app", "Inspect inventories of hosts."),
    "models": Entry("models", "models_app", "Register, build, inspect, check and compile models."),
    "nightly": Entry("nightly", "nightly_app", "Nightly regression runs: probe toolchains, run the `nightly` "
                     "matrix in trials, judge every cell against its baseline."),
    "baseline": Entry("baseline", "baseline_app", "Accept and list the baselines nightly runs compare against."),
    "reference": Entry("reference", "reference_app", "Import and list published reference times that `farm "
                       "report` shows beside results."),
}


class FarmGroup(LazyGroup):
    table = COMMANDS


app = typer.Typer(
    help="farm: run edge-AI benchmark matrices on a farm of devices and keep every result.\n\n"
         "Example: farm run --matrix all   (this machine, default SQLite database)",
    cls=FarmGroup, no_args_is_help=True, pretty_exceptions_enable=False,
    # typer's own completion: `farm --install-completion` (bash, zsh, fish, PowerShell), `--show-completion`.
    add_completion=True,
)


def _print_version(asked: bool) -> None:
    if asked:
        from .. import __version__

        print(f"farm {__version__}")
        raise typer.Exit()


@app.callback(epilog="Exit codes: 0 ok, 1 regression or failed job, 2 usage or input error, 3 incomplete run "
                      "(farm run --resume), 4 infrastructure (host unreachable, database lost, disk full).")
def _farm(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print farm's version and exit")] = False,
          verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                               help="Log to stderr: -v what farm and SSH do, -vv everything "
                                                    "(paramiko's protocol log); secrets are redacted")] = 0,
          log_file: Annotated[Path | None, typer.Option(
              "--log-file", help="Append the full debug log (farm's and paramiko's, secrets redacted) to this "
                                 "file")] = None) -> None:
    if verbose or log_file is not None:  # else there is nothing to configure, and no need to import it
        from ..logsetup import configure

        configure(verbose, log_file)


def _store_or_os_error(exc: BaseException) -> bool:
    """An OSError, or a SQLAlchemy error: asked of sqlalchemy only if a command loaded it (`farm --help` never
    does, and importing it here would cost every short command SQLAlchemy's and alembic's start-up)."""
    if isinstance(exc, OSError):
        return True
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError)


def main() -> None:
    try:
        try:
            app()
        except Exception as exc:  # what no command turned into a FarmError: still one paragraph
            if not _store_or_os_error(exc):
                raise
            from ..error_boundary import as_user_error

            raise as_user_error(exc) from exc
    except FarmError as exc:
        from rich.markup import escape

        from ..exit_codes import for_exception
        from .output import err_console

        # escape: "[web:vars]" or "www[01:50]" in a message is the user's text, not Rich markup
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(for_exception(exc))  # 2: the user's input; 4: the farm's infrastructure (exit_codes.py)


__all__ = ["app", "main"]
