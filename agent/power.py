"""Power modes: set one for a job, prove it took, and always put the board back.

A job's power mode is a spec such as ``{"name": "5W", "nvpmodel": 1,
"settle_seconds": 2.0}`` or ``{"name": "powersave", "governor": "powersave"}``; which settings a board takes is its family's
business (``agent/boards``). ``applied(spec)`` records the board's mode, sets
the spec, verifies it and restores the original on the way out, exceptions and
SIGTERM/SIGHUP included. Because SIGKILL cannot be caught, the original is
written to a state file (``restore_state``) before anything changes;
``pending_restore()`` on the next agent start puts it back.
"""

import contextlib
import os
import time

from . import boards
from .atomic import write_json
from .boards.governor import GovernorControl
from .errors import PowerError
from .restore_state import (
    owner_alive,
    process_start,
    read_state,
    remove,
    signals_deferred,
    signals_raise,
    state_dir,
    state_path,
)
from .sysfs import device_root
from .tools import needs_sudo

__all__ = [
    "PowerError",
    "applied",
    "current_mode",
    "describe",
    "driver_for",
    "needs_sudo",
    "pending_restore",
    "restore",
    "set_mode",
    "state_dir",
    "state_path",
    "verify",
]

DEFAULT_SETTLE_SECONDS = 1.0


def driver_for(facts_or_board=None):
    """The power control for a board: a facts dict, a board name ("rpi4", "Raspberry Pi 4 ..."), or None.

    The board name decides when it is known; otherwise the tools and files the
    board has do (see ``boards.family_for``).
    """
    board = facts_or_board.get("board") if isinstance(facts_or_board, dict) else facts_or_board
    return boards.power_control(board)


# --- crash safety: restoring what a killed agent left set ----------------------------------------

def pending_restore(folder=None, driver=None):
    """Restore a mode that a killed agent left set; call once when the agent starts.

    Returns None when nothing was pending, else a report for facts or a result:
    {"restored": true, "mode": {...the original...}, "requested": {...}, "left_by_pid": 123,
    "left_at": 1700000000.0, "now": {...current mode...}} or, when restoring
    failed or the owner still runs, {"restored": false, "error": "..."}
    (the state file is then kept for the next try).
    """
    path = state_path(folder)
    doc = read_state(path)
    if doc is None:
        if os.path.exists(path):  # unreadable: a torn write cannot happen, so it was edited by hand
            return {"restored": False, "error": "unreadable power state file {}".format(path)}
        return None
    report = {"mode": doc.get("saved"), "requested": doc.get("requested"),
              "left_by_pid": doc.get("pid"), "left_at": doc.get("created_at"), "state_file": path}
    if owner_alive(doc):
        report.update(restored=False, error="agent pid {} is still running a job with power mode {}".format(
            doc.get("pid"), (doc.get("requested") or {}).get("name")))
        return report
    saved = doc.get("saved") or {}
    chosen = driver or boards.control_named(saved.get("driver"))
    try:
        chosen.restore(saved)
    except PowerError as exc:
        report.update(restored=False, error=str(exc))
        return report
    remove(path)
    report.update(restored=True, now=chosen.current_mode())
    return report


# --- the context manager a job runs in ----------------------------------------------------------

_MEASURED_ONLY = ("cpus_online", "cpu_max_freq_khz", "mismatches", "ok")


def _verified(driver, spec):
    """The board measured against ``spec`` (verify's report), or None when it cannot be read."""
    try:
        return driver.verify(spec)
    except PowerError:
        return None


@contextlib.contextmanager
def applied(spec, driver=None, folder=None):
    """Run a block in power mode ``spec``, then put the board back whatever happens.

    Yields {"requested": spec, "before": {...}, "measured": {...}, "recovered": report-or-None,
    "restore": None}; after the block, "restore" becomes {"ok": true} or
    {"ok": false, "error": "..."} (a failed restore does not hide the block's
    own exception; its state file stays so ``pending_restore`` tries again).
    ``spec`` None leaves the board alone and yields the same keys with None.
    Raises PowerError when the mode cannot be set or does not verify.
    """
    info = {"requested": spec, "before": None, "measured": None, "recovered": None, "restore": None}
    if not spec:
        yield info
        return
    driver = driver or driver_for(None)
    folder = folder or state_dir()
    path = state_path(folder)
    recovered = pending_restore(folder)
    if recovered is not None and not recovered.get("restored"):
        raise PowerError("a previous power mode is still pending: " + recovered.get("error", "unknown"))
    info["recovered"] = recovered
    driver.check(spec)
    already = _verified(driver, spec)
    if already is not None and already["ok"]:
        # Already in the mode: nothing to switch, settle or restore, so no state file and no
        # save (which may store clocks) either. Consecutive jobs in one mode (the scheduler groups them)
        # then cost one query each.
        info.update(switched=False, measured=already, restore={"ok": True, "needed": False},
                    before={k: v for k, v in already.items() if k not in _MEASURED_ONLY})
        yield info
        return
    if not os.path.isdir(folder):
        os.makedirs(folder)
    with signals_raise():
        saved = driver.save(folder)
        info["before"] = {k: v for k, v in saved.items() if k != "clocks_file"}
        write_json(path, {"version": 1, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                            "created_at": time.time(), "device_root": device_root(),
                            "requested": spec, "saved": saved})
        in_flight = None
        try:
            info["switched"] = True
            driver.set_mode(spec)
            settle = spec.get("settle_seconds")
            time.sleep(DEFAULT_SETTLE_SECONDS if settle is None else max(0.0, float(settle)))
            measured = driver.verify(spec)
            info["measured"] = measured
            if not measured["ok"]:
                raise PowerError("power mode '{}' did not take: {}".format(spec.get("name"),
                                                                          "; ".join(measured["mismatches"])))
            yield info
        except BaseException as exc:
            in_flight = exc
            raise
        finally:
            with signals_deferred():
                try:
                    driver.restore(saved)
                except Exception as exc:  # noqa: BLE001 - reported, and the state file stays for the next try
                    info["restore"] = {"ok": False, "error": "{}: {}".format(type(exc).__name__, exc)}
                    if isinstance(in_flight, PowerError):
                        # The caller never got ``info``: the restore failure rides on the error it sees.
                        in_flight.message += "\nand restoring the original mode failed: {}".format(exc)
                        in_flight.args = (in_flight.message + ("\n" + in_flight.remedy if in_flight.remedy else ""),)
                else:
                    info["restore"] = {"ok": True}
                    remove(path)


# --- module-level shortcuts for the detected board -----------------------------------------------

def describe(board=None):
    """Power facts that never raise: {"driver": "nvpmodel", "current": {...current_mode...},
    "modes": [{"id": 0, "name": "MAXN"}, ...], "governors": ["ondemand", ...], "error": null}."""
    driver = driver_for(board)
    out = {"driver": driver.name, "current": None, "modes": [], "governors": GovernorControl().available(),
           "error": None}
    try:
        out["current"] = driver.current_mode()
        out["modes"] = driver.modes()
    except PowerError as exc:
        out["error"] = str(exc)
    return out


def current_mode():
    return driver_for(None).current_mode()


def set_mode(spec):
    """Set a mode without recording it for restore; most callers want ``applied``."""
    driver_for(None).set_mode(spec)


def verify(spec):
    return driver_for(None).verify(spec)


def restore(saved):
    boards.control_named(saved.get("driver")).restore(saved)
