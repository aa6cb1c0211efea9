"""`farm nightly` end to end on real inference: an A/A pair finds nothing, a real slowdown is caught where it is."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_setup import register_models
from tests.quiet_core import boosted, boosted_shell
from tests.store_rows import query_rows
from tests.test_cli_run import farm

AA_MATRIX = """
matrices:
  nightly:
    models: [family:dense_stack]
    # One thread: the busy loop then leaves the benchmark a core. With two threads on two cores a
    # microsecond-scale model once came out 37 % slower undetected (CI, dense_stack-l8: 14 -> 19 us).
    threads: [1]
    timing: {min_runs: 20, min_seconds: 0.02, warmup_min_seconds: 0.01}
"""

HOG_MATRIX = """
matrices:
  nightly:
    models: [conv_stack-l1, conv_stack-l2]
    threads: [1]
    # At least 0.2 s: a loop shorter than a few scheduler slices can run between the hog's turns, undisturbed.
    timing: {min_runs: 5, min_seconds: 0.2, warmup_min_seconds: 0}
"""

# A runtime update on one host that makes one model do measurably more work: the same tflite_runtime,
# with that model's operators on TFLite's reference kernels (OpResolverType.BUILTIN_REF, several times the
# work of the optimized ones), as a build without the optimized kernels would run it. A package that
# shadows tflite_runtime on the host's PYTHONPATH: the agent's loader and backend are farm's own.
PLANTED_INIT = """
import os
import sys
REAL_DIR = {real!r}
__path__.append(REAL_DIR)  # the real package's C extension and helpers
__version__ = {version!r} + "+ref-kernels"
"""
PLANTED_INTERPRETER = """
import importlib.util
import os
import tflite_runtime
_spec = importlib.util.spec_from_file_location("tflite_runtime._real_interpreter",
                                               os.path.join(tflite_runtime.REAL_DIR, "interpreter.py"))
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
globals().update({name: value for name, value in vars(_real).items() if not name.startswith("__")})
_SLOW = os.environ.get("PLANTED_REF_KERNELS_FOR") or None
# A passing slowdown: only the first N loads of that model are slow (counted in a file, one line per load).
_SLOW_LOADS = int(os.environ.get("PLANTED_SLOW_LOADS") or 0)


def _slow_this_time():
    if not _SLOW_LOADS:
        return True
    with open(os.environ["PLANTED_LOAD_COUNT"], "a+") as handle:
        handle.seek(0)
        loads = len(handle.read().splitlines())
        handle.write("load\\n")
    return loads < _SLOW_LOADS


class Interpreter(_real.Interpreter):
    def __init__(self, model_path=None, *args, **kwargs):
        if _SLOW and model_path and os.path.basename(model_path).startswith(_SLOW) and _slow_this_time():
            kwargs["experimental_op_resolver_type"] = _real.OpResolverType.BUILTIN_REF
        super().__init__(model_path, *args, **kwargs)
"""


def l4t_release(revision: str) -> str:
    return f"# R32 (release), REVISION: {revision}, GCID: 1, BOARD: t210ref, EABI: aarch64, DATE: today\n"


def plant_runtime_update(folder: Path) -> Path:
    """The updated runtime's package folder (see PLANTED_INIT)."""
    import tflite_runtime

    package = folder / "tflite_runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLANTED_INIT.format(real=str(Path(tflite_runtime.__file__).parent),
                                                             version=tflite_runtime.__version__))
    (package / "interpreter.py").write_text(PLANTED_INTERPRETER)
    return folder


