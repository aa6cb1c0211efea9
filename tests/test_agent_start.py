"""What makes an agent start cheap: the archive unpacks itself once, runtime probes are kept per install.

Run for real: the built archive under Python 3.6 and this Python, a stand-in ``onnxruntime`` package
(a real package on PYTHONPATH that counts its imports) for the probe cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.deploy import build_agent
from tests.test_agent import python36


def deployed(folder: Path) -> Path:
    bundle = build_agent()
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / bundle.file_name
    archive.write_bytes(bundle.data)
    return archive


def run(python: str, archive: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(archive), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize(("python", "no_byte_code"), [("3.6", "1"), ("3.6", ""), ("this", "1"), ("this", "")])
def test_the_first_start_unpacks_the_archive_and_later_starts_run_from_byte_code(
        tmp_path: Path, python: str, no_byte_code: str) -> None:
    interpreter = python36() if python == "3.6" else sys.executable
    archive = deployed(tmp_path)
    folder = tmp_path / build_agent().unpacked_name
    # With PYTHONDONTWRITEBYTECODE the unpack compiles everything; without, the imports write their own.
    done = run(interpreter, archive, "version", env={"PYTHONDONTWRITEBYTECODE": no_byte_code})
    assert done.returncode == 0, done.stderr
    assert (folder / "agent" / "__init__.py").read_bytes() == (Path("agent") / "__init__.py").read_bytes()
    cached = sorted(p.name for p in (folder / "agent" / "__pycache__").iterdir())
    assert any(name.startswith("__main__.") and name.endswith(".pyc") for name in cached), cached
    inode = folder.stat().st_ino
    again = run(interpreter, archive, "version", env={"PYTHONDONTWRITEBYTECODE": no_byte_code})
    assert again.returncode == 0 and again.stdout == done.stdout
    assert folder.stat().st_ino == inode, "the second start unpacked the archive again"
    assert sorted(p.name for p in tmp_path.glob("agent-*")) == sorted([archive.name, folder.name])


def test_agents_starting_together_on_a_fresh_archive_all_run_and_leave_one_folder(tmp_path: Path) -> None:
    archive = deployed(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda _: run(sys.executable, archive, "version"), range(8)))
    assert [d.returncode for d in done] == [0] * 8, [d.stderr for d in done]
    assert len({d.stdout for d in done}) == 1
    # The archive and one folder: every other start's copy was removed when it lost the rename.
    assert sorted(p.name for p in tmp_path.glob("agent-*")) == sorted([archive.name, build_agent().unpacked_name])


def test_where_the_folder_cannot_be_made_the_agent_runs_from_the_archive(tmp_path: Path) -> None:
    archive = deployed(tmp_path)
    # A file where the folder would go: the rename fails whatever the permissions (root ignores a read-only home).
    blocker = tmp_path / build_agent().unpacked_name
    blocker.write_text("not a folder")
    done = run(sys.executable, archive, "facts")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agent_version"]
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == []


STANDIN_ORT = '''
import os
with open(os.environ["ORT_IMPORTS"], "a") as counter:
    counter.write("imported\\n")
__version__ = "{version}"
def get_available_providers():
    return ["CPUExecutionProvider", "StandinExecutionProvider"]
'''


def standin_onnxruntime(folder: Path, version: str) -> None:
    package = folder / "onnxruntime"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(STANDIN_ORT.format(version=version))


def test_the_runtime_probe_runs_once_per_install_and_again_when_the_install_changes(tmp_path: Path) -> None:
    archive = deployed(tmp_path / "host")
    site = tmp_path / "site"
    standin_onnxruntime(site, "1.2.3")
    imports = tmp_path / "imports.txt"
    env = {"PYTHONPATH": str(site), "ORT_IMPORTS": str(imports), "FARM_AGENT_DIR": str(tmp_path / "state")}

    def facts(**more: str) -> dict:
        done = run(sys.executable, archive, "facts", env={**env, **more})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["backends"]["onnxruntime"]

    def import_count() -> int:
        return len(imports.read_text().splitlines()) if imports.exists() else 0

    first = facts()
    assert first["version"] == "1.2.3" and "StandinExecutionProvider" in first["providers"]
    assert import_count() == 1
    assert facts() == first and import_count() == 1, "an unchanged install was imported again"
    assert (tmp_path / "state" / "probe-cache.json").is_file()

    standin_onnxruntime(site, "1.2.4")  # an upgrade: the package's file is replaced
    assert facts()["version"] == "1.2.4" and import_count() == 2
    assert facts()["version"] == "1.2.4" and import_count() == 2

    # Another install found first on the path is another key, and the cache can be turned off.
    other = tmp_path / "other-site"
    standin_onnxruntime(other, "2.0.0")
    assert facts(PYTHONPATH=str(other))["version"] == "2.0.0" and import_count() == 3
    facts(FARM_PROBE_CACHE="0")
    facts(FARM_PROBE_CACHE="0")
    assert import_count() == 5


def test_a_corrupt_probe_cache_is_probed_over_not_trusted(tmp_path: Path) -> None:
    archive = deployed(tmp_path / "host")
    site = tmp_path / "site"
    standin_onnxruntime(site, "3.1.4")
    state = tmp_path / "state"
    state.mkdir()
    (state / "probe-cache.json").write_text('{"half a file')
    env = {"PYTHONPATH": str(site), "ORT_IMPORTS": str(tmp_path / "imports.txt"), "FARM_AGENT_DIR": str(state)}
    done = run(sys.executable, archive, "facts", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backends"]["onnxruntime"]["version"] == "3.1.4"
    assert json.loads((state / "probe-cache.json").read_text())  # rewritten whole


def test_hosts_sharing_one_home_checked_together_on_a_fresh_home_are_all_reached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several inventory hosts may be one login (two CPUs of one machine, two USB ports of one host): each
    starts the agent, finds it missing, and uploads it, while another's upload lands in between. A start
    that failed for want of the archive is not an agent that fails: every host is reached."""
    from orchestrator.facts_check import check_hosts
    from orchestrator.inventory import Host

    hosts = [Host(name=f"share{i}", transport="local", python=sys.executable) for i in range(6)]
    for attempt in range(3):  # the race needs a start to fail before another host's upload: each round is fresh
        home = tmp_path / f"home{attempt}"
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        checks = check_hosts(hosts, {})
        assert [(c.host.name, c.error) for c in checks if not c.reachable] == []
        assert any(c.uploaded_agent for c in checks)
        assert sorted(p.name for p in (home / ".cache/farm").glob("agent-*.pyz")) == [build_agent().file_name]
