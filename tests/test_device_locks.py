"""Per-accelerator locks: a lock per device beside the host lock, and jobs that really run side by side."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent import hostlock
from agent.schema import make_job
from tests.test_spool import Serve, collect_until_done

QUICK = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.0}


def per_device(*devices: str) -> dict:
    return {"mode": "per-accelerator", "devices": list(devices)}


def test_device_locks_coexist_and_exclude_the_whole_host() -> None:
    assert hostlock.acquire("ctl", "1.1", lease=60, devices=["usb-port:2-1"])[0]
    assert hostlock.acquire("ctl", "2.1", lease=60, devices=["usb-port:1-1.2"])[0]  # another TPU: free
    taken, other = hostlock.acquire("ctl", "3.1", lease=60, devices=["usb-port:2-1"])
    assert not taken and other["key"] == "1.1"  # the same TPU: busy
    taken, other = hostlock.acquire("ctl", "4.1", lease=60)  # a whole-host job waits for every device
    assert not taken and other["key"] in ("1.1", "2.1")
    assert sorted(doc["key"] for doc in hostlock.holders()) == ["1.1", "2.1"]
    assert {doc["device"] for doc in hostlock.holders()} == {"usb-port_2-1", "usb-port_1-1.2"}
    assert hostlock.renew("1.1") and hostlock.release("1.1")
    assert not hostlock.acquire("ctl", "4.1", lease=60)[0]  # 2.1 still holds its TPU
    assert hostlock.release("2.1")
    assert hostlock.acquire("ctl", "4.1", lease=60)[0]
    # And a device job waits for a whole-host job.
    taken, other = hostlock.acquire("ctl", "5.1", lease=60, devices=["cpu"])
    assert not taken and other["key"] == "4.1"
    assert hostlock.release("4.1") and hostlock.holders() == []


def test_a_job_holding_two_devices_renews_and_releases_both() -> None:
    assert hostlock.acquire("ctl", "1.1", lease=60, devices=["usb-port:2-1", "usb-port:1-1.2"])[0]
    assert not hostlock.acquire("ctl", "2.1", devices=["usb-port:1-1.2"])[0]
    assert hostlock.set_owner("1.1", 1, None) and hostlock.renew("1.1")
    assert len(hostlock.holders()) == 2
    assert hostlock.release("1.1") and hostlock.holders() == []
    assert hostlock.acquire("ctl", "2.1", devices=["usb-port:1-1.2"])[0]


def test_an_expired_device_lease_is_taken_over() -> None:
    assert hostlock.acquire("ctl-a", "1.1", lease=0.05, devices=["usb-port:2-1"])[0]
    import time

    time.sleep(0.2)
    taken, doc = hostlock.acquire("ctl-b", "2.1", devices=["usb-port:2-1"])
    assert taken and doc["took_over"]["key"] == "1.1"


@pytest.fixture
def agent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FARM_AGENT_DIR", str(tmp_path / "agent"))
    return tmp_path / "agent"


def test_per_accelerator_jobs_run_at_once_and_say_who_ran_beside_them(agent_dir: Path, shared_model: Path) -> None:
    sha = hashlib.sha256(shared_model.read_bytes()).hexdigest()

    def job(name: str, concurrency: dict | None) -> dict:
        return make_job(name, str(shared_model), sha, timing={**QUICK, "min_seconds": 1.5}, concurrency=concurrency)

    first, second = Serve(), Serve()  # two lanes, two sessions, as the controller runs them
    try:
        assert first.ask(op="start", key="a.1", holder="ctl", job=job("a", per_device("usb-port:2-1")))["state"] \
            == "started"
        assert second.ask(op="start", key="b.1", holder="ctl", job=job("b", per_device("usb-port:1-1.2")))["state"] \
            == "started"
        # A default (whole-host) job cannot start while either runs.
        assert first.ask(op="start", key="c.1", holder="ctl", job=job("c", None))["state"] == "busy"
        results = {}
        for serve, key in ((first, "a.1"), (second, "b.1")):
            results[key] = collect_until_done(serve, key)["finished"][key]
    finally:
        first.close()
        second.close()
    a, b = (results[k]["concurrency"] for k in ("a.1", "b.1"))
    assert results["a.1"]["status"] == results["b.1"]["status"] == "succeeded"
    assert a["locks"] == ["usb-port:2-1"] and b["locks"] == ["usb-port:1-1.2"]
    # The timed windows overlap (a relation between stored timestamps, not a speed).
    assert a["window_start"] < b["window_end"] and b["window_start"] < a["window_end"]
    assert "b.1" in a["beside_jobs"] and "a.1" in b["beside_jobs"] and a["beside"] >= 1
