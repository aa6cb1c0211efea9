"""What a ``serve`` that answers one ``facts`` request imports: the cost ``farm inventory check`` pays per host.

Run for real: the built archive under Python 3.6 and this Python (whose venv has numpy, tflite_runtime and
onnxruntime installed), on this machine as a plain host (no device root). ``-v`` lists every module a
process loads, those imported through ``importlib.import_module`` too (``-X importtime`` leaves those out,
and 3.6 lacks it).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent import backends, edgetpu
from tests.test_agent import python36
from tests.test_agent_start import deployed

FACTS = '{"op": "facts", "id": 1}\n'
# What a facts contact must not import: tools, hashing, archives and sockets the ops that need them import,
# the platform module (os.uname and sys answer), and no inference runtime while its probe is cached.
HEAVY = {"subprocess", "platform", "hashlib", "socket", "shutil", "threading", "signal", "zlib", "zipfile",
         "compileall", "tempfile", "glob", "encodings.cp437", "tflite_runtime", "numpy", "onnxruntime", "tensorrt"}
# The agent's own modules that only jobs and the spool need, and backends whose probes the cache answers.
JOB_ONLY = {"agent.bench", "agent.spool", "agent.schema", "agent.hostlock", "agent.backends.tflite",
            "agent.backends.onnxruntime", "agent.backends.tensorrt", "agent.backends.tensorrt_engine"}


def loaded(python: str, argv: list[str], stdin: str, env: dict[str, str]) -> tuple[set[str], str]:
    done = subprocess.run([python, "-v", *argv], input=stdin, capture_output=True, text=True, timeout=300,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(re.findall(r"^import '([^']+)'", done.stderr, re.MULTILINE)), done.stdout


@pytest.fixture(params=["3.6", "this"])
def python(request: pytest.FixtureRequest) -> str:
    return python36() if request.param == "3.6" else sys.executable


def plain_host_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_AGENT_DIR"] = str(tmp_path / "state")
    return env


def test_serve_answering_facts_imports_nothing_heavy(tmp_path: Path, python: str) -> None:
    archive = deployed(tmp_path / "host")
    env = plain_host_env(tmp_path)
    # The first contact unpacks the archive and probes the runtimes (onnxruntime is imported once, cached).
    first = subprocess.run([python, str(archive), "serve"], input=FACTS, capture_output=True, text=True,
                           timeout=300, env=env, check=False)
    assert first.returncode == 0, first.stderr
    # Beyond what any agent start needs: the interpreter, running a zipapp (runpy), and json.
    floor, _ = loaded(python, ["-c", "import json, runpy, importlib.util"], "", env)
    modules, stdout = loaded(python, [str(archive), "serve"], FACTS, env)
    reply = json.loads(stdout)
    assert reply["ok"] and reply["facts"]["cpu_count"] >= 1, reply
    assert reply["facts"] == {**json.loads(first.stdout)["facts"], "conditions": reply["facts"]["conditions"]}
    assert "agent.facts" in modules and "agent.conditions" in modules  # the listing sees the agent's imports
    assert sorted((modules - floor) & HEAVY) == []
    assert sorted(modules & JOB_ONLY) == []


def test_the_platform_facts_are_what_platform_says(tmp_path: Path, python: str) -> None:
    archive = deployed(tmp_path / "host")
    env = plain_host_env(tmp_path)
    done = subprocess.run([python, str(archive), "facts"], capture_output=True, text=True, timeout=300,
                          env=env, check=True)
    facts = json.loads(done.stdout)
    asked = subprocess.run([python, "-c", ("import json, platform; print(json.dumps([platform.machine(), "
                            "platform.release(), platform.python_version(), platform.python_implementation()]))")],
                           capture_output=True, text=True, env=env, check=True)
    arch, kernel, version, implementation = json.loads(asked.stdout)
    assert (facts["arch"], facts["kernel"]) == (arch, kernel)
    assert facts["python"]["version"] == version and facts["python"]["implementation"] == implementation
    # The TFLite runtime is described once, and both fields say the same.
    assert facts["backends"]["tflite"] == facts["runtime"]


def test_the_platform_facts_of_two_part_versions_and_other_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import facts

    monkeypatch.setattr(sys, "version", "3.13 (main, Oct  7 2024, 00:00:00) [GCC 12.2.0]")
    assert facts.python_version() == "3.13.0"
    assert facts.python_implementation() == platform.python_implementation()


def test_every_backend_names_its_runtime_modules_in_the_registry() -> None:
    for name in backends.BACKENDS:
        assert tuple(backends.RUNTIME_MODULES.get(name, ())) == tuple(backends.get(name).runtime_modules), name


def _dpkg_packages_before(text: str) -> dict[str, str]:
    """The parse every paragraph of the status file went through before only libedgetpu's were parsed."""
    found = {}
    for paragraph in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", paragraph, re.MULTILINE))
        if fields.get("Package") in edgetpu.PACKAGES and "installed" in fields.get("Status", "").split():
            found[fields["Package"]] = fields.get("Version")
    return found


