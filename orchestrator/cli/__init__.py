"""The ``farm`` command line: one module per command group, registered on one app here.

Commands import what they run lazily, inside the command, so that ``farm --help`` stays fast and
a command's dependencies (pandas, scipy, paramiko) load only when it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import FarmError
from . import (
    baseline,
    compare,
    db,
    inventory,
    lab,
    models,
    nightly,
    reference,
    report,
    results,
    run,
    runs,
    sites,
    toolchain,
)
from .output import err_console

app = typer.Typer(
    help="farm: run edge-AI benchmark matrices on a farm of devices and keep every result.\n\n"
         "Example: farm run --matrix all   (this machine, default SQLite database)",
    no_args_is_help=True, pretty_exceptions_enable=False,
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
    from ..logsetup import configure

    configure(verbose, log_file)


# Registration order is the order `farm --help` lists them.
for name, command in (("toolchain", toolchain.toolchain), ("report", report.report), ("compare", compare.compare),
                      ("run", run.run), ("submit", sites.submit), ("serve", sites.serve), ("runs", runs.runs),
                      ("status", runs.status), ("results", results.results), ("query", results.query)):
    app.command(name)(command)
for name, group in (("db", db.db_app), ("inventory", inventory.inventory_app), ("models", models.models_app),
                    ("nightly", nightly.nightly_app), ("baseline", baseline.baseline_app),
                    ("reference", reference.reference_app)):
    app.add_typer(group, name=name)


def _store_or_os_error(exc: BaseException) -> bool:
    """An OSError, or a SQLAlchemy error: asked of sqlalchemy only if a command loaded it (`farm --help` never
    does, and importing it here would cost every short command SQLAlchemy's and alembic's start-up)."""
    if isinstance(exc, OSError):
        return True
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError)


def main() -> None:
    # `farm lab`: the separate farm_lab package, loaded only when the command line asks for it (see lab.py).
    lab.register_lab(app)
    try:
        try:
            app()
        except Exception as exc:  # what no command turned into a FarmError: still one paragraph
            if not _store_or_os_error(exc):
                raise
            from ..error_boundary import as_user_error

            raise as_user_error(exc) from exc
    except FarmError as exc:
        from ..exit_codes import for_exception

        # escape: "[web:vars]" or "www[01:50]" in a message is the user's text, not Rich markup
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(for_exception(exc))  # 2: the user's input; 4: the farm's infrastructure (exit_codes.py)


__all__ = ["app", "main"]
