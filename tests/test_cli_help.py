"""The help of the commands a new user of a lab runs first teaches: examples, and every default it names.

Typer reads help texts as Rich markup, where a bare ``[default: ...]`` is a tag that silently
vanishes; these tests read the help as the user sees it, from the installed ``farm`` command.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer

from farm_lab.cli import app as lab_app
from orchestrator.cli import app

COMMANDS = [("lab", "up"), ("lab", "down"), ("lab", "status"), ("inventory", "check"), ("run",)]
# Every command with options: none may lose the "[default: ...]" its help names.
EVERY_COMMAND = [*COMMANDS, ("results",), ("query",), ("db", "upgrade"), ("toolchain",), ("report",), ("compare",),
                 ("nightly",), ("nightly", "install"), ("baseline", "accept"), ("baseline", "show"),
                 ("models", "list"), ("models", "build"), ("models", "add"), ("models", "show"), ("models", "check"),
                 ("models", "compile"), ("inventory", "convert"), ("submit",), ("serve",), ("runs",), ("status",)]


@functools.cache  # the commands of COMMANDS are read by two tests: one process each, not two
def shown_help(*command: str) -> str:
    """What `farm COMMAND --help` prints, on a terminal wide enough that nothing wraps, boxes removed."""
    done = subprocess.run([sys.executable, "-m", "orchestrator", *command, "--help"], capture_output=True,
                          text=True, check=False, timeout=60, env={**os.environ, "COLUMNS": "400"})
    assert done.returncode == 0, done.stderr
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", done.stdout).split())


def click_command(*command: str) -> Any:
    """The command object typer builds (its own vendored click's), to read the options' help texts."""
    path = list(command)
    group = typer.main.get_command(app)
    if path[0] == "lab":  # registered by farm's main() only, so that the lab stays optional
        group, path = typer.main.get_command(lab_app), path[1:]
    for name in path:
        group = group.commands[name]
    return group


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_examples(command: tuple[str, ...]) -> None:
    text = shown_help(*command)
    assert f"Example: farm {' '.join(command)}" in text, text


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_help_shows_every_default_its_options_name(command: tuple[str, ...]) -> None:
    text = shown_help(*command)
    named = [param for param in click_command(*command).params
             if param.param_type_name == "option" and "[default:" in (param.help or "")]
    if command in COMMANDS:
        assert named or command[0] == "lab" and command[1] != "up", "these commands name defaults in their help"
    for param in named:
        phrase = " ".join(re.search(r"\[default:([^]]*)\]", param.help).group(1).split())
        assert f"[default: {phrase}]" in text, (param.name, phrase)


def test_lab_up_help_walks_through_the_first_session() -> None:
    text = shown_help("lab", "up")
    for step in ("farm inventory check", "farm run --matrix all", "farm lab down", "tail -n 1", "openssh-server"):
        assert step in text, step


def test_farm_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    import orchestrator

    done = subprocess.run([sys.executable, "-m", "orchestrator", "--version"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"farm {orchestrator.__version__}"
    assert version("farm") == orchestrator.__version__  # pyproject takes its version from the package
