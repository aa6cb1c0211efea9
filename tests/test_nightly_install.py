"""`farm nightly install`: the entry runs the installed farm with the installing shell's settings, every word intact.

cron's own pass over a command line is reproduced here from its source (cronie/Vixie cron do_command.c);
the shell pass is the real /bin/sh, run with the bare environment cron gives a job.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import FarmError
from orchestrator.nightly import job, schedule
from orchestrator.store.db import open_store
from orchestrator.store.schema import NightlyRow
from tests.conftest import REPO
from tests.test_nightly_parts import crontab_saved  # noqa: F401 - the fixture, shared

# Words a user may well pass: cron's `%`, a backslash right before one, shell metacharacters, quotes.
TRICKY = ["100%", "%d %% %", "a\\%b", "two\\\\%c", "trailing\\", "it's \"quoted\"", "$HOME `id` $(id)",
          "#not a comment", "", "--db=sqlite:////tmp/x%2Fy.db"]
ECHO_ARGS = ("import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
             "'env': {k: v for k, v in os.environ.items() if k.startswith(('FARM_', 'SSH_'))}}))")


def as_cron_runs_it(line: str) -> tuple[str, str]:
    """(the text cron hands to the shell, what it feeds on standard input) for one crontab line."""
    command = line.split(None, 5)[5]
    shell, escaped = [], False
    for index, char in enumerate(command):
        if escaped:
            if char == "%":
                shell[-1] = "%"
            else:
                shell.append(char)
            escaped = False
            continue
        if char == "%":
            return "".join(shell), command[index + 1:].replace("%", "\n")
        shell.append(char)
        escaped = char == "\\"
    return "".join(shell), ""


def run_like_cron(line: str, home: Path) -> subprocess.CompletedProcess:
    shell, stdin = as_cron_runs_it(line)
    assert stdin == "", f"cron would cut the command at an unescaped %: {shell!r}"
    bare = {"HOME": str(home), "LOGNAME": "root", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    return subprocess.run(["/bin/sh", "-c", shell], env=bare, cwd="/", stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_word_and_setting_reaches_the_job_as_given(tmp_path: Path) -> None:
    workdir = tmp_path / "work 50% \\ dir"
    workdir.mkdir()
    log = tmp_path / "log %s.txt"
    environment = {"FARM_DB_URL": "postgresql+psycopg://u@127.0.0.1/test?options=-csearch_path%3Dfarm",
                   "FARM_DATA_DIR": str(tmp_path / "data 100%"), "SSH_AUTH_SOCK": str(tmp_path / "agent $SOCK\\%")}
    line = schedule.cron_line("02:30", [sys.executable, "-c", ECHO_ARGS, *TRICKY], workdir, log, environment)
    assert "\n" not in line and line.startswith("30 2 * * * ")

    done = run_like_cron(line, tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(log.read_text())
    assert seen == {"argv": TRICKY, "cwd": str(workdir), "env": environment}


@pytest.mark.parametrize("where", ["argument", "setting"])
def test_a_newline_is_refused_not_turned_into_a_crontab_line(where: str, tmp_path: Path) -> None:
    args, environment = (["--junit", "n.xml\n* * * * * rm -rf ~"], {}) if where == "argument" \
        else ([], {"FARM_DB_URL": "sqlite:///a.db\n* * * * * true"})
    with pytest.raises(FarmError, match="holds a newline, which a crontab line cannot carry"):
        schedule.cron_line("02:30", ["farm", "nightly", *args], tmp_path, tmp_path / "log", environment)


def test_install_refuses_a_newline_and_leaves_the_crontab_alone(crontab_saved, tmp_path: Path) -> None:  # noqa: F811
    schedule.write_crontab(["5 4 * * * /usr/bin/true"])
    with pytest.raises(FarmError, match="newline"):
        schedule.install_cron("02:30", ["--junit", "a\nb"], tmp_path, tmp_path / "log")
    assert schedule.read_crontab() == ["5 4 * * * /usr/bin/true"]


def test_cron_entry_records_the_database_and_status_reads_it(crontab_saved, pg_url: str, tmp_path: Path,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(pg_url)
    with store.session() as session, session.begin():
        session.add(NightlyRow(matrix="nightly", status="finished", exit_code=0, message="seeded in PostgreSQL"))
    store.close()
    socket_path = tmp_path / "ssh-agent.sock"
    monkeypatch.setenv("FARM_DB_URL", pg_url)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))

    entry = schedule.install_cron("03:15", ["--known-hosts", "/srv/farm/known_hosts"], tmp_path, tmp_path / "log")
    [installed] = [e for e in schedule.installed() if e.kind == "cron"]
    assert installed.command == entry.command == [job.farm_executable(), "nightly", "--known-hosts",
                                                  "/srv/farm/known_hosts"]
    recorded = {"FARM_DATA_DIR": os.environ["FARM_DATA_DIR"], "FARM_DB_URL": pg_url, "SSH_AUTH_SOCK": str(socket_path)}
    assert installed.environment == entry.environment
    assert {name: installed.environment.get(name) for name in recorded} == recorded

    # Status in a shell with none of those settings still shows them, and the runs of the recorded database.
    shell_env = {k: v for k, v in os.environ.items() if k not in ("FARM_DB_URL", "SSH_AUTH_SOCK")}
    done = subprocess.run([sys.executable, "-m", "orchestrator", "nightly", "status"], cwd=REPO, env={
        **shell_env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "cron: every day at 03:15" in done.stdout
    assert f"runs: {job.farm_executable()} nightly --known-hosts /srv/farm/known_hosts" in done.stdout
    assert f"FARM_DB_URL={pg_url}" in done.stdout
    assert f"SSH_AUTH_SOCK={socket_path} (gone" in done.stdout  # no agent listens there
    assert "known_hosts: /srv/farm/known_hosts" in done.stdout
    assert "seeded in PostgreSQL" in done.stdout


def test_the_job_runs_the_installed_farm_whatever_its_directory_holds(tmp_path: Path, isolated_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        farm = job.farm_executable()
    except FarmError as exc:
        pytest.skip(str(exc))
    workdir = tmp_path / "project"
    marker = tmp_path / "decoy ran"
    for name in ("orchestrator/__init__.py", "orchestrator/__main__.py", "agent/__init__.py"):
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit(3)\n")
    database = tmp_path / "nightly 100% here.db"
    monkeypatch.setenv("FARM_DB_URL", f"sqlite:///{database}")

    environment = job.nightly_environment(["status"])
    command = job.nightly_command(["status"])
    assert command[0] == farm
    log = tmp_path / "nightly.log"
    done = run_like_cron(schedule.cron_line("02:30", command, workdir, log, environment), isolated_home)
    assert done.returncode == 0, log.read_text()
    assert "Last nightly runs" in log.read_text()
    assert not marker.exists()
    with sqlite3.connect(database) as connection:  # created by the job, at the recorded URL
        assert connection.execute("SELECT count(*) FROM nightly_runs").fetchone() == (0,)


def test_systemd_unit_records_the_settings_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    environment = {"FARM_DB_URL": 'postgresql+psycopg://u:s3cr%3Dt@db/farm?options=-csearch_path%3D"x"\\y',
                   "FARM_DATA_DIR": str(tmp_path / "data $HOME %h"), "SSH_AUTH_SOCK": "/run/user/0/ssh\tagent"}
    args = ["--junit", "line one\nline two", "100% $HOME", 'quote" back\\slash']
    entry, _note = schedule.install_systemd("02:30", args, tmp_path / "work %i", environment)
    service = schedule.systemd_dir() / "farm-nightly.service"
    assert stat.S_IMODE(service.stat().st_mode) == 0o600  # the URL may hold a password
    text = service.read_text()
    assert "WorkingDirectory=" + str(tmp_path / "work %%i") in text
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", str(service), str(service.with_suffix(".timer"))],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert str(service) not in done.stderr  # systemd warns, and drops the setting, at a bad specifier or escape
    [installed] = [e for e in schedule.installed() if e.kind == "systemd"]
    assert installed.command == entry.command == [job.farm_executable(), "nightly", *args]
    assert installed.environment == environment
    shown = "\n".join(schedule.describe(installed))
    assert "FARM_DB_URL=postgresql+psycopg://u:***@db/farm" in shown and "s3cr" not in shown


def test_an_entry_from_before_settings_were_recorded_says_so(tmp_path: Path) -> None:
    old = ("30 2 * * * cd /srv/farm && /usr/bin/python3 -m orchestrator nightly --junit /srv/n.xml "
           f">> /var/log/farm.log 2>&1 {schedule.CRON_TAG}")
    entry = schedule.parse_cron_line(old)
    assert entry.command == ["/usr/bin/python3", "-m", "orchestrator", "nightly", "--junit", "/srv/n.xml"]
    assert entry.environment == {}
    assert any(line.startswith("FARM_DB_URL not recorded") for line in schedule.describe(entry))
