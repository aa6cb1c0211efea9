"""Power modes and USB ports on the controller's side: what a job asks for, in which order, what it got.

The agent sets, verifies and restores (agent/power.py, agent/edgetpu.py);
this module turns a matrix cell into the job's ``power`` and ``edgetpu``
requests, orders a host's jobs so its mode changes as rarely as possible,
and reads the measured settings back out of a result for the store.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, TypeVar

from agent import boards
from agent.result_reader import ResultView

if TYPE_CHECKING:
    from .inventory import Host
    from .matrix import Cell

T = TypeVar("T")


def power_request(cell: Cell) -> dict[str, Any] | None:
    """The job's power spec: the inventory's settings for the cell's mode, named; None leaves the board alone."""
    if cell.power_mode is None:
        return None
    settings = cell.host.power_modes.get(cell.power_mode)
    if settings is None:  # the matrix skips such cells; a job must never carry an unknown name
        raise KeyError(f"host {cell.host.name} declares no power mode '{cell.power_mode}'")
    return {**settings, "name": cell.power_mode}


def edgetpu_request(cell: Cell) -> dict[str, Any] | None:
    """The job's Edge TPU request: the port (an inventory name or a sysfs path) and the inventory's names.

    The agent resolves it to ``usb:N`` itself, right before loading the delegate,
    because the index can change when a TPU loads its firmware.
    """
    if cell.delegate != "edgetpu":
        return None
    request: dict[str, Any] = {}
    if cell.usb_port is not None:
        request["port"] = cell.usb_port
    if cell.host.usb_ports:
        request["ports"] = {name: dict(spec) for name, spec in cell.host.usb_ports.items()}
    return request


def current_mode(host: Host, facts: dict[str, Any] | None) -> str | None:
    """The inventory name of the mode the host reported being in (its board family says what identifies one)."""
    current = (((facts or {}).get("power") or {}).get("current")) or {}
    return next((name for name, settings in host.power_modes.items() if boards.mode_matches(settings, current)),
                None)


def order_by_mode(jobs: list[tuple[T, Cell]], start_mode: str | None = None) -> list[tuple[T, Cell]]:
    """A host's jobs grouped by power mode, the host's current mode first, each group in its given order.

    One switch per group instead of one per job whenever modes interleave;
    starting with the mode the host is in saves one more.
    """
    first_seen: dict[str | None, int] = {}
    for _, cell in jobs:
        first_seen.setdefault(cell.power_mode, len(first_seen))

    def rank(item: tuple[int, tuple[T, Cell]]) -> tuple[int, int, int]:
        index, (_, cell) = item
        leading = 0 if cell.power_mode in (start_mode, None) else 1
        return leading, first_seen[cell.power_mode], index

    return [job for _, job in sorted(enumerate(jobs), key=rank)]


def mode_switches(modes: list[str | None]) -> int:
    """How many times the mode changes along a sequence of jobs (None: the board as it is)."""
    return sum(1 for before, after in itertools.pairwise(modes) if after is not None and after != before)


def measured_columns(result: dict[str, Any] | ResultView) -> dict[str, Any]:
    """The result table's measured-settings columns from an agent result document (or a view of one)."""
    view = result if isinstance(result, ResultView) else ResultView(result)
    mode = boards.measured_label(view.power_measured)
    return {
        "power_mode_measured": mode[:64] if mode else None,
        "usb_speed_measured": view.usb_speed,
        "throttled": view.throttled,
        "avg_power_w": view.average_power_w,
        "energy_mj": view.energy_per_inference_mj,
    }


def restore_notes(facts: dict[str, Any] | None) -> list[str]:
    """Sentences for the power modes an agent restored on contact (a killed job had left them set)."""
    notes = []
    for report in (facts or {}).get("power_restored") or []:
        requested = (report.get("requested") or {}).get("name") or "?"
        original = (report.get("mode") or {}).get("name") or "?"
        if report.get("restored"):
            notes.append(f"restored power mode {original}: agent pid {report.get('left_by_pid')} was killed "
                         f"while the board ran in {requested}")
        else:
            notes.append(f"could not restore power mode {original} left by a killed job: {report.get('error')}")
    return notes
