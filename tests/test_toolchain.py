"""Toolchain versions: read from facts and controller probes, changes recorded as events for the nightly job."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator import toolchain
from orchestrator.store import open_store
from orchestrator.store.schema import utcnow
from tests.lab_support import RunningLab
from tests.test_cli_run import farm
from tests.test_compile import standin  # noqa: F401 - fixture
from tests.test_lab import EXPECTED

pytest_plugins = ["tests.lab_support"]

JETSON_JP46 = {
    "board": "NVIDIA Jetson (R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64)",
    "kernel": "4.9.253-tegra", "runtime": {"name": "tflite_runtime", "version": "2.11.0"},
    "edgetpu": {"library": {"path": "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", "package": "libedgetpu1-max",
                            "version": "16.0"},
                "pycoral": {"present": True, "version": "2.0.0"}},
}


def test_versions_from_a_jetsons_facts() -> None:
    versions = toolchain.versions_from_facts(JETSON_JP46)
    assert versions == {"edgetpu_compiler": None, "libedgetpu": "16.0 (max)", "tflite_runtime": "tflite_runtime 2.11.0",
                        "pycoral": "2.0.0", "l4t": "32.7.1", "jetpack": "4.6.1", "kernel": "4.9.253-tegra"}


def test_missing_or_partial_facts_give_none_not_errors() -> None:
    versions = toolchain.versions_from_facts({"runtime": {"name": None, "version": None, "error": "none"}})
    assert set(versions.values()) == {None}
    assert toolchain.libedgetpu_of({"path": "/usr/lib/libedgetpu.so.1", "package": None, "version": None}) \
        == "unknown version"
    assert toolchain.jetpack_of("35.4.1") == "5.1.2" and toolchain.jetpack_of("99.1.0") is None
    assert toolchain.l4t_of({"l4t": "36.3.0"}) == "36.3.0"


def test_first_sighting_is_not_a_change_but_every_later_difference_is(db_url: str) -> None:
    store = open_store(db_url)
    try:
        before = utcnow() - timedelta(seconds=1)
        assert toolchain.record(store, "nano-1", toolchain.versions_from_facts(JETSON_JP46)) == []
        assert toolchain.record(store, "nano-1", toolchain.versions_from_facts(JETSON_JP46)) == []
        upgraded = {**JETSON_JP46, "runtime": {"name": "tflite_runtime", "version": "2.14.0"},
                    "edgetpu": {"library": {"path": "/x", "package": "libedgetpu1-std", "version": "16.0"}}}
        middle = utcnow() - timedelta(microseconds=1)
        changes = toolchain.record(store, "nano-1", toolchain.versions_from_facts(upgraded))
        assert {(c["component"], c["old"], c["new"]) for c in changes} == {
            ("tflite_runtime", "tflite_runtime 2.11.0", "tflite_runtime 2.14.0"),
            ("libedgetpu", "16.0 (max)", "16.0 (std)"), ("pycoral", "2.0.0", None)}
        since = toolchain.changes_since(store, before)
        assert len(since) == 3 and all(c["host"] == "nano-1" for c in since)
        assert len(toolchain.changes_since(store, middle)) == 3
        assert toolchain.changes_since(store, utcnow() + timedelta(seconds=5)) == []
        current = {(r.host, r.component): r.version for r in toolchain.current_versions(store)}
        assert current["nano-1", "tflite_runtime"] == "tflite_runtime 2.14.0"
    finally:
        store.close()


def test_a_compiler_update_on_the_controller_reaches_the_nightly_trigger(
        tmp_path: Path, standin: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from orchestrator.nightly.triggers import toolchain_probe

    probe_toolchains = toolchain_probe()

    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    monkeypatch.setenv("FARM_EDGETPU_COMPILER", str(standin))
    try:
        assert probe_toolchains(store, [], None) == []  # first probe: nothing to compare with
        monkeypatch.setenv("FARM_STANDIN_COMPILER_VERSION", "16.1.400000000")
        (change,) = probe_toolchains(store, [], None)
        assert (change["host"], change["component"], change["old"], change["new"]) == \
            (toolchain.CONTROLLER, "edgetpu_compiler", "16.0.384591198", "16.1.400000000")
        controller = toolchain.controller_versions(str(standin))
        assert controller["tflite_runtime"].startswith("tflite_runtime ") and controller["kernel"]
    finally:
        store.close()


def test_toolchain_over_the_simulated_lab(running_lab: RunningLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    store = open_store(db)
    try:
        probe = toolchain.probe_and_record(store, list(running_lab.inventory.hosts),
                                           {"known_hosts": running_lab.known_hosts})
    finally:
        store.close()
    by_host = {h.host: h for h in probe.hosts}
    assert by_host[toolchain.CONTROLLER].versions["kernel"]
    for board, (_, _, runtime, _, kernel) in EXPECTED.items():
        versions = by_host[running_lab.host(board).name].versions
        assert versions["kernel"] == kernel
        assert versions["tflite_runtime"] == (f"tflite_runtime {runtime}" if runtime else None)
    assert probe.changes == []
    shown = farm("toolchain", "-i", str(running_lab.inventory.path), "--known-hosts", str(running_lab.known_hosts),
                 "--db", db).stdout
    assert all(running_lab.host(board).name in shown for board in EXPECTED)
    assert "4.9.253-tegra" in shown and "No toolchain change since the last probe." in shown, shown
