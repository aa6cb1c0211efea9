"""What the agent does whenever the controller reaches it: undo a killed job's power mode, report facts.

A job that was SIGKILLed left its board in the job's power mode, with the
original written in the restore state file. The next contact (agent start, ping,
facts) puts it back and says so, once, in its reply, so the controller can
record that the board was not in its own mode between the kill and now.
"""

from . import conditions, edgetpu, power, restore_state
from .facts import gather

_unreported = []


def restore_pending():
    """Run power.pending_restore(); remember what it restored until a reply reports it.

    Never raises: a broken state file or a failing tool becomes a report with
    "restored": false and the error, and the file stays for the next contact.
    """
    try:
        held = restore_state.read_state(restore_state.state_path())
        if held is not None and restore_state.owner_alive(held):
            return None  # a job running detached holds the board in its mode: nothing was left behind
        report = power.pending_restore()
    except Exception as exc:  # noqa: BLE001 - a contact must answer whatever the board does
        report = {"restored": False, "error": "{}: {}".format(type(exc).__name__, exc)}
    if report is not None:
        _unreported.append(report)
    return report


def take_reports():
    """Restore reports not yet sent to the controller (the list is emptied)."""
    restore_pending()
    reports = list(_unreported)
    del _unreported[:]
    return reports


def facts():
    """The facts document plus the board's power modes, Edge TPUs and current conditions.

    Each part is read on its own so one unreadable part cannot hide the others.
    """
    found = gather()
    found["power"] = _safely(lambda: power.describe(found.get("board")))
    found["edgetpu"] = _safely(edgetpu.discover)
    found["conditions"] = _safely(conditions.snapshot)
    found["power_restored"] = take_reports()
    return found


def _safely(read):
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - facts report what they cannot read instead of failing
        return {"error": "{}: {}".format(type(exc).__name__, exc)}