def pinned_inventory(tmp_path: Path, busy_root: Path | None = None, calm_env: str = "") -> Path:
    """Two local hosts, each agent pinned to its own CPU at the top of the scheduler (tests/quiet_core.py),
    so a hog on one CPU disturbs one host only and ordinary load from elsewhere barely reaches either.

    ``busy_root``: the busy host's agent reads that device root, where a test can play a JetPack update.
    ``calm_env``: variables the calm host's agent starts with (a runtime update).
    """
    lines = ["hosts:"]
    for name, cpu in (("calm", 0), ("busy", 1)):
        wrapper = tmp_path / f"python-cpu{cpu}"
        env = f"FARM_DEVICE_ROOT={busy_root} " if busy_root is not None and name == "busy" else ""
        env += f"{calm_env} " if name == "calm" else ""
        command = f'env {env}taskset -c {cpu} "{sys.executable}" "$@"'
        wrapper.write_text(f"#!/bin/sh\n{boosted_shell(command)}\n")
        wrapper.chmod(0o755)
        lines += [f"  - name: {name}", "    transport: local", f"    python: {wrapper}"]
    path = tmp_path / "pinned.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def nightly(db: str, matrix_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return farm("nightly", "--matrix-file", str(matrix_file), "--db", db, *extra, check=False, timeout=600)


def verdicts(db: str, nightly_id: int) -> dict[str, str]:
    rows = query_rows(db, "SELECT cell_key, state FROM cell_verdicts WHERE nightly_id = :n", n=nightly_id)
    return {row["cell_key"]: row["state"] for row in rows}


def boosted_local(tmp_path: Path, env: str = "") -> Path:
    """This machine as one host whose agent runs at the top of the scheduler (tests/quiet_core.py).
    ``env``: variables its agent starts with."""
    wrapper = tmp_path / "python-boosted"
    command = f'env {env} "{sys.executable}" "$@"' if env else f'"{sys.executable}" "$@"'
    wrapper.write_text(f"#!/bin/sh\n{boosted_shell(command)}\n")
    wrapper.chmod(0o755)
    path = tmp_path / "local.yaml"
    path.write_text(f"hosts:\n  - name: local\n    transport: local\n    python: {wrapper}\n")
    return path


def test_aa_nightlies_under_outside_load_find_no_regression_in_twenty_cells(tmp_path: Path) -> None:
    """Two nightlies of the same code, with a busy loop of ordinary priority running through both (another
    user's job): no cell regresses. A cell the load did disturb is invalid, which is allowed and counted."""
    db_url = f"sqlite:///{tmp_path / 'aa.db'}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(AA_MATRIX)
    inventory = str(boosted_local(tmp_path))
    # The command itself here (the other tests register in-process, tests/model_setup.py): where it is tested.
    farm("models", "build", "--family", "dense_stack", "--layers", ",".join(map(str, range(1, 21))), "--db", db_url)
    with processes(SPIN, new_session=True):
        first = nightly(db_url, matrix, "--inventory", inventory, "--force", "--retry-disturbed", "1",
                        "--junit", str(tmp_path / "first.xml"))
        assert first.returncode == 0, first.stdout + first.stderr
        assert set(verdicts(db_url, 1).values()) <= {"new", "invalid"} and len(verdicts(db_url, 1)) == 20
        idle = nightly(db_url, matrix, "--inventory", inventory)
        assert idle.returncode == 0 and "nothing to run" in idle.stdout
        second = nightly(db_url, matrix, "--inventory", inventory, "--force", "--retry-disturbed", "1", "--junit",
                         str(tmp_path / "second.xml"))
    states = verdicts(db_url, 3)
    assert second.returncode == 0, second.stdout
    assert len(states) == 20 and "regressed" not in states.values(), states
    counts = {state: list(states.values()).count(state) for state in sorted(set(states.values()))}
    print(f"A/A under outside load: {counts} (first nightly: {sorted(verdicts(db_url, 1).values())})")
    # Most cells must have been judged, or the test proves nothing: the agent's priority keeps them clean.
    assert counts.get("unchanged", 0) + counts.get("improved", 0) >= 10, counts
    from junitparser import JUnitXml

    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "second.xml"))))
    assert suite.tests == 20 and suite.failures == 0


