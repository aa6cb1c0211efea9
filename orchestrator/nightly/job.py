"""What a scheduled `farm nightly` runs: the installed farm command, and the settings of the shell that installed it.

A job cron or systemd starts at 02:30 has none of that shell's environment and may start anywhere, so
both are resolved at install time and written into the entry.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from ..errors import FarmError


def farm_executable() -> str:
    """The installed `farm` command, preferring the one of this interpreter's own install.

    Not `python -m orchestrator`: that imports whatever `orchestrator/` the job's working directory holds.
    """
    scripts = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts")),
               Path(sysconfig.get_path("scripts", f"{os.name}_user"))]
    for directory in scripts:
        candidate = directory / "farm"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.absolute())
    on_path = shutil.which("farm")
    if on_path is None:
        raise FarmError(f"no installed `farm` command beside {sys.executable} or on PATH for the schedule to run: "
                        "install farm (pip install .) and run `farm nightly install` with it")
    return str(Path(on_path).absolute())


def nightly_command(args: list[str]) -> list[str]:
    return [farm_executable(), "nightly", *args]


def nightly_environment(args: list[str]) -> dict[str, str]:
    """The settings the job needs from the installing shell, resolved now.

    The database URL and data directory are written even when they are defaults: the default data
    directory follows XDG_DATA_HOME, which the scheduler's environment may not set the same way. All
    of farm's own FARM_* settings come along (the local transport hands them to the agent too), and
    the ssh-agent socket when one is running, for SSH hosts whose key lives in the agent.
    """
    from ..store.db import DB_URL_ENV, data_dir, default_db_url

    environment = {name: value for name, value in sorted(os.environ.items()) if name.startswith("FARM_")}
    environment[DB_URL_ENV] = option_value(args, "--db") or default_db_url()
    environment["FARM_DATA_DIR"] = str(data_dir().absolute())
    if os.environ.get("SSH_AUTH_SOCK"):
        environment["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    return environment


def option_value(args: list[str], option: str) -> str | None:
    """The last value given to ``option`` (as `--opt VALUE` or `--opt=VALUE`), as the command line parser sees it."""
    value = None
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == option and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(option + "="):
            value = arg[len(option) + 1:]
    return value
