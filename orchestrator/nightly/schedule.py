"""Schedule `farm nightly` with the operating system's own tools: a systemd user timer or a crontab line.

farm runs no daemon of its own. Installing twice leaves one entry; uninstalling removes exactly what
install wrote (files carrying our marker, or crontab lines ending in it) and nothing else.

The entry runs the installed `farm` command, so the directory it starts in cannot change what runs,
and carries the settings of the shell that installed it: a job cron or systemd starts at 02:30 has
none of that shell's environment, and without them a nightly set up against PostgreSQL would write to
the default SQLite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..errors import FarmError
from .job import nightly_command, nightly_environment, option_value
from .quoting import (
    cron_assignment,
    cron_unescape,
    cron_word,
    systemd_environment,
    systemd_exec_word,
    systemd_path,
    systemd_words,
)

UNIT = "farm-nightly"
MARKER = "# farm-nightly: written by `farm nightly install`; remove with `farm nightly uninstall`"
CRON_TAG = "# farm-nightly"
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Schedule:
    kind: str  # systemd | cron
    at: str  # HH:MM
    where: str  # unit directory or "crontab of <user>"
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)


def parse_time(at: str) -> tuple[int, int]:
    match = TIME.match(at.strip())
    if not match:
        raise FarmError(f"--at '{at}' is not a time of day: expected HH:MM in 24-hour form, e.g. 02:30")
    return int(match.group(1)), int(match.group(2))


def systemd_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def systemd_units(at: str, command: list[str], workdir: Path,
                  environment: dict[str, str] | None = None) -> dict[str, str]:
    hour, minute = parse_time(at)
    service = "\n".join([
        MARKER,
        "[Unit]",
        "Description=farm nightly regression run",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={systemd_path(str(workdir))}",
        *(systemd_environment(name, value) for name, value in (environment or {}).items()),
        "ExecStart=" + " ".join(systemd_exec_word(part) for part in command),
        "",
    ])
    timer = "\n".join([
        MARKER,
        "[Unit]",
        "Description=Run farm nightly every day",
        "",
        "[Timer]",
        f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00",
        # A machine that was off at that hour runs the missed job when it comes back.
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def cron_line(at: str, command: list[str], workdir: Path, log: Path, environment: dict[str, str] | None = None) -> str:
    hour, minute = parse_time(at)
    assignments = [cron_assignment(name, value) for name, value in (environment or {}).items()]
    words = [cron_word(part, "the nightly command's argument") for part in command]
    shell = " ".join([f"cd {cron_word(str(workdir), 'the working directory')} &&", *assignments, *words,
                      f">> {cron_word(str(log), 'the log file')} 2>&1"])
    return f"{minute} {hour} * * * {shell} {CRON_TAG}"


def parse_cron_line(line: str) -> Schedule:
    """Read back a line cron_line wrote (or an older farm's, which had no assignments)."""
    minute, hour, _day, _month, _weekday, command = line.split(None, 5)
    words = shlex.split(cron_unescape(command.rstrip().removesuffix(CRON_TAG)))
    words = words[words.index("&&") + 1:] if "&&" in words else words
    words = words[:words.index(">>")] if ">>" in words else words
    environment = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        name, value = words.pop(0).split("=", 1)
        environment[name] = value
    return Schedule("cron", f"{int(hour):02d}:{int(minute):02d}", "crontab", words, environment)


def _crontab() -> str:
    path = shutil.which("crontab")
    if path is None:
        raise FarmError("`crontab` is not installed: install cron (Debian: apt-get install cron), "
                        "or use --systemd")
    return path


def read_crontab() -> list[str]:
    done = subprocess.run([_crontab(), "-l"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if "no crontab" in done.stderr:
            return []
        raise FarmError(f"`crontab -l` failed: {done.stderr.strip()}")
    return done.stdout.splitlines()


def write_crontab(lines: list[str]) -> None:
    text = "\n".join(lines) + ("\n" if lines else "")
    done = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FarmError(f"`crontab -` refused the new table: {done.stderr.strip()}")


def install_cron(at: str, args: list[str], workdir: Path, log: Path,
                 environment: dict[str, str] | None = None) -> Schedule:
    command = nightly_command(args)
    environment = nightly_environment(args) if environment is None else environment
    line = cron_line(at, command, workdir, log, environment)
    kept = [existing for existing in read_crontab() if not existing.rstrip().endswith(CRON_TAG)]
    write_crontab([*kept, line])
    return Schedule("cron", at, "crontab", command, environment)


def uninstall_cron() -> int:
    lines = read_crontab()
    kept = [line for line in lines if not line.rstrip().endswith(CRON_TAG)]
    if len(kept) != len(lines):
        write_crontab(kept)
    return len(lines) - len(kept)


def install_systemd(at: str, args: list[str], workdir: Path,
                    environment: dict[str, str] | None = None) -> tuple[Schedule, str]:
    command = nightly_command(args)
    environment = nightly_environment(args) if environment is None else environment
    directory = systemd_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in systemd_units(at, command, workdir, environment).items():
        path = directory / name
        if path.exists() and MARKER not in path.read_text():
            raise FarmError(f"{path} exists and was not written by farm: refusing to overwrite it")
        temporary = path.with_suffix(path.suffix + ".tmp")
        # Owner-only: the database URL may carry a password.
        temporary.touch(mode=0o600)
        temporary.chmod(0o600)
        temporary.write_text(text)
        os.replace(temporary, path)
    return (Schedule("systemd", at, str(directory), command, environment),
            _systemctl("daemon-reload", "enable", "--now"))


def uninstall_systemd() -> int:
    _systemctl("disable", "--now")
    removed = 0
    for name in (f"{UNIT}.timer", f"{UNIT}.service"):
        path = systemd_dir() / name
        if path.exists() and MARKER in path.read_text():
            path.unlink()
            removed += 1
    return removed


def _systemctl(*actions: str) -> str:
    """Enable or disable the timer when a user manager is reachable; otherwise say what to run."""
    systemctl = shutil.which("systemctl")
    steps = []
    if "daemon-reload" in actions:
        steps.append(["daemon-reload"])
    verb = [a for a in actions if a in ("enable", "disable")]
    if verb:
        steps.append([verb[0], "--now", f"{UNIT}.timer"])
    manual = "; ".join("systemctl --user " + " ".join(step) for step in steps)
    if systemctl is None:
        return f"systemctl not found: run `{manual}` on a machine with systemd"
    for step in steps:
        done = subprocess.run([systemctl, "--user", *step], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return (f"the systemd user manager did not answer ({done.stderr.strip() or done.returncode}): "
                    f"in a login session run `{manual}`, and `loginctl enable-linger $USER` so the timer "
                    "also fires while you are logged out")
    return "systemd user timer " + ("enabled" if "enable" in actions else "disabled")


def installed() -> list[Schedule]:
    found = []
    timer = systemd_dir() / f"{UNIT}.timer"
    service = systemd_dir() / f"{UNIT}.service"
    if timer.exists() and MARKER in timer.read_text():
        at = re.search(r"OnCalendar=\*-\*-\* (\d\d:\d\d)", timer.read_text())
        text = service.read_text() if service.exists() else ""
        exec_line = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
        command = systemd_words(exec_line.group(1), exec_line=True) if exec_line else []
        environment = dict(word.split("=", 1) for line in re.findall(r"^Environment=(.*)$", text, re.MULTILINE)
                           for word in systemd_words(line, exec_line=False) if "=" in word)
        found.append(Schedule("systemd", at.group(1) if at else "?", str(systemd_dir()), command, environment))
    if shutil.which("crontab"):
        found.extend(parse_cron_line(line) for line in read_crontab() if line.rstrip().endswith(CRON_TAG))
    return found


def recorded_db_url(entries: list[Schedule]) -> str | None:
    return next((e.environment["FARM_DB_URL"] for e in entries if "FARM_DB_URL" in e.environment), None)


def describe(entry: Schedule) -> list[str]:
    """What `farm nightly status` shows of an entry: the command and the settings it runs with."""
    from ..store.db import safe_url

    lines = [f"runs: {shlex.join(entry.command)}"]
    for name, value in entry.environment.items():
        shown = safe_url(value) if name == "FARM_DB_URL" else value
        if name == "SSH_AUTH_SOCK" and not Path(value).exists():
            shown += " (gone: that ssh-agent has ended; install again from a session whose agent outlives it)"
        lines.append(f"{name}={shown}")
    if "FARM_DB_URL" not in entry.environment:
        lines.append("FARM_DB_URL not recorded: the job uses its --db, else the default SQLite (install again to "
                     "record the database)")
    known_hosts = option_value(entry.command, "--known-hosts")
    lines.append(f"known_hosts: {known_hosts}" if known_hosts else
                 "known_hosts: the inventory's known_hosts field, else ~/.ssh/known_hosts (pass --known-hosts to choose)")
    return lines


def next_run(at: str, now: datetime) -> datetime:
    hour, minute = parse_time(at)
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)
