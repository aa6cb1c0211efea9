"""Schedule `farm nightly` with the operating system's own tools: a systemd user timer or a crontab line.

farm runs no daemon of its own. Installing twice leaves one entry; uninstalling removes exactly what
install wrote (files carrying our marker, or crontab lines ending in it) and nothing else.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ..errors import FarmError

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


def parse_time(at: str) -> tuple[int, int]:
    match = TIME.match(at.strip())
    if not match:
        raise FarmError(f"--at '{at}' is not a time of day: expected HH:MM in 24-hour form, e.g. 02:30")
    return int(match.group(1)), int(match.group(2))


def nightly_command(args: list[str]) -> list[str]:
    """The command the scheduler runs: this interpreter, so the job finds the same install of farm."""
    return [sys.executable, "-m", "orchestrator", "nightly", *args]


def systemd_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _systemd_quote(arg: str) -> str:
    # systemd splits ExecStart like a shell but expands % specifiers and $ variables itself.
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_units(at: str, command: list[str], workdir: Path) -> dict[str, str]:
    hour, minute = parse_time(at)
    service = "\n".join([
        MARKER,
        "[Unit]",
        "Description=farm nightly regression run",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={workdir}",
        "ExecStart=" + " ".join(_systemd_quote(part) for part in command),
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


def cron_line(at: str, command: list[str], workdir: Path, log: Path) -> str:
    hour, minute = parse_time(at)
    shell = f"cd {shlex.quote(str(workdir))} && {shlex.join(command)} >> {shlex.quote(str(log))} 2>&1"
    return f"{minute} {hour} * * * {shell} {CRON_TAG}"


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


def install_cron(at: str, args: list[str], workdir: Path, log: Path) -> Schedule:
    command = nightly_command(args)
    kept = [line for line in read_crontab() if not line.rstrip().endswith(CRON_TAG)]
    write_crontab([*kept, cron_line(at, command, workdir, log)])
    return Schedule("cron", at, "crontab", command)


def uninstall_cron() -> int:
    lines = read_crontab()
    kept = [line for line in lines if not line.rstrip().endswith(CRON_TAG)]
    if len(kept) != len(lines):
        write_crontab(kept)
    return len(lines) - len(kept)


def install_systemd(at: str, args: list[str], workdir: Path) -> tuple[Schedule, str]:
    command = nightly_command(args)
    directory = systemd_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in systemd_units(at, command, workdir).items():
        path = directory / name
        if path.exists() and MARKER not in path.read_text():
            raise FarmError(f"{path} exists and was not written by farm: refusing to overwrite it")
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
    return Schedule("systemd", at, str(directory), command), _systemctl("daemon-reload", "enable", "--now")


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
        exec_line = re.search(r"^ExecStart=(.*)$", service.read_text(), re.MULTILINE) if service.exists() else None
        command = [part.replace("%%", "%").replace("$$", "$") for part in shlex.split(exec_line.group(1))] \
            if exec_line else []
        found.append(Schedule("systemd", at.group(1) if at else "?", str(systemd_dir()), command))
    if shutil.which("crontab"):
        for line in read_crontab():
            if line.rstrip().endswith(CRON_TAG):
                minute, hour = line.split()[:2]
                found.append(Schedule("cron", f"{int(hour):02d}:{int(minute):02d}", "crontab", shlex.split(line)[5:]))
    return found


def next_run(at: str, now: datetime) -> datetime:
    hour, minute = parse_time(at)
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)