def cells_of_run(db: str, run_id: int) -> set[tuple[str, str]]:
    rows = query_rows(db, "SELECT DISTINCT host, model_sha256 FROM v_results WHERE run_id = :r", r=run_id)
    return {(row["host"], row["model_sha256"][:16]) for row in rows}


def test_a_slowdown_the_confirmation_trials_do_not_reproduce_is_not_called_a_regression(tmp_path: Path) -> None:
    """A slowdown that passes (here: the first three loads of the model after the baseline run on reference
    kernels, several times slower, then the optimized ones again) makes all three trials slower than the
    baseline, which the first judgement would call regressed; the three confirmation trials are fast again,
    so the verdict with every trial pooled is unchanged, saying what the first judgement was."""
    db = f"sqlite:///{tmp_path / 'n.db'}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(HOG_MATRIX.replace("[conv_stack-l1, conv_stack-l2]", "[conv_stack-l1]"))
    register_models(db, builds=[("conv_stack", [1])])
    base = nightly(db, matrix, "--inventory", str(boosted_local(tmp_path)), "--force")
    assert base.returncode == 0, base.stdout + base.stderr
    runtime = plant_runtime_update(tmp_path / "updated-runtime")
    inventory = boosted_local(tmp_path, env=(f"PYTHONPATH={runtime} PLANTED_REF_KERNELS_FOR={sha_of(db, 'conv_stack-l1')} "
                                             f"PLANTED_SLOW_LOADS=3 PLANTED_LOAD_COUNT={tmp_path / 'loads'}"))
    second = nightly(db, matrix, "--inventory", str(inventory), "--force")
    assert second.returncode == 0, second.stdout + second.stderr
    [row] = query_rows(db, "SELECT state, ratio, detail FROM cell_verdicts WHERE nightly_id = 2")
    assert row["state"] == "unchanged", row
    first_ratio = float(row["detail"].split("first judged regressed ")[1].rstrip("×"))
    assert "not reproduced by 3 more trial(s)" in row["detail"] and first_ratio > 1.5, row
    assert (tmp_path / "loads").read_text().count("load") == 6  # 3 trials and 3 confirmations, each loaded once
    # Without confirmation the same passing slowdown is a regression: the step is what tells them apart.
    (tmp_path / "loads").unlink()
    third = nightly(db, matrix, "--inventory", str(inventory), "--force", "--confirm", "0")
    assert third.returncode == 1, third.stdout + third.stderr


def sha_of(db: str, model: str) -> str:
    rows = query_rows(db, "SELECT sha256 FROM models WHERE name = :m", m=model)
    return rows[0]["sha256"]


@contextlib.contextmanager
def processes(*commands: list[str], new_session: bool = False) -> Iterator[None]:
    """``new_session``: each in a session of its own, as another user's job would be (not in pytest's group)."""
    running = [subprocess.Popen(command, start_new_session=new_session) for command in commands]
    try:
        yield
    finally:
        for process in running:
            process.kill()
            process.wait()


