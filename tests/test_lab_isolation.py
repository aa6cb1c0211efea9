"""The simulated lab stays out of the product: the controller's real path never imports ``farm_lab``.

Each check runs in a fresh interpreter, where an import hook refuses ``farm_lab``: a controller
module that needs the lab fails there, and ``sys.modules`` shows whether anything loaded it.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import SHARED_MODELS

REPO = Path(__file__).resolve().parents[1]
# Installed first in the child: farm_lab cannot be imported, and every attempt is written down.
BLOCK_LAB = textwrap.dedent("""
    import importlib.abc, json, os, sys
    ATTEMPTS = []

    class NoLab(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "farm_lab":
                ATTEMPTS.append(name)
                raise ImportError("farm_lab is blocked in this test", name=name)
            return None

    sys.meta_path.insert(0, NoLab())

    def report(**extra):
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "farm_lab")
        print("ISOLATION " + json.dumps({"attempts": ATTEMPTS, "loaded": loaded, **extra}))
""")


def run_child(body: str, *, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, "-c", BLOCK_LAB + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "COLUMNS": "200"}, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ISOLATION ")]
    assert lines, f"the child reported nothing (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done, json.loads(lines[-1].removeprefix("ISOLATION "))


def test_a_farm_run_on_this_machine_never_imports_the_lab(tmp_path: Path) -> None:
    """``farm models add`` and ``farm run`` end to end, in one interpreter that cannot import farm_lab."""
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    matrices = tmp_path / "matrices.yaml"
    matrices.write_text("matrices:\n  one:\n    models: [mobilenet]\n    threads: [1]\n"
                        "    timing: {min_runs: 3, min_seconds: 0, warmup_min_seconds: 0}\n")
    model = SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite"
    done, seen = run_child(f"""
        from orchestrator import cli
        codes = []
        for argv in (["models", "add", {str(model)!r}, "--name", "mobilenet", "--db", {db!r}],
                     ["run", "-m", "one", "--matrix-file", {str(matrices)!r}, "--db", {db!r}],
                     ["results", "--db", {db!r}, "--format", "json"]):
            sys.argv = ["farm", *argv]
            try:
                cli.main()
                codes.append(0)
            except SystemExit as exc:
                codes.append(exc.code or 0)
        report(codes=codes)
    """)
    assert seen["codes"] == [0, 0, 0], done.stdout + done.stderr
    assert '"status": "succeeded"' in done.stdout.replace('":"', '": "')
    assert seen["attempts"] == [] and seen["loaded"] == []


def test_no_controller_module_imports_the_lab() -> None:
    """Every module under orchestrator/ imported, as any command could: none pulls in farm_lab."""
    _, seen = run_child("""
        import pkgutil, orchestrator
        failed = {}
        for info in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
            if info.name == "orchestrator.__main__":
                continue  # it runs the command line
            try:
                __import__(info.name)
            except Exception as exc:
                failed[info.name] = repr(exc)
        report(failed=failed, count=len([m for m in sys.modules if m.startswith("orchestrator.")]))
    """)
    assert seen["failed"] == {}, seen["failed"]
    assert seen["count"] > 40  # the walk did import the controller
    assert seen["attempts"] == [] and seen["loaded"] == []


def test_only_the_lab_command_names_the_lab_package() -> None:
    """A static look at every import in orchestrator/: farm_lab is named only where ``farm lab`` loads it."""
    naming = []
    for path in sorted((REPO / "orchestrator").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "farm_lab" for name in names):
                naming.append(path.relative_to(REPO).as_posix())
        assert "standins" not in path.read_text(), f"{path} locates a stand-in tool"
    assert sorted(set(naming)) == ["orchestrator/cli/lab.py"]


def test_farm_lab_without_the_lab_package_says_what_is_missing(tmp_path: Path) -> None:
    """A farm installed without farm_lab beside it (here: a copy of the controller's packages alone)."""
    for package in ("orchestrator", "agent", "migrations", "inventory"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "orchestrator", "lab", "up", "--hosts", "2"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())
    assert "farm lab needs the simulated lab, the farm_lab package" in text and str(tmp_path / "farm_lab") in text
    assert "Traceback" not in done.stderr
    # The rest of farm still works there, from the copy.
    shown = subprocess.run([sys.executable, "-m", "orchestrator", "inventory", "show"], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path, check=True, env={**os.environ, "COLUMNS": "300"})
    assert str(tmp_path / "inventory" / "local.yaml") in shown.stdout and " local " in shown.stdout


def test_farm_lab_runs_farms_own_lab_commands_and_farm_help_lists_them(tmp_path: Path) -> None:
    # A user's own farm_lab/ in the working directory (first on sys.path) is not what `farm lab` runs.
    decoy = tmp_path / "farm_lab"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "cli.py").write_text("raise SystemExit('DECOY farm_lab ran')\n")
    shown = subprocess.run([sys.executable, "-m", "orchestrator", "lab", "--help"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert shown.returncode == 0 and "DECOY" not in shown.stdout + shown.stderr, shown.stdout + shown.stderr
    for command in ("up", "down", "status"):
        assert f" {command} " in shown.stdout
    listed = subprocess.run([sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env={**os.environ, "COLUMNS": "200"}, check=True).stdout
    assert " lab " in listed and "simulated lab" in listed
