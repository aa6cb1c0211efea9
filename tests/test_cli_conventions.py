"""`farm` as a lab engineer meets it on day one: tables at 80 columns and in a pipe, labels on runs, exit
codes, exports that agree, JUnit a CI server can show, logs, completion.

One module-scoped database holds two real runs (real inference on this machine): a piped `farm run`
labelled commit=abc, and a `--json-lines` one labelled commit=def. Everything else reads them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.cli import main
from orchestrator.cli import output as cli_output
from tests.conftest import SHARED_MODELS

LONG = "mobilenet_v1_0.25_128_quant"  # 27 characters: what an 80-column table used to cut to "mobil…"
MODELS = ("conv_stack-l1", "conv_stack-l2", LONG)
MATRICES = f"""
matrices:
  quick:
    models: [conv_stack-l1, conv_stack-l2, {LONG}]
    threads: [1, 2]
    timing: {{min_runs: 3, min_seconds: 0, warmup_min_runs: 1, warmup_min_seconds: 0}}
  one:
    models: [conv_stack-l1]
    threads: [1]
    timing: {{min_runs: 3, min_seconds: 0, warmup_min_runs: 1, warmup_min_seconds: 0}}
"""


def invoke(*args: str, code: int = 0, width: int = 80) -> str:
    """farm's main() as the console script runs it, in this process (imports paid once), with stdout and stderr
    captured (not a terminal, as in a pipe) and the console as wide as a terminal of ``width`` columns."""
    out, err = io.StringIO(), io.StringIO()
    saved_argv, before = sys.argv, cli_output.console._width  # None: the console follows $COLUMNS again after
    sys.argv, cli_output.console.width = ["farm", *args], width
    got = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit_:
        got = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv, cli_output.console._width = saved_argv, before
    assert got == code, (got, out.getvalue(), err.getvalue())
    return out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cli20")
    saved = {name: os.environ.get(name) for name in ("FARM_DATA_DIR", "HOME", "FARM_DB_URL")}
    os.environ["FARM_DATA_DIR"], os.environ["HOME"] = str(root / "data"), str(root)
    os.environ.pop("FARM_DB_URL", None)
    db = f"sqlite:///{root / 'farm.db'}"
    matrix = root / "matrices.yaml"
    matrix.write_text(MATRICES)
    try:
        invoke("models", "build", "--family", "conv_stack", "--layers", "1,2", "--db", db)
        invoke("models", "add", str(SHARED_MODELS / f"{LONG}.tflite"), "--db", db)
        # A real pipe: what a CI log sees. Each line is timed as it arrives, and whether farm was still running.
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", "-m", "quick", "--matrix-file", str(matrix), "--db", db,
             "--label", "commit=abc", "--label", "firmware=5.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "COLUMNS": "80"})
        assert process.stdout is not None
        arrivals = [(line.rstrip("\n"), process.poll() is None, time.monotonic() - started)
                    for line in process.stdout]
        piped_code = process.wait(timeout=600)
        piped_err = process.stderr.read() if process.stderr else ""
        json_lines = invoke("run", "-m", "quick", "--matrix-file", str(matrix), "--db", db, "--label", "commit=def",
                            "--json-lines")
        yield SimpleNamespace(root=root, db=db, matrix=matrix, arrivals=arrivals, piped_code=piped_code,
                              piped_err=piped_err, json_lines=json_lines)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _lab_data_dir(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests on the lab's database use its data folder (its model cache), not the per-test one."""
    if "lab" in request.fixturenames:
        monkeypatch.setenv("FARM_DATA_DIR", str(request.getfixturevalue("lab").root / "data"))


# -- a pipe, and 80 columns ---------------------------------------------------------------------------------

def test_a_piped_run_prints_a_line_per_job_as_it_finishes_then_a_summary_at_80_columns(lab) -> None:  # type: ignore[no-untyped-def]
    assert lab.piped_code == 0, "\n".join(line for line, *_ in lab.arrivals) + lab.piped_err
    jobs = [(line, alive) for line, alive, _ in lab.arrivals if re.match(r"\[\d+/6 local; \d+/6 all\]", line)]
    assert [int(re.match(r"\[(\d+)/", line).group(1)) for line, _ in jobs] == [1, 2, 3, 4, 5, 6]
    # Streamed, not buffered until the end: the first job's line was read while farm was still running.
    assert jobs[0][1], "the first job's line only arrived when farm exited"
    assert all("succeeded" in line and "elapsed" in line and "eta local" in line for line, _ in jobs), jobs
    lines = [line for line, *_ in lab.arrivals]
    assert lines[0] == "Run 1 started"
    summary = lines[lines.index(next(line for line in lines if line.startswith("Run 1 ("))):]
    assert summary[0].startswith("Run 1 (commit=abc, firmware=5.1)")
    assert max(len(line) for line in summary) <= 80, summary
    for model in MODELS:  # whole, never "conv_…": the three are told apart
        assert sum(bool(re.search(rf"(^|\s){re.escape(model)}(\s|$)", line)) for line in summary) == 2, summary
    assert "…" not in "\n".join(summary)


