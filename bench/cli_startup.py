"""How fast short commands start, measured in one run: `farm --help` and `farm results` on 10,000 results.

Each command runs as a user's shell starts it (a fresh interpreter, the installed entry point), several
times, alternating with two floors, `python -c pass` (the interpreter's own start) and `python -c "import
typer"` (the least a typer command line costs), so that a busy moment of the machine hits all of them.
A third floor, `python -c "import typer, sqlalchemy"`, is what any command that reads the database
imports before it does anything. Prints medians, the wall time less the bare interpreter's, CPU (user +
sys of the child), the load average before and after, and the goals (issue 18): `farm --help` <= 0.3 s,
`farm results` on 10,000 results <= 0.5 s.

farm's own modules are byte-compiled first, as pip compiles an installed wheel's: where
PYTHONDONTWRITEBYTECODE is set (as on the lab controller), an editable install would otherwise compile
every farm module it imports from source on every run.

The database is filled once, untimed, by bench/store_scale.py's fill (a year of nightlies' shape) at
``--results``; `farm results` prints every succeeded row of it (no filter) to a pipe.

Run:  .venv/bin/python bench/cli_startup.py
      .venv/bin/python bench/cli_startup.py --results 10000 --repeats 9 --json out/cli.json
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from orchestrator.store import upgrade

HERE = Path(__file__).resolve().parent
GOALS_S = {"farm --help": 0.3, "farm results": 0.5}


def store_scale() -> Any:
    spec = importlib.util.spec_from_file_location("bench_store_scale", HERE / "store_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def farm_command() -> list[str]:
    """The installed `farm` entry point beside this Python, else `python -m orchestrator`."""
    script = Path(sys.executable).with_name("farm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orchestrator"]


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, the child's CPU seconds, and the lines it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-3:])} exited {done.returncode}: {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, len(done.stdout.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=int, default=10_000, help="results in the database (default 10,000)")
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if args.results < 100 or args.repeats < 1:
        parser.error("--results must be at least 100 and --repeats positive")
    scratch = Path(tempfile.mkdtemp(prefix="farm-bench-cli-"))
    try:
        url = f"sqlite:///{scratch / 'farm.db'}"
        env = {**os.environ, "FARM_DATA_DIR": str(scratch / "data"), "COLUMNS": "200"}
        os.environ["FARM_DATA_DIR"] = env["FARM_DATA_DIR"]
        upgrade(url)
        engine = create_engine(url)
        written = store_scale().fill(engine, args.results / store_scale().FULL_RESULTS)
        engine.dispose()
        for package in ("orchestrator", "agent", "migrations"):
            compileall.compile_dir(HERE.parent / package, quiet=1)
        farm = farm_command()
        commands = {"python -c pass": [sys.executable, "-c", "pass"],
                    "import typer": [sys.executable, "-c", "import typer"], "farm --help": [*farm, "--help"],
                    "import typer, sqlalchemy": [sys.executable, "-c", "import typer, sqlalchemy"],
                    "farm results": [*farm, "results", "--db", url]}
        load_before = os.getloadavg()
        found: dict[str, list[tuple[float, float, int]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                found[name].append(run_once(command, env))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(found, written["results"], load_before)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": written["results"], "runs": found}, indent=1) + "\n")
    return 0


def report(found: dict[str, list[tuple[float, float, int]]], results: int, load_before: tuple[float, ...]) -> None:
    bare = statistics.median(w for w, _, _ in found["python -c pass"])
    loads = " -> ".join(" ".join(f"{v:.1f}" for v in load) for load in (load_before, os.getloadavg()))
    print(f"short commands, {os.cpu_count()} CPUs, load average {loads} (1, 5, 15 min; before -> after); "
          f"farm results over {results:,} results")
    header = f"{'command':<24}  {'wall s':>7}  {'min s':>6}  {'less python s':>13}  {'CPU s':>6}  {'lines':>6}  goal"
    print(header)
    print("-" * len(header))
    for name, runs in found.items():
        wall = statistics.median(w for w, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        goal = GOALS_S.get(name)
        verdict = "" if goal is None else f"<= {goal:g} s: {'meets' if wall <= goal else 'MISSES'}"
        print(f"{name:<24}  {wall:7.3f}  {min(w for w, _, _ in runs):6.3f}  {wall - bare:13.3f}  {cpu:6.3f}  "
              f"{runs[0][2]:6d}  {verdict}")
    typer_floor = statistics.median(w for w, _, _ in found["import typer"])
    print(f"farm --help / import typer: {statistics.median(w for w, _, _ in found['farm --help']) / typer_floor:.2f}x "
          "(medians of the same run)")


if __name__ == "__main__":
    sys.exit(main())
