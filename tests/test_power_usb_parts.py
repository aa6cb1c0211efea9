"""The controller's side of power modes and USB ports, piece by piece: requests, order, measured columns."""

from __future__ import annotations

import random

import pytest

from agent.schema import make_job
from orchestrator.inventory import Host
from orchestrator.matrix import Cell
from orchestrator.power_usb import (
    current_mode,
    edgetpu_request,
    measured_columns,
    mode_switches,
    order_by_mode,
    power_request,
    restore_notes,
)
from orchestrator.store.schema import ModelRow

NANO = Host("nano-1", board="jetson-nano", power_modes={"10W": {"nvpmodel": 0}, "5W": {"nvpmodel": 1}})
PC = Host("pc-1", board="x86", usb_ports={"usb3-left": {"port": "2-1", "speed": 5000}})
MODEL = ModelRow(id=1, sha256="a" * 64, name="m", family="f", needs_edgetpu=False)


def cell(host: Host, mode: str | None = None, delegate: str = "cpu", port: str | None = None,
         threads: int = 1) -> Cell:
    return Cell(host, MODEL, delegate, threads, power_mode=mode, usb_port=port)


def test_a_cells_mode_becomes_the_inventorys_settings_under_its_name() -> None:
    assert power_request(cell(NANO, "5W")) == {"name": "5W", "nvpmodel": 1}
    assert power_request(cell(NANO)) is None
    with pytest.raises(KeyError, match="declares no power mode '15W'"):
        power_request(cell(NANO, "15W"))
    # What the scheduler sends is a valid job for the agent's schema.
    job = make_job("j", "/m.tflite", "a" * 64, power=power_request(cell(NANO, "5W")),
                   edgetpu=edgetpu_request(cell(PC, delegate="edgetpu", port="usb3-left")))
    assert job["power"]["nvpmodel"] == 1 and job["edgetpu"]["ports"]["usb3-left"]["port"] == "2-1"


def test_edgetpu_requests_carry_the_port_and_the_inventorys_names() -> None:
    assert edgetpu_request(cell(PC)) is None
    assert edgetpu_request(cell(PC, delegate="edgetpu", port="1-1.2")) == {
        "port": "1-1.2", "ports": {"usb3-left": {"port": "2-1", "speed": 5000}}}
    assert edgetpu_request(cell(NANO, delegate="edgetpu")) == {}


def test_current_mode_maps_the_reported_nvpmodel_id_or_governor_to_the_inventory_name() -> None:
    assert current_mode(NANO, {"power": {"current": {"nvpmodel": 1, "name": "5W"}}}) == "5W"
    assert current_mode(NANO, {"power": {"current": {"nvpmodel": 7}}}) is None
    assert current_mode(NANO, None) is None
    pi = Host("pi", power_modes={"performance": {"governor": "performance"}, "powersave": {"governor": "powersave"}})
    assert current_mode(pi, {"power": {"current": {"governor": "powersave"}}}) == "powersave"


def test_jobs_are_grouped_by_mode_current_first_keeping_their_order_within_a_mode() -> None:
    rng = random.Random(4)
    modes = ["10W", "5W", "MAXQ"] * 4
    rng.shuffle(modes)
    jobs = [(index, cell(NANO, mode, threads=index + 1)) for index, mode in enumerate(modes)]
    ordered = order_by_mode(jobs, start_mode="5W")
    got = [c.power_mode for _, c in ordered]
    assert mode_switches(got) == 2 < mode_switches(modes)
    assert got[:4] == ["5W"] * 4
    assert sorted(i for i, _ in ordered) == list(range(12))  # every job, once
    for mode in ("10W", "5W", "MAXQ"):  # stable within a group
        indexes = [i for i, c in ordered if c.power_mode == mode]
        assert indexes == sorted(indexes)
    # Without a known current mode the first mode the matrix lists leads.
    assert next(c.power_mode for _, c in order_by_mode(jobs)) == modes[0]


def test_measured_columns_come_from_the_agents_result() -> None:
    result = {"power": {"measured": {"nvpmodel": 1, "name": "5W", "cpus_online": [0, 1]}},
              "edgetpu": {"port": "1-1.2", "speed": 480}, "throttled": False,
              "conditions": {"during": {"available": True, "average_w": 1.6, "energy_per_inference_mj": 0.35}}}
    assert measured_columns(result) == {"power_mode_measured": "5W (nvpmodel 1)", "usb_speed_measured": 480,
                                        "throttled": False, "avg_power_w": 1.6, "energy_mj": 0.35}
    governor = measured_columns({"power": {"measured": {"name": "powersave", "governor": "powersave"}},
                                 "conditions": {"during": {"available": False, "reason": "no INA3221"}}})
    assert governor == {"power_mode_measured": "powersave", "usb_speed_measured": None, "throttled": None,
                        "avg_power_w": None, "energy_mj": None}
    assert measured_columns({}) == {"power_mode_measured": None, "usb_speed_measured": None, "throttled": None,
                                    "avg_power_w": None, "energy_mj": None}


def test_restore_notes_say_what_a_killed_agent_left_and_whether_it_was_put_back() -> None:
    facts = {"power_restored": [
        {"restored": True, "mode": {"name": "MAXN"}, "requested": {"name": "5W"}, "left_by_pid": 42},
        {"restored": False, "mode": {"name": "MAXN"}, "error": "nvpmodel failed"}]}
    assert restore_notes(facts) == [
        "restored power mode MAXN: agent pid 42 was killed while the board ran in 5W",
        "could not restore power mode MAXN left by a killed job: nvpmodel failed"]
    assert restore_notes({}) == [] and restore_notes(None) == []