def test_results_at_80_columns_keep_model_names_whole_and_drop_empty_columns(lab) -> None:  # type: ignore[no-untyped-def]
    text = invoke("results", "--db", lab.db, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    for model in MODELS:
        assert sum(bool(re.search(rf"(^|\s){re.escape(model)}(\s|$)", line)) for line in lines) == 4, text
    assert "…" not in text
    assert "USB" not in text and "power" not in text  # no run has a power mode or a USB port
    # At 40 columns something must go: model and median stay, what went is said.
    narrow = invoke("results", "--db", lab.db, width=40)
    assert LONG in narrow and "median" in narrow and "left out to fit 40 columns" in " ".join(narrow.split())
    wide = invoke("results", "--db", lab.db, "--wide", width=80)
    assert "runtime version" in wide and "python" in wide and max(len(line) for line in wide.splitlines()) > 80
    chosen = invoke("results", "--db", lab.db, "--columns", "model,median_ms", "--latest", width=80)
    header = next(line for line in chosen.splitlines() if "model" in line)
    assert header.split() == ["model", "median", "ms"], chosen
    invoke("results", "--db", lab.db, "--columns", "model,nonsense", code=2)


def test_json_lines_are_events_then_results_then_the_run(lab) -> None:  # type: ignore[no-untyped-def]
    events = [json.loads(line) for line in lab.json_lines.splitlines()]  # every line is JSON
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and events[0]["run_id"] == 2 and kinds[-1] == "run_finished"
    finished = [e for e in events if e["event"] == "job_finished"]
    assert [e["done"] for e in finished] == [1, 2, 3, 4, 5, 6] and {e["total"] for e in finished} == {6}
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 6 and {r["model"] for r in results} == set(MODELS)
    assert all(r["status"] == "succeeded" and r["median_ms"] > 0 for r in results)
    assert kinds.index("result") > max(i for i, k in enumerate(kinds) if k == "job_finished")
    assert events[-1]["exit_code"] == 0 and events[-1]["counts"] == {"succeeded": 6}


def test_quiet_prints_only_the_run_id(lab) -> None:  # type: ignore[no-untyped-def]
    text = invoke("run", "-m", "one", "--matrix-file", str(lab.matrix), "--db", lab.db, "--quiet")
    assert re.fullmatch(r"\d+", text.strip()), text
    [row] = json.loads(invoke("results", "--db", lab.db, "-f", "json", "--run", text.strip()))
    assert row["model"] == "conv_stack-l1" and row["status"] == "succeeded"
    invoke("run", "-m", "one", "--matrix-file", str(lab.matrix), "--db", lab.db, "--quiet", "--json-lines", code=2)


# -- labels -------------------------------------------------------------------------------------------------

def test_labels_are_stored_with_the_run_and_select_it_everywhere(lab) -> None:  # type: ignore[no-untyped-def]
    def runs(*args: str) -> set[int]:
        return {row["run_id"] for row in json.loads(invoke("results", "--db", lab.db, "-f", "json", *args))}

    assert runs("--label", "commit=abc") == {1}
    assert runs("--label", "commit=def") == {2}
    assert runs("--label", "firmware") == {1}  # a key alone: any value
    assert runs("--label", "commit=abc", "--label", "firmware=5.1") == {1}
    assert runs("--label", "commit=abc", "--label", "firmware=6") == set()
    [row, *_] = json.loads(invoke("results", "--db", lab.db, "-f", "json", "--label", "commit=abc"))
    assert json.loads(row["run_labels"]) == {"commit": "abc", "firmware": "5.1"}  # v_results' own column
    report = invoke("report", "--db", lab.db, "--label", "commit=def", width=120)
    assert "farm report: run 2 " in report and "Run 2: commit=def" in report
    compared = json.loads(invoke("compare", "commit=abc", "commit=def", "--db", lab.db, "-f", "json"))
    assert len(compared) == 6 and {c["state"] for c in compared} <= {"unchanged", "improved", "regressed", "invalid"}
    assert "no run is labelled commit=zzz" in invoke("compare", "commit=zzz", "1", "--db", lab.db, code=2)
    assert "give KEY=VALUE" in invoke("run", "-m", "one", "--matrix-file", str(lab.matrix), "--db", lab.db,
                                      "--label", "commit", code=2)


# -- exports that agree ---------------------------------------------------------------------------------------

def test_csv_and_json_timestamps_are_utc_with_the_offset(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(invoke("results", "--db", lab.db, "-f", "json", "--run", "1"))
    for row in rows:
        for column in ("run_started_at", "started_at", "finished_at"):
            assert row[column].endswith("+00:00"), (column, row[column])
    out = tmp_path / "r.csv"
    invoke("report", "--db", lab.db, "--run", "1", "--export", str(out), "--quiet")
    header, first = out.read_text().splitlines()[:2]
    assert header.split(",")[:3] == ["run_id", "matrix", "run_started_at"] and "+00:00" in first.split(",")[2]


def test_parquet_exports_of_different_selections_share_one_schema(db_url: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from orchestrator.store import open_store
    from tests.seed_data import load_seed

    store = open_store(db_url)
    try:
        load_seed(store)
    finally:
        store.close()
    cpu, edgetpu = tmp_path / "cpu.parquet", tmp_path / "edgetpu.parquet"
    # CPU rows have no USB port, speed or Edge TPU device; Edge TPU rows have them all.
    invoke("report", "--db", db_url, "--delegate", "cpu", "--export", str(cpu), "--quiet")
    invoke("report", "--db", db_url, "--delegate", "edgetpu", "--export", str(edgetpu), "--quiet")
    a, b = pq.read_schema(cpu), pq.read_schema(edgetpu)
    assert a.equals(b, check_metadata=False), set(map(str, a)) ^ set(map(str, b))
    types = {field.name: str(field.type) for field in a}
    assert "null" not in types.values(), types
    assert types["usb_port"] in ("string", "large_string") and types["usb_speed"] == "int64" and types["median_ms"] == "double"
    assert types["run_started_at"].startswith("timestamp[") and "tz=UTC" in types["run_started_at"]
    assert pq.read_table(cpu).column("usb_port").null_count == pq.read_table(cpu).num_rows > 0


# -- exit codes -------------------------------------------------------------------------------------------------

def test_exit_codes_tell_usage_from_infrastructure(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    junit = tmp_path / "out" / "nightly.xml"
    text = invoke("nightly", "--matrix-file", str(tmp_path / "missing.yaml"), "--db", db, "--junit", str(junit),
                  code=2)
    assert "does not exist" in text
    from junitparser import Error, JUnitXml

    suite = next(iter(JUnitXml.fromfile(str(junit))))
    [case] = list(suite)
    assert suite.errors == 1 and isinstance(case.result[0], Error) and "missing.yaml" in case.result[0].message
    assert invoke("results", "--db", db, "--status", "nope", code=2)
    assert invoke("results", "--no-such-option", code=2)
    assert "cannot use the database" in " ".join(
        invoke("results", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x", code=4).split())
    assert "not a database URL" in invoke("results", "--db", "nonsense", code=2)
    assert invoke("compare", "1", "2", "--db", db, code=2)  # no such runs: the user's input
    assert "Exit codes: 0 ok, 1 regression or failed job, 2 usage or input error, 3 incomplete run" in \
        " ".join(invoke("--help", width=200).split())


# -- JUnit, nightly labels ---------------------------------------------------------------------------------

def test_nightly_junit_has_time_timestamp_hostname_and_properties() -> None:
    import socket
    from datetime import datetime, timedelta, timezone

    from junitparser import JUnitXml

    from orchestrator.nightly.outputs import junit_xml
    from orchestrator.nightly.runner import CellOutcome, NightlyOutcome
    from orchestrator.results import CellTrials
    from orchestrator.verdict import Verdict

    started = datetime(2026, 12, 2, 2, 30, tzinfo=timezone.utc)
    cells = [CellOutcome(CellTrials("k1", "k1", "nano-1 · conv_stack-l1 · cpu · 1 thr", seconds=12.5),
                         Verdict("unchanged", baseline_ms=1.0, current_ms=1.0)),
             CellOutcome(CellTrials("k2", "k2", "nano-1 · conv_stack-l2 · cpu · 1 thr", seconds=3.25),
                         Verdict("regressed", baseline_ms=1.0, current_ms=1.5, ratio=1.5))]
    outcome = NightlyOutcome(7, True, "", run_ids=[11, 12], cells=cells, exit_code=1, started_at=started,
                             finished_at=started + timedelta(seconds=95.5),
                             properties={"farm.run_ids": "11,12", "toolchain.nano-1.libedgetpu": "16.0"})
    suite = next(iter(JUnitXml.fromstring(junit_xml(outcome))))
    assert suite.time == pytest.approx(95.5) and suite.timestamp == "2026-12-02T02:30:00+00:00"
    assert suite.hostname == socket.gethostname()
    properties = {p.name: p.value for p in suite.properties()}
    assert properties == {"farm.run_ids": "11,12", "toolchain.nano-1.libedgetpu": "16.0"}
    assert sorted(case.time for case in suite) == [3.25, 12.5]


def test_nightly_runs_are_labelled_with_the_toolchain_changes_they_saw() -> None:
    from orchestrator.nightly.runner import nightly_labels

    labels = nightly_labels(4, 2, [{"host": "nano-1", "component": "libedgetpu", "old": "15.0", "new": "16.0"},
                                   {"host": "nano-2", "component": "libedgetpu", "old": "15.0", "new": "16.0"},
                                   {"host": "@controller", "component": "edgetpu_compiler", "old": None,
                                    "new": "16.0.384591198"}])
    assert labels == {"nightly": "4", "trial": "2",
                      "toolchain.libedgetpu": "nano-1: 15.0 -> 16.0; nano-2: 15.0 -> 16.0",
                      "toolchain.edgetpu_compiler": "@controller: none -> 16.0.384591198"}


# -- progress, logs, completion ------------------------------------------------------------------------------

def test_terminal_progress_keeps_count_elapsed_and_estimate_at_80_columns() -> None:
    import io

    from rich.console import Console

    from orchestrator.progress import RichObserver

    screen = io.StringIO()
    observer = RichObserver(Console(file=screen, force_terminal=True, width=80, color_system=None))
    cell = SimpleNamespace(model=SimpleNamespace(name=LONG), delegate="cpu", threads=4, power_mode="10W",
                           usb_port=None)
    observer.jobs_planned("nano-1", 3)
    observer.jobs_planned("pi-1", 2)
    observer.job_finished("nano-1", cell, "succeeded", "median 12.345 ms " + "x" * 80)  # a state longer than a line
    lines = [line for line in _rendered(observer).splitlines() if line.strip()]
    nano = next(line for line in lines if line.startswith("nano-1"))
    overall = next(line for line in lines if line.startswith("all hosts"))
    assert "1/3" in nano and "1/5" in overall and all(len(line) <= 80 for line in lines), lines
    assert re.search(r"1/3 \d:\d\d:\d\d eta \d:\d\d:\d\d", nano), nano  # done/total, elapsed, time left
    assert "0/2" in next(line for line in lines if line.startswith("pi-1")) and "eta -:--:--" in lines[-1]
    assert "mobilenet_v1_0.25" in nano and nano.rstrip().endswith("…")  # the state is what gets cut


def _rendered(observer) -> str:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(observer.progress.make_tasks_table(observer.progress.tasks))
    return out.getvalue()


def test_log_file_holds_paramikos_log_with_secrets_redacted(tmp_path: Path) -> None:
    from orchestrator.logsetup import configure, redact

    assert redact("postgresql+psycopg://farm:s3cret@db/x") == "postgresql+psycopg://farm:***@db/x"
    assert redact("password=hunter2 token: abc123") == "password=*** token: ***"
    assert "AAAA" not in redact("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAB3Nza\n-----END OPENSSH PRIVATE KEY-----")
    log_file = tmp_path / "farm.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure(0, log_file)
        logging.getLogger("paramiko.transport").debug("userauth with passphrase=%s for %s", "open-sesame",
                                                      "postgresql://u:pw@h/db")
        logging.getLogger("orchestrator.transport.ssh").info("nano-1: connecting")
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
                root.removeHandler(handler)
        root.setLevel(level)
    text = log_file.read_text()
    assert "paramiko.transport" in text and "orchestrator.transport.ssh" in text and "nano-1: connecting" in text
    assert "open-sesame" not in text and ":pw@" not in text and "passphrase=***" in text


def test_shell_completion_is_typers(tmp_path: Path) -> None:
    farm = Path(sys.executable).parent / "farm"
    if not farm.exists():
        pytest.skip(f"no installed farm script beside {sys.executable} (pip install -e .)")
    done = subprocess.run([str(farm)], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "_FARM_COMPLETE": "complete_bash", "COMP_WORDS": "farm results --wi",
                               "COMP_CWORD": "2"})
    assert done.returncode == 0 and done.stdout.split() == ["--wide"], done
    shown = subprocess.run([str(farm), "--show-completion", "bash"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert "_FARM_COMPLETE=complete_bash" in shown.stdout, shown
