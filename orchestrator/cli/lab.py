"""``farm lab``: the simulated lab's commands, which live in the separate ``farm_lab`` package.

The controller never imports ``farm_lab`` on its own path: the lab's commands are
loaded only when the command line runs ``farm lab`` (the ``farm`` group loads a command
when it runs, lazy.py; ``farm --help`` lists the lab from its table). When ``farm_lab``
is not installed, a stand-in is what ``farm lab`` runs, and it says how to get the lab.
"""

from __future__ import annotations

from typing import Any

import typer

from ..errors import FarmError
from ..own_packages import FARM_ROOT, bind_own_package

LAB_PACKAGE = "farm_lab"
LAB_INIT = FARM_ROOT / LAB_PACKAGE / "__init__.py"
HELP = ("A simulated lab of real OpenSSH servers on loopback addresses, each posing as a board "
        "(package farm_lab).\n\nExample: farm lab up --hosts 6")
MISSING = ("farm lab needs the simulated lab, the farm_lab package, which this installation lacks "
           "({reason}); install farm from its source tree (pip install -e .) to get it")


def lab_command() -> Any:
    """The click command ``farm lab`` runs: the lab's own commands, or the stand-in that says what is missing."""
    from .lazy import click_command

    lab_app = _lab_app()
    if lab_app is not None:
        return click_command("lab", lab_app)
    return click_command("lab", _lab_missing, help=HELP,
                         context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                           "help_option_names": []})


def _lab_app() -> typer.Typer | None:
    if not LAB_INIT.is_file():
        return None
    # By location, like farm's other packages: a user's own farm_lab/ folder must not be what `farm lab` runs.
    bind_own_package(LAB_PACKAGE)
    from farm_lab.cli import app as lab_app

    return lab_app


def _lab_missing() -> None:
    raise FarmError(MISSING.format(reason=f"no {LAB_INIT.parent}"))
