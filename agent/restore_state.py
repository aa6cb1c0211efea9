"""The pending-restore state file, and the signal handling that keeps a board from being left changed.

Before anything on a board changes, the original settings are written here
(atomically); a SIGKILLed agent cannot restore them, so the next agent start
does, from this file. SIGTERM and SIGHUP become SystemExit while a job runs, so
``finally`` blocks restore, and are held back while a restore is under way.
"""

import contextlib
import os
import sys

from . import atomic
from .sysfs import device_root

STATE_DIR_ENV = "FARM_AGENT_DIR"


def state_dir():
    """FARM_AGENT_DIR, else the folder the agent's zipapp was deployed to (the host's workdir), else ~/.cache/farm."""
    if os.environ.get(STATE_DIR_ENV):
        return os.environ[STATE_DIR_ENV]
    program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    # `python -m agent` with the zipapp on PYTHONPATH (a detached job) has argv[0] inside it:
    # .../agent-HASH.pyz/agent/__main__.py. Its state must live where the serve loop's does.
    while program and program != os.path.dirname(program):
        if program.endswith(".pyz") and os.path.isfile(program):
            return os.path.dirname(program)
        program = os.path.dirname(program)
    return os.path.join(os.path.expanduser("~"), ".cache", "farm")


_root_tags = {}  # device root -> tag: every contact asks for the state file's name several times


def root_tag():
    """"root" on real hardware, else a short hash of the device root: simulated boards on one
    machine share a home directory, and each device root gets its own files."""
    root = os.path.abspath(device_root())
    if root == "/":
        return "root"
    if root not in _root_tags:
        _root_tags[root] = _sha1(root.encode("utf-8")).hexdigest()[:12]
    return _root_tags[root]


def _sha1(data):
    try:
        # CPython's own SHA-1, the digest hashlib gives: importing hashlib loads OpenSSL first, a fifth
        # of a simulated board's start beyond Python's own.
        from _sha1 import sha1
    except ImportError:
        from hashlib import sha1
    return sha1(data)


def state_path(folder=None):
    tag = root_tag()
    name = "power-restore.json" if tag == "root" else "power-restore-{}.json".format(tag)
    return os.path.join(folder or state_dir(), name)


def read_state(path):
    return atomic.read_json(path)


def remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def process_start(pid):
    """Start time of a process (clock ticks since boot), so a recycled pid is not mistaken for it."""
    try:
        with open("/proc/{}/stat".format(pid)) as handle:
            text = handle.read()
    except (OSError, IOError):
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its closing parenthesis.
    fields = text.rsplit(")", 1)[-1].split()
    if fields and fields[0] in ("Z", "X"):
        return None  # a zombie runs nothing: a killed job waiting to be reaped by init holds no board
    return fields[19] if len(fields) > 19 else None


def owner_alive(doc):
    pid = doc.get("pid")
    return bool(pid) and pid != os.getpid() and process_start(pid) == doc.get("pid_start")


# --- signals ---------------------------------------------------------------------------------------------

def _signals():
    # Imported when signals are handled (a job, a restore): a contact that only answers facts handles
    # none, and the module builds its enums when imported.
    import signal

    return signal


def _wanted_signals():
    signal = _signals()
    return [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])


def _reinstall(previous):
    signal = _signals()
    for number, handler in previous.items():
        # None: the handler was set outside Python and cannot be put back; the default is the safe choice.
        signal.signal(number, signal.SIG_DFL if handler is None else handler)


def _in_main_thread():
    # Imported when asked: a contact that only answers facts has no use for threading (traceback with it on 3.6).
    import threading

    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_raise():
    """SIGTERM and SIGHUP (a dropped SSH session) become SystemExit, so ``finally`` blocks run."""
    if not _in_main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = {number: _signals().signal(number, _exit) for number in _wanted_signals()}
    try:
        yield
    finally:
        _reinstall(previous)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGTERM/SIGHUP while restoring (a half-restored board is the worst outcome), then exit."""
    if not _in_main_thread():
        yield
        return
    caught = []
    previous = {number: _signals().signal(number, lambda signum, frame: caught.append(signum))
                for number in _wanted_signals()}
    try:
        yield
    finally:
        _reinstall(previous)
    if caught:
        raise SystemExit(128 + caught[0])