STATUS_CASES = [
    "",
    "Package: libedgetpu1-std\nStatus: install ok installed\nVersion: 16.0\n",
    # A deinstalled package, one mentioned only in another's Depends, and an indented (continuation) line.
    ("Package: python3-pycoral\nStatus: install ok installed\nDepends: libedgetpu1-std (>= 16)\nVersion: 2.0\n\n"
    "Package: libedgetpu1-max\nStatus: deinstall ok config-files\nVersion: 15.0\n\n"
    "Package: libedgetpu1-std\nStatus: install ok installed\nVersion: 16.0\nDescription: x\n"
    " Package: libedgetpu1-legacy-std\n"),
    # Blank lines of whitespace between paragraphs, several in a row, and a paragraph at the very start.
    ("Package:libedgetpu1-legacy-max\nStatus: install ok installed\nVersion: 1\n \t\n\n  \n"
    "Package: libedgetpu1-max\nStatus: install ok installed\nVersion: 2\n\r\n\nPackage: libedgetpu1-max\n"
    "Status: install ok installed\nVersion: 3"),
    "\n\nPackage: libedgetpu1-std\nVersion: 4\nStatus: install ok installed\n\n\n",
]


@pytest.mark.parametrize("text", STATUS_CASES)
def test_libedgetpu_packages_are_read_from_dpkg_status_as_before(tmp_path: Path, text: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    real = Path("/var/lib/dpkg/status")
    # Among a real system's packages when there is one: the paragraphs around them must not matter.
    status.write_text((real.read_text(errors="replace") + "\n" if real.is_file() else "") + text)
    monkeypatch.setenv("FARM_DEVICE_ROOT", str(tmp_path))
    expected = _dpkg_packages_before(status.read_text())
    assert edgetpu._dpkg_packages() == expected
    if text:
        assert expected, "the case names an installed libedgetpu package"
    assert edgetpu.library()["package"] == (min(expected) if expected else None)


def test_sysfs_find_finds_what_glob_finds(tmp_path: Path) -> None:
    import glob

    from agent.sysfs import find

    for relative in ("cpu0/cpufreq/scaling_governor", "cpu1/cpufreq/other", "cpufreq/x", ".cpu2/cpufreq/scaling_governor",
                     "thermal_zone10/temp", "thermal_zone2/temp", "i2c/1-0040/iio:device0/rail_name_0",
                     "site/tflite_runtime-2.14.0.dist-info/METADATA", "site/tflite_runtime-1.egg-info"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "cpu0")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    patterns = ["*", "cpu*", "cpu*/cpufreq/scaling_governor", "*/cpufreq/*", "thermal_zone*", "*zone*0/temp",
                "i2c/*/iio:device*", "site/tflite_runtime-*.dist-info/METADATA", "site/tflite_runtime-*.egg-info",
                "link/*", "dangling", "missing/*", "*/*/*", "c*u*"]
    for pattern in patterns:
        path = str(tmp_path / pattern)
        assert find(path) == glob.glob(path), pattern
    assert find(str(tmp_path / "cpu*/cpufreq/scaling_governor")) == [str(tmp_path / "cpu0/cpufreq/scaling_governor")]


def test_a_simulated_boards_state_files_keep_their_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from agent import restore_state

    monkeypatch.setenv("FARM_DEVICE_ROOT", str(tmp_path))
    expected = hashlib.sha1(str(tmp_path).encode("utf-8")).hexdigest()[:12]
    assert restore_state.state_path("/state") == f"/state/power-restore-{expected}.json"
