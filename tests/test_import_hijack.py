"""A user's own `agent/`, `migrations/` and `inventory/` folders never change what farm deploys or migrates.

farm runs here from a directory holding decoys of all three (each leaves a marker file when imported or
run), with more decoys on PYTHONPATH, started both ways users start it: `python -m orchestrator`, whose
sys.path begins with the working directory, and the `farm` command (what nightly schedules run), which
also ignores an `orchestrator/` folder there.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator import own_packages
from orchestrator.deploy import build_agent
from orchestrator.store.db import head_revision
from tests.conftest import REPO

DECOY_FILES = ["agent/__init__.py", "agent/schema.py", "agent/__main__.py", "agent/facts.py",
               "migrations/__init__.py", "migrations/env.py", "inventory/__init__.py"]


def write_decoys(folder: Path, names: list[str], markers: Path) -> None:
    """Packages that leave a marker and stop the process the moment anything imports or runs them."""
    markers.mkdir(exist_ok=True)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = markers / f"{folder.name}-{name.replace('/', '-')}"
        path.write_text(f"open({str(marker)!r}, 'w').write('decoy ran')\nraise SystemExit('decoy {name} ran')\n")
    (folder / "inventory").mkdir(exist_ok=True)
    (folder / "inventory" / "local.yaml").write_text("hosts:\n  - {name: decoy-host, transport: local}\n")


@pytest.fixture
def decoys(tmp_path: Path) -> Path:
    """A user's project (the working directory) and a user's library folder (on PYTHONPATH), both with decoys."""
    for folder in ("user project", "user lib"):
        write_decoys(tmp_path / folder, DECOY_FILES, tmp_path / "markers")
    return tmp_path


def _farm_command(how: str) -> list[str]:
    if how == "module":
        return [sys.executable, "-m", "orchestrator"]
    script = Path(sys.executable).parent / "farm"
    if not script.exists():
        pytest.skip(f"no `farm` console script beside {sys.executable}: farm is not installed in this interpreter")
    return [str(script)]


@pytest.mark.parametrize("how", ["module", "script"])
def test_decoy_packages_in_the_working_directory_change_nothing(decoys: Path, isolated_home: Path, how: str) -> None:
    project = decoys / "user project"
    if how == "script":
        # Only the console script can ignore a working directory's orchestrator/ (-m runs that one: Python's rule).
        write_decoys(project, ["orchestrator/__init__.py", "orchestrator/__main__.py"], decoys / "markers")
    db_file = decoys / "fresh.db"
    # sys.path holds the project (for -m), then the user's library, then the repository: the last only
    # makes farm importable where it is not installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(decoys / "user lib"), str(REPO)]), "COLUMNS": "200"}
    done = subprocess.run([*_farm_command(how), "inventory", "check", "--db", f"sqlite:///{db_file}"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 host(s) reachable" in done.stdout
    assert "local" in done.stdout and "decoy-host" not in done.stdout

    assert sorted(p.name for p in (decoys / "markers").iterdir()) == []

    # What reached the host is farm's own agent, byte for byte: the archive built from farm's source.
    bundle = build_agent()
    deployed = isolated_home / ".cache" / "farm" / bundle.file_name
    assert [p.name for p in deployed.parent.glob("agent-*.pyz")] == [bundle.file_name]
    assert hashlib.sha256(deployed.read_bytes()).hexdigest() == bundle.sha256
    with zipfile.ZipFile(deployed) as archive:
        schema = archive.read("agent/schema.py")
    assert schema == (REPO / "agent" / "schema.py").read_bytes()

    # The fresh database went through farm's migrations, and holds the facts the real agent reported.
    with sqlite3.connect(db_file) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert connection.execute("SELECT name FROM hosts").fetchall() == [("local",)]


def test_farms_own_packages_are_found_beside_orchestrator() -> None:
    import agent

    assert Path(agent.__file__).resolve() == REPO / "agent" / "__init__.py"
    assert own_packages.MIGRATIONS_DIR == REPO / "migrations"
    assert (own_packages.INVENTORY_DIR / "local.yaml").is_file()


def test_a_foreign_agent_already_imported_is_refused_not_used(tmp_path: Path) -> None:
    # A process that imported some other `agent` first: farm must say so rather than validate with it.
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "__init__.py").write_text("")
    script = "import sys\nsys.path.insert(0, sys.argv[1])\nimport agent\nimport orchestrator\n"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert f"a package named 'agent' from {tmp_path / 'agent' / '__init__.py'} is already imported" in done.stderr