SPIN = [sys.executable, "-c", "while True: pass"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or shutil.which("taskset") is None, reason="needs 2 CPUs and taskset")
@pytest.mark.parametrize("outside_load", [False, True], ids=["quiet-machine", "under-an-extra-cpu-hog"])
def test_a_cpu_hog_makes_its_hosts_cells_invalid_and_a_real_slowdown_still_regresses(
        tmp_path: Path, outside_load: bool) -> None:
    """Nightly 1 is the baseline. Before nightly 2, the busy host gets a JetPack update (L4T R32.4.4 ->
    R32.7.1, SEEDS §4) and a CPU hog on its CPU, and the calm host a runtime update that makes conv_stack-l1
    do measurably more work. The hog's cells are invalid (disturbed), not regressed; the calm host's l1 cell
    regresses with its runtime update named as the cause, and its l2 cell stays unchanged.
    ``outside_load``: two more busy loops at ordinary priority (sessions of their own, like another user's
    jobs), on any CPU, through both nightlies."""
    db = f"sqlite:///{tmp_path / 'n.db'}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(HOG_MATRIX)
    busy_root = tmp_path / "busy-root"
    (busy_root / "etc").mkdir(parents=True)
    (busy_root / "etc/nv_tegra_release").write_text(l4t_release("4.4"))
    inventory = pinned_inventory(tmp_path, busy_root)
    register_models(db, builds=[("conv_stack", [1, 2])])
    outside = [SPIN, SPIN] if outside_load else []
    with processes(*outside, new_session=True):
        base = nightly(db, matrix, "--inventory", str(inventory), "--force")
        assert base.returncode == 0, base.stdout + base.stderr
        assert set(verdicts(db, 1).values()) == {"new"}, base.stdout  # every cell has a clean baseline
        (busy_root / "etc/nv_tegra_release").write_text(l4t_release("7.1"))
        runtime = plant_runtime_update(tmp_path / "updated-runtime")
        inventory = pinned_inventory(tmp_path, busy_root, calm_env=(
            f"PYTHONPATH={runtime} PLANTED_REF_KERNELS_FOR={sha_of(db, 'conv_stack-l1')}"))
        # The hog at the agents' priority: half of the busy host's CPU, whatever else runs.
        with processes(boosted(["taskset", "-c", "1", *SPIN])):
            loaded = nightly(db, matrix, "--inventory", str(inventory), "--force", "--retry-disturbed", "1", "--html",
                             str(tmp_path / "n.html"), "--markdown", str(tmp_path / "n.md"))
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr
    rows = {row["cell_key"]: row for row in query_rows(
        db, "SELECT cell_key, state, ratio, detail FROM cell_verdicts WHERE nightly_id = 2")}
    by_cell = {(key.split("|")[0], key.split("|")[1]): row for key, row in rows.items()}
    l1, l2 = sha_of(db, "conv_stack-l1")[:16], sha_of(db, "conv_stack-l2")[:16]
    # The hog's host: invalid with the measured reason, after the bounded re-run; never regressed.
    for model in (l1, l2):
        busy = by_cell[("busy", model)]
        assert busy["state"] == "invalid", (busy, loaded.stdout)
        assert busy["detail"].startswith("disturbed: cpu_share") and "(4 of 4 trials)" in busy["detail"], busy
    # The genuine slowdown is found where it is, and the calm host's other cell is untouched.
    assert by_cell[("calm", l1)]["state"] == "regressed" and by_cell[("calm", l1)]["ratio"] > 1.5, rows
    assert by_cell[("calm", l2)]["state"] == "unchanged", rows
    report = (tmp_path / "n.md").read_text()
    regressed_rows = [line for line in report.splitlines() if "| regressed" in line]
    assert len(regressed_rows) == 1 and regressed_rows[0].startswith("| calm · conv_stack-l1"), report
    assert "calm: tflite_runtime tflite_runtime 2.14" in regressed_rows[0] and "+ref-kernels" in regressed_rows[0]
    invalid_rows = [line for line in report.splitlines() if "| invalid" in line]
    assert len(invalid_rows) == 2 and all(line.startswith("| busy · ") and "disturbed: cpu_share" in line
                                          for line in invalid_rows), report
    assert "confirmed by 3 more trial(s)" in by_cell[("calm", l1)]["detail"], by_cell[("calm", l1)]
    # Nightly 2's own runs: 3 trials, 1 round of re-runs for the busy host's cells only, then 3 confirmation
    # runs of the regressed cell only.
    runs = query_rows(db, "SELECT run_ids FROM nightly_runs WHERE id = 2")[0]["run_ids"]
    runs = json.loads(runs) if isinstance(runs, str) else runs
    assert len(runs) == 7, runs
    assert cells_of_run(db, runs[3]) == {("busy", l1), ("busy", l2)}
    assert all(cells_of_run(db, run) == {("calm", l1)} for run in runs[4:])
    page = (tmp_path / "n.html").read_text()
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
