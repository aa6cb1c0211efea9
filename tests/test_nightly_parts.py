"""Nightly building blocks: the verdict under noise, drift, scheduling with real cron/systemd tools, JUnit, webhook."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from orchestrator.errors import FarmError
from orchestrator.nightly import schedule
from orchestrator.nightly.outputs import NotifyError, junit_xml, markdown, notify
from orchestrator.nightly.runner import CellOutcome, NightlyOutcome
from orchestrator.nightly.triggers import likely_causes, newest_compiles, recompile_for
from orchestrator.results import CellTrials
from orchestrator.verdict import Verdict, classify, detect_drift, pettitt
from tests.conftest import missing_service


def trials(rng: random.Random, center: float, n_trials: int = 3, n: int = 40, noise: float = 0.03,
           trial_shift: float = 0.01) -> list[list[float]]:
    """Latency-like samples: log-normal jitter, a per-trial offset, and a long right tail."""
    out = []
    for _ in range(n_trials):
        offset = center * (1 + rng.uniform(-trial_shift, trial_shift))
        out.append([offset * rng.lognormvariate(0, noise) + (center * 0.5 if rng.random() < 0.02 else 0)
                    for _ in range(n)])
    return out


def test_aa_comparisons_of_identical_distributions_never_regress():
    rng = random.Random(7)
    states = [classify(trials(rng, 10.0), trials(rng, 10.0)).state for _ in range(300)]
    assert states.count("regressed") == 0 and states.count("improved") == 0


def test_a_real_ten_percent_slowdown_is_caught_and_its_size_reported():
    rng = random.Random(8)
    verdicts = [classify(trials(rng, 10.0), trials(rng, 11.0)) for _ in range(50)]
    assert all(v.state == "regressed" for v in verdicts)
    assert all(1.07 < v.ratio < 1.13 for v in verdicts)
    assert all(v.p_value < 0.002 for v in verdicts)


def test_a_speedup_is_improved_not_regressed():
    rng = random.Random(9)
    assert classify(trials(rng, 10.0), trials(rng, 8.0)).state == "improved"


def test_a_change_smaller_than_the_minimum_effect_is_unchanged_even_when_significant():
    rng = random.Random(10)
    verdict = classify(trials(rng, 10.0, noise=0.005, trial_shift=0.001),
                       trials(rng, 10.3, noise=0.005, trial_shift=0.001))
    assert verdict.p_value < 0.002 and verdict.state == "unchanged" and "< 5.0%" in verdict.detail


def test_trials_that_disagree_raise_the_bar():
    # One baseline trial 20% slower than the others: a 12% change is within what trials already show.
    rng = random.Random(11)
    base = trials(rng, 10.0, noise=0.01, trial_shift=0)
    base[1] = [x * 1.2 for x in base[1]]
    verdict = classify(base, trials(rng, 11.2, noise=0.01, trial_shift=0))
    assert verdict.state == "unchanged" and verdict.threshold > 0.3


def test_too_few_samples_is_invalid():
    assert classify([[1.0] * 3], [[1.0] * 30]).state == "invalid"


def test_pettitt_finds_the_step_and_drift_needs_a_lasting_shift():
    rng = random.Random(12)
    flat = [10 * rng.lognormvariate(0, 0.01) for _ in range(12)]
    stepped = flat[:7] + [x * 1.15 for x in flat[7:]]
    index, p_value = pettitt(stepped)
    assert index == 7 and p_value < 0.05
    drift = detect_drift(stepped)
    assert drift is not None and 1.12 < drift.ratio < 1.18
    assert detect_drift(flat) is None
    assert detect_drift(stepped[:4]) is None  # too short to tell


def test_a_slow_slide_is_flagged_as_drift():
    # 2% a night: never 5% between two nights, 24% over twelve.
    series = [10 * 1.02 ** i for i in range(12)]
    assert all(b / a < 1.05 for a, b in itertools.pairwise(series))
    assert detect_drift(series) is not None


def outcome_with(states: list[str]) -> NightlyOutcome:
    cells = []
    for i, state in enumerate(states):
        host = ("nano1", "rpi")[i % 2]
        key = f"{host}|m{i}|cpu|t1|p-|u-"
        cell = CellTrials(key, key, f"{host} · model{i} · cpu · 1 thr")
        cells.append(CellOutcome(cell, Verdict(state, ratio=1.2 if state == "regressed" else 1.0, p_value=1e-5,
                                               baseline_ms=1.0, current_ms=1.2, detail=f"<{state}> & \"x\""),
                                 causes=likely_causes(key, TRIGGERS, set())))
    return NightlyOutcome(3, True, "", triggers=TRIGGERS, run_ids=[7, 8, 9], cells=cells)


TRIGGERS = [{"host": "nano1", "component": "libedgetpu", "old": "15.0", "new": "16.0"}]


def test_junit_file_reads_back_with_junitparser(tmp_path: Path):
    from junitparser import Error, Failure, JUnitXml, Skipped

    path = tmp_path / "nightly.xml"
    path.write_text(junit_xml(outcome_with(["regressed", "unchanged", "invalid", "new", "regressed", "improved"])))
    xml = JUnitXml.fromfile(str(path))
    suite = next(iter(xml))
    cases = list(suite)
    assert len(cases) == 6 and suite.failures == 2 and suite.errors == 1 and suite.skipped == 1
    failed = [c for c in cases if any(isinstance(r, Failure) for r in c.result)]
    assert {c.name for c in failed} == {"model0 · cpu · 1 thr", "model4 · cpu · 1 thr"}
    assert "likely cause: nano1: libedgetpu 15.0 → 16.0" in failed[0].result[0].text
    assert any(isinstance(r, Error) for c in cases for r in c.result)
    assert any(isinstance(r, Skipped) for c in cases for r in c.result)


def test_markdown_names_the_toolchain_change_and_escapes_nothing_needed():
    text = markdown(outcome_with(["regressed", "unchanged"]))
    assert "nano1: libedgetpu 15.0 → 16.0" in text
    regressed = [line for line in text.splitlines() if "| regressed" in line]
    assert regressed and all("| nano1: libedgetpu 15.0 → 16.0 |" in line for line in regressed)
    assert text.index("regressed") < text.index("unchanged")


class _Hook(BaseHTTPRequestHandler):
    failures_left = 0
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.failures_left > 0:
            _Hook.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield server
    server.shutdown()


def test_notify_retries_until_the_hook_answers(webhook):
    _Hook.failures_left = 2
    notify(f"http://127.0.0.1:{webhook.server_port}/hook", outcome_with(["regressed"]), wait_max=0.1)
    assert len(_Hook.received) == 1
    assert "1 regressed" in _Hook.received[0]["text"] and _Hook.received[0]["exit_code"] == 0


def test_notify_gives_up_with_a_reason(webhook):
    _Hook.failures_left = 10
    with pytest.raises(NotifyError, match="HTTP 503"):
        notify(f"http://127.0.0.1:{webhook.server_port}/hook", outcome_with(["regressed"]), attempts=3, wait_max=0.1)
    assert _Hook.received == []


@pytest.fixture
def crontab_saved():
    if shutil.which("crontab") is None:
        missing_service("`crontab` is not installed: apt-get install cron")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    yield
    if before.returncode == 0:
        subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True, check=False)


def test_cron_install_is_idempotent_and_uninstall_removes_only_ours(crontab_saved, tmp_path: Path):
    schedule.write_crontab(["# someone else's", "5 4 * * * /usr/bin/true"])
    for at in ("02:30", "03:15"):
        schedule.install_cron(at, ["--matrix-file", "my matrices.yaml", "--junit", "/tmp/n.xml"], tmp_path,
                              tmp_path / "log")
    lines = schedule.read_crontab()
    ours = [line for line in lines if line.endswith(schedule.CRON_TAG)]
    assert len(ours) == 1 and ours[0].startswith("15 3 * * * ")
    assert "'my matrices.yaml'" in ours[0]  # quoted for the shell cron runs it with
    assert [e.at for e in schedule.installed() if e.kind == "cron"] == ["03:15"]
    assert schedule.uninstall_cron() == 1
    assert schedule.read_crontab() == ["# someone else's", "5 4 * * * /usr/bin/true"]
    assert schedule.uninstall_cron() == 0


def test_systemd_units_verify_and_uninstall_leaves_foreign_files(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    schedule.install_systemd("02:30", ["--db", "sqlite:////tmp/100% $HOME.db"], tmp_path)
    _entry, note = schedule.install_systemd("04:05", ["--db", "sqlite:////tmp/100% $HOME.db"], tmp_path)
    units = sorted(p.name for p in schedule.systemd_dir().iterdir())
    assert units == ["farm-nightly.service", "farm-nightly.timer"]
    assert "OnCalendar=*-*-* 04:05:00" in (schedule.systemd_dir() / "farm-nightly.timer").read_text()
    assert "systemctl --user" in note or "enabled" in note
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", *map(str, schedule.systemd_dir().iterdir())],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    installed = [e for e in schedule.installed() if e.kind == "systemd"]
    assert installed[0].command[-1] == "sqlite:////tmp/100% $HOME.db"  # specifiers and $ survive
    foreign = schedule.systemd_dir() / "other.timer"
    foreign.write_text("[Timer]\n")
    assert schedule.uninstall_systemd() == 2
    assert sorted(p.name for p in schedule.systemd_dir().iterdir()) == ["other.timer"]


def test_systemd_install_refuses_to_overwrite_a_unit_it_did_not_write(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    schedule.systemd_dir().mkdir(parents=True)
    (schedule.systemd_dir() / "farm-nightly.timer").write_text("[Timer]\nOnCalendar=daily\n")
    with pytest.raises(FarmError, match="not written by farm"):
        schedule.install_systemd("02:30", [], tmp_path)


@pytest.mark.parametrize("bad", ["25:00", "2:3", "noon", "", "12:60"])
def test_bad_times_are_refused(bad: str):
    with pytest.raises(FarmError, match="HH:MM"):
        schedule.parse_time(bad)


def test_likely_causes_follow_where_a_change_reaches() -> None:
    compiler = {"host": "@controller", "component": "edgetpu_compiler", "old": "15.0", "new": "16.0"}
    runtime_here = {"host": "@controller", "component": "tflite_runtime", "old": "2.13", "new": "2.14"}
    jetpack = {"host": "nano1", "component": "jetpack", "old": "4.4", "new": "4.6.1"}
    triggers = [compiler, runtime_here, jetpack]
    assert likely_causes("nano1|abc|edgetpu|t1|p10W|uusb3", triggers, set()) == [compiler, jetpack]
    assert likely_causes("nano1|abc|cpu|t1|p10W|u-", triggers, set()) == [jetpack]
    assert likely_causes("rpi|abc|cpu|t4|p-|u-", triggers, set()) == []
    # An agent run through the local transport runs on the controller machine: its changes reach it.
    assert likely_causes("local|abc|cpu|t1|p-|u-", triggers, {"local"}) == [runtime_here]


def test_a_compiler_update_recompiles_what_the_old_one_compiled_keeping_lineage(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from farm_lab import STANDIN_COMPILER as standin
    from orchestrator.models import registry
    from orchestrator.models.compiler import compile_models
    from orchestrator.results.trials import lineage_sha
    from orchestrator.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        built = [row for row, _ in registry.build(store, "conv_stack", [1, 2])]
        alone = [row for row, _ in registry.build(store, "dense_stack", [2])]
        monkeypatch.setenv("FARM_STANDIN_COMPILER_VERSION", "15.0.340273435")
        old_pair = [c.row for c in compile_models(store, built, compiler=str(standin))]
        old_alone = [c.row for c in compile_models(store, alone, compiler=str(standin))]
        assert recompile_for(store, [], compiler=str(standin)) == []
        monkeypatch.setenv("FARM_STANDIN_COMPILER_VERSION", "16.0.384591198")
        change = {"host": "@controller", "component": "edgetpu_compiler", "old": "15.0.340273435",
                  "new": "16.0.384591198"}
        made = recompile_for(store, [change], compiler=str(standin))
        assert sorted(m.name for m in made) == sorted(m.name.replace("15.0.340273435", "16.0.384591198")
                                                      for m in old_pair + old_alone)
        assert all(m.compiler_version == "16.0.384591198" for m in made)
        # Co-compiled stay co-compiled; the lone one stays alone.
        pair_new = [m for m in made if m.source_model_id in {b.id for b in built}]
        assert all(set(m.compile_report["co_compiled_with"]) == ({b.name for b in built} - {
            next(b.name for b in built if b.id == m.source_model_id)}) for m in pair_new)
        lone_new = [m for m in made if m.source_model_id == alone[0].id]
        assert len(lone_new) == 1 and lone_new[0].compile_report["co_compiled_with"] == []
        with store.session() as session:
            for old in old_pair + old_alone:
                twin = next(m for m in made if m.source_model_id == old.source_model_id)
                assert lineage_sha(session, old) == lineage_sha(session, twin)
        # Tonight's models: the new compiles replace the old ones, sources stay.
        every = registry.list_models(store)
        kept = {m.id for m in newest_compiles(every, store)}
        assert kept == {m.id for m in every} - {m.id for m in old_pair + old_alone}
        # Asked again (a second nightly with the same change), nothing is compiled twice.
        assert recompile_for(store, [change], compiler=str(standin)) == []
    finally:
        store.close()


@pytest.mark.parametrize(("regression", "field"), [
    ("{min_effect: -1}", "regression.min_effect"), ("{trials: 2.5}", "regression.trials"),
    ("{alpha: 0.9}", "regression.alpha"), ("{effect: 0.1}", "regression.effect"), ("5", "regression"),
    ("{confirm: 1.5}", "regression.confirm"), ("{confirm: 11}", "regression.confirm"),
])
def test_a_matrix_regression_setting_out_of_range_names_its_field(tmp_path: Path, regression: str,
                                                                   field: str) -> None:
    from orchestrator.matrix import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text(f"matrices:\n  nightly:\n    models: [all]\n    regression: {regression}\n")
    with pytest.raises(FarmError) as raised:
        load_matrix("nightly", path)
    assert f"{path}:4" in str(raised.value) and field in str(raised.value)


def test_a_matrix_carries_its_regression_settings(tmp_path: Path) -> None:
    from orchestrator.matrix import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text("matrices:\n  nightly:\n    regression: {min_effect: 0.1, trials: 5, confirm: 0}\n")
    assert load_matrix("nightly", path).regression == {"min_effect": 0.1, "trials": 5, "confirm": 0}


@pytest.mark.parametrize(("interference", "field", "expected"), [
    ("{min_cpu_share: -0.1}", "interference.min_cpu_share", "a non-negative number, or null"),
    ("{max_other_load: yes}", "interference.max_other_load", "a non-negative number, or null"),
    ("{cpu_share: 0.8}", "interference.cpu_share", "one of min_cpu_share, max_other_load"),
    ("[0.8]", "interference", "a mapping of min_cpu_share"),
])
def test_a_matrix_interference_threshold_that_is_wrong_names_its_line_field_and_what_was_expected(
        tmp_path: Path, interference: str, field: str, expected: str) -> None:
    from orchestrator.matrix import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text(f"matrices:\n  nightly:\n    models: [all]\n    interference: {interference}\n")
    with pytest.raises(FarmError) as raised:
        load_matrix("nightly", path)
    assert f"{path}:4" in str(raised.value) and field in str(raised.value) and expected in str(raised.value)


def test_a_matrix_keeps_its_interference_thresholds_and_null_stays_null_to_turn_a_rule_off(tmp_path: Path) -> None:
    from orchestrator.matrix import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text("matrices:\n  nightly:\n    interference: {min_cpu_share: 0.5, max_other_load: null}\n")
    assert load_matrix("nightly", path).interference == {"min_cpu_share": 0.5, "max_other_load": None}
