"""``farm lab``: the simulated lab's commands, which live in the separate ``farm_lab`` package.

The controller never imports ``farm_lab`` on its own path: the lab's commands are
loaded only when the command line asks for ``farm lab``. Elsewhere (``farm --help``)
a stand-in command is listed in its place; when ``farm_lab`` is not installed, the
stand-in is what ``farm lab`` runs, and it says how to get the lab.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from ..errors import FarmError
from ..own_packages import FARM_ROOT, bind_own_package

LAB_PACKAGE = "farm_lab"
LAB_INIT = FARM_ROOT / LAB_PACKAGE / "__init__.py"
HELP = ("A simulated lab of real OpenSSH servers on loopback addresses, each posing as a board "
        "(package farm_lab).\n\nExample: farm lab up --hosts 6")
MISSING = ("farm lab needs the simulated lab, the farm_lab package, which this installation lacks "
           "({reason}); install farm from its source tree (pip install -e .) to get it")


def register_lab(app: typer.Typer, argv: Sequence[str] | None = None) -> None:
    """Add ``farm lab`` to ``app``: the lab's own commands when ``argv`` runs them, else the stand-in."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Called again in one process (main() run twice): the new command line decides, not the first one's.
    app.registered_commands = [c for c in app.registered_commands if c.name != "lab"]
    app.registered_groups = [g for g in app.registered_groups if g.name != "lab"]
    if _command_of(args) == "lab":
        lab_app = _lab_app()
        if lab_app is not None:
            app.add_typer(lab_app, name="lab")
            return
    app.command("lab", help=HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                                    "help_option_names": []})(_lab_missing)


def _command_of(args: list[str]) -> str | None:
    """The subcommand ``args`` names: ``farm`` itself takes no options before it but --help."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def _lab_app() -> typer.Typer | None:
    if not LAB_INIT.is_file():
        return None
    # By location, like farm's other packages: a user's own farm_lab/ folder must not be what `farm lab` runs.
    bind_own_package(LAB_PACKAGE)
    from farm_lab.cli import app as lab_app

    return lab_app


def _lab_missing() -> None:
    if not LAB_INIT.is_file():
        raise FarmError(MISSING.format(reason=f"no {LAB_INIT.parent}"))
    # farm_lab is there, so register_lab was not told this command line ran the lab (an app called directly).
    raise FarmError("farm lab: the lab's commands were not loaded; run them as `farm lab ...` "
                    "(or `python -m farm_lab ...`)")
