"""The agent's own work in a job around its benchmark: a model hashed once per file, the conditions read
in one pass (the firmware's throttling flags once at the start, not twice), and each part's time kept."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from agent import model_hash
from agent.bench import run_job
from agent.result_schema import AGENT_WORK_PARTS
from agent.schema import make_job, validate_result
from farm_lab import hardware

QUICK = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 3, "min_seconds": 0.0}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_models_digest_comes_from_the_cache_until_the_file_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    model = tmp_path / "model.tflite"
    model.write_bytes(b"A" * 5000)
    assert model_hash.verified_sha256(str(model), str(state)) == (sha(b"A" * 5000), False)
    assert model_hash.verified_sha256(str(model), str(state)) == (sha(b"A" * 5000), True)

    # Rewritten in place, same size, its mtime put back: the ctime still moved, so it is hashed again.
    before = model.stat()
    model.write_bytes(b"B" * 5000)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert model.stat().st_size == before.st_size and model.stat().st_mtime_ns == before.st_mtime_ns
    assert model_hash.verified_sha256(str(model), str(state)) == (sha(b"B" * 5000), False)

    # Replaced by another file (a new inode) with the first content: hashed again, then cached.
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"A" * 5000)
    fresh.replace(model)
    assert model_hash.verified_sha256(str(model), str(state)) == (sha(b"A" * 5000), False)
    assert model_hash.verified_sha256(str(model), str(state)) == (sha(b"A" * 5000), True)

    # A cache file cut short (a crash mid-write) is no digest: hashed again.
    for entry in (state / "hashes").iterdir():
        entry.write_text('{"identity": [')
    assert model_hash.verified_sha256(str(model), str(state)) == (sha(b"A" * 5000), False)


def test_two_paths_to_one_file_share_its_digest_and_a_missing_file_is_an_error(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"C" * 100)
    link = tmp_path / "link.tflite"
    link.symlink_to(model)
    assert model_hash.verified_sha256(str(model), str(tmp_path))[1] is False
    assert model_hash.verified_sha256(str(link), str(tmp_path)) == (sha(b"C" * 100), True)
    with pytest.raises(OSError):
        model_hash.verified_sha256(str(tmp_path / "absent"), str(tmp_path))


@pytest.fixture
def pi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A simulated Raspberry Pi 4 whose firmware reports throttling, and a log of every vcgencmd call."""
    root = tmp_path / "board"
    root.mkdir()
    hardware.install_rpi(root, "4B")
    hardware.install_throttled(root, 0x50005)
    counting = tmp_path / "counting"
    counting.mkdir()
    (counting / "python3").symlink_to(sys.executable)  # the stand-ins' shebang finds this Python
    log = tmp_path / "vcgencmd.log"
    wrapper = counting / "vcgencmd"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {sys.executable} '
                       f'{hardware.standins_dir() / "vcgencmd"} "$@"\n')
    wrapper.chmod(0o755)
    for name, value in hardware.standin_env(root, {"PATH": f"{counting}{os.pathsep}{os.environ['PATH']}"}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"{counting}{os.pathsep}{os.environ['PATH']}")  # the counting one first
    monkeypatch.setenv("FARM_AGENT_DIR", str(tmp_path / "agent"))
    return log


def test_a_short_job_on_a_pi_reads_the_firmware_flags_before_and_after_only(pi: Path, shared_model: Path) -> None:
    job = make_job("work-1", str(shared_model), sha(shared_model.read_bytes()), timing=QUICK)
    first = validate_result(run_job(job))
    assert first["status"] == "succeeded", first.get("error")
    # before + after; the sampler's first check is the before reading, and the run is shorter than its 1 s period
    assert pi.read_text().splitlines() == ["get_throttled", "get_throttled"]
    during = first["conditions"]["during"]
    assert during["throttle_checks"] == 1
    assert during["throttled"] is True and during["throttle_reasons"] == ["under-voltage", "throttled"]
    assert first["throttled"] is True

    work = first["agent_work"]
    assert set(AGENT_WORK_PARTS) <= set(work) and all(work[p] >= 0 for p in AGENT_WORK_PARTS)
    assert work["hash_cached"] is False
    # The parts are the agent's time around the benchmark: together less than the whole job.
    assert sum(work[p] for p in AGENT_WORK_PARTS) < (first["finished_at"] - first["started_at"]) * 1e3

    second = run_job(dict(job, job_id="work-2"))
    assert second["status"] == "succeeded" and second["agent_work"]["hash_cached"] is True
    assert len(pi.read_text().splitlines()) == 4


def test_a_job_whose_model_changed_under_the_cache_fails_on_the_new_digest(pi: Path, tmp_path: Path,
                                                                              shared_model: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(shared_model.read_bytes())
    job = make_job("work-3", str(model), sha(model.read_bytes()), timing=QUICK)
    assert run_job(job)["status"] == "succeeded"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # one byte flipped in place, size and mtime kept
    before = model.stat()
    model.write_bytes(bytes(data))
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    failed = run_job(dict(job, job_id="work-4"))
    assert failed["status"] == "failed" and failed["error"]["kind"] == "infrastructure"
    assert sha(bytes(data)) in failed["error"]["message"]


RUNTIME_PROBE = """
import json, sys
from agent.backends import tflite_loader
described = tflite_loader.describe_runtime()
loaded = sorted(m for m in ("numpy", "tflite_runtime.interpreter") if m in sys.modules)
try:
    name, version, _ = tflite_loader.load_runtime()
    imported = [name, version]
except tflite_loader.RuntimeMissing as exc:
    imported = str(exc)
print(json.dumps({"described": described, "loaded_before_import": loaded, "imported": imported}))
"""


def probe_runtime(env: dict[str, str]) -> dict:
    import json
    import subprocess

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", RUNTIME_PROBE], capture_output=True, text=True, timeout=120,
                          check=True, cwd=REPO, env=env)
    return json.loads(done.stdout)


def test_facts_read_the_runtimes_version_from_its_metadata_without_importing_it() -> None:
    found = probe_runtime(dict(os.environ))
    # The same name and version an import gives, and neither numpy nor the interpreter loaded to get them.
    assert found["described"] == {"name": found["imported"][0], "version": found["imported"][1], "error": None}
    assert found["described"]["name"] == "tflite_runtime" and found["loaded_before_import"] == []


def test_a_runtime_that_is_installed_but_cannot_load_fails_at_import_not_in_facts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    package = site / "tflite_runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('libtensorflowlite.so: cannot open shared object')\n")
    (site / "tflite_runtime-9.9.9.dist-info").mkdir()
    (site / "tflite_runtime-9.9.9.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tflite-runtime\nVersion: 9.9.9\n\nVersion: not a header\n")
    found = probe_runtime({**os.environ, "PYTHONPATH": str(site)})
    assert found["described"] == {"name": "tflite_runtime", "version": "9.9.9", "error": None}
    # Loading it (what a job does) still tells the truth, with the import's own error.
    assert isinstance(found["imported"], str) and "cannot open shared object" in found["imported"]
