"""The spool: jobs run detached from the SSH session and their results wait on the device.

``start`` writes the job to ``<workdir>/spool/KEY.job.json`` and runs it in a
process of its own session (double fork + setsid, stdin/stdout/stderr away
from the SSH channel), so a dropped link, a killed sshd or a killed ``serve``
does not stop it. Forked, not exec'd: the runtime ``serve`` imported once
is already loaded, so a job costs no interpreter start-up. That process takes the host lock, runs the
job (power mode restored as always), writes ``KEY.result.json`` atomically
(write, fsync, rename) and releases the lock. ``collect`` reports finished
results, keys still running, and dead ones (the process is gone and left no
result); ``ack`` deletes what the controller has stored. KEY is the
controller's idempotency key, ``<job id>.<attempt>``: starting a key the spool
already knows starts nothing.
"""

import contextlib
import errno
import json
import os
import re
import sys
import threading
import time

from . import hostlock, power

KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")  # \Z: "$" would accept a trailing newline
# A job file without a pid file this old belongs to a start that died half-way.
START_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.02
JOB_PROCESS_NAME = "farm-job"  # the detached job's process name (comm), as ps and pgrep show it

_preloaded = []


class SpoolError(ValueError):
    """A request the spool cannot honour; the message names the field."""


def spool_dir(folder=None):
    # One spool per workdir even when simulated boards share it: keys are unique per controller's
    # database and job, so they never collide, and a reader finds the spool at <workdir>/spool.
    return os.path.join(folder or power.state_dir(), "spool")


def _path(key, kind, folder=None):
    return os.path.join(spool_dir(folder), "{}.{}.json".format(key, kind))


def check_key(key):
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise SpoolError("field 'key' must be 1 to 200 letters, digits, '.', '_' or '-' "
                         "(not starting with a symbol), got {!r}".format(key))
    return key


def _read(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return None


def _remove(path):
    try:
        os.remove(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _preload():
    """Import the runtime once in ``serve``, so every forked job finds it loaded."""
    if _preloaded:
        return
    _preloaded.append(True)
    from . import runtime

    # A missing runtime is the job's to report (in its result), not the spool's.
    with contextlib.suppress(Exception):
        runtime.load_runtime()


def _spawn(key, folder, log_path):
    """Run job ``key`` in a grandchild in its own session; returns its pid (the middle child is reaped)."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        code = 1
        try:
            os.close(read_end)
            os.setsid()  # no controlling terminal, no share in the session's SIGHUP
            grandchild = os.fork()
            if grandchild:
                os.write(write_end, str(grandchild).encode("ascii"))
                code = 0
            else:
                os.close(write_end)
                _detach_stdio(log_path)
                _name_process(JOB_PROCESS_NAME)
                try:
                    code = run_detached(key, folder)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode("ascii")
    os.waitpid(middle, 0)
    if not text:
        raise OSError("could not start the job's process")
    return int(text)


def _name_process(name):
    # Forked, the job would look exactly like `serve` in ps; its own name tells them apart (pgrep farm-job).
    with contextlib.suppress(OSError, IOError), open("/proc/self/comm", "w") as handle:
        handle.write(name)


def _detach_stdio(log_path):
    # The SSH channel's pipes are this process's 0/1/2: holding them would keep the channel open
    # and a print would land in the controller's JSON lines.
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)


def state_of(key, folder=None):
    """finished | running | dead | unknown, for one key (result first: a finished job is never 'dead')."""
    owner = _read(_path(key, "pid", folder))
    alive = bool(owner) and hostlock.process_alive(owner.get("pid"), owner.get("pid_start"))
    # Checked after the liveness: a result is written before its process exits, so a process
    # seen dead here has already left its result if it ever will.
    if os.path.exists(_path(key, "result", folder)):
        return "finished"
    if alive:
        return "running"
    job_path = _path(key, "job", folder)
    if not os.path.exists(job_path):
        return "unknown"
    if owner is None:
        try:
            age = time.time() - os.path.getmtime(job_path)
        except OSError:
            return "unknown"
        return "running" if age < START_GRACE_SECONDS else "dead"
    return "dead"


def start(job, key, holder="?", lease=None, folder=None):
    """Start job ``key`` detached; returns {"state": started|running|finished|dead|busy, ...}."""
    check_key(key)
    if not isinstance(job, dict):
        raise SpoolError("field 'job' must be a JSON object")
    current = state_of(key, folder)
    if current != "unknown":
        return {"key": key, "state": current}
    taken, lock = hostlock.acquire(holder, key, lease, folder)
    if not taken:
        return {"key": key, "state": "busy", "holder": lock.get("holder"), "busy_key": lock.get("key"),
                "expires_in": max(0.0, float(lock.get("expires_at") or 0) - time.time())}
    try:
        folder_path = spool_dir(folder)
        if not os.path.isdir(folder_path):
            os.makedirs(folder_path)
        # Not fsynced: a job a power cut loses is simply dead, and run again. Only results are fsynced.
        hostlock.write_atomic(_path(key, "job", folder),
                              {"key": key, "job": job, "holder": holder, "created_at": time.time()})
        _preload()
        # The job keeps the session's cwd (the login home): its model path is relative to it.
        pid = _spawn(key, folder, os.path.join(folder_path, key + ".log"))
    except BaseException:
        hostlock.release(key, folder)
        raise
    pid_start = power._process_start(pid)
    hostlock.write_atomic(_path(key, "pid", folder), {"pid": pid, "pid_start": pid_start})
    hostlock.set_owner(key, pid, pid_start, folder)
    return {"key": key, "state": "started", "pid": pid}


def _known_keys(folder=None):
    try:
        names = os.listdir(spool_dir(folder))
    except OSError:
        return []
    keys = set()
    for name in names:
        for kind in (".job.json", ".result.json"):
            if name.endswith(kind):
                keys.add(name[:-len(kind)])
    return sorted(keys)


def collect(keys=None, wait=0.0, folder=None):
    """Results of finished keys, and which keys still run, died, or were never seen.

    ``keys``: None for every key in the spool. ``wait``: block up to this many
    seconds until one of them is no longer running (the controller's long poll).
    """
    if keys is not None:
        if not isinstance(keys, list):
            raise SpoolError("field 'keys' must be a list of keys")
        for key in keys:
            check_key(key)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise SpoolError("field 'wait' must be a non-negative number of seconds")
    deadline = time.time() + min(float(wait), 600.0)
    while True:
        report = {"finished": {}, "running": [], "dead": [], "unknown": []}
        for key in (keys if keys is not None else _known_keys(folder)):
            state = state_of(key, folder)
            if state == "finished":
                document = _read(_path(key, "result", folder)) or {}
                report["finished"][key] = document.get("result")
            else:
                report[state].append(key)
        if report["finished"] or report["dead"] or not report["running"] or time.time() >= deadline:
            return report
        time.sleep(POLL_SECONDS)


def ack(keys, folder=None):
    """Forget finished or dead keys (the controller has stored them); running ones are kept."""
    if not isinstance(keys, list):
        raise SpoolError("field 'keys' must be a list of keys")
    acked, kept = [], []
    for key in keys:
        check_key(key)
        if state_of(key, folder) == "running":
            kept.append(key)
            continue
        for kind in ("result", "job", "pid"):
            _remove(_path(key, kind, folder))
        _remove(os.path.join(spool_dir(folder), key + ".log"))
        acked.append(key)
    return {"acked": acked, "kept": kept}


def _renew_until(key, stop, interval, folder=None):
    while not stop.wait(interval):
        hostlock.renew(key, folder)


def run_detached(key, folder=None):
    """The body of the detached process: run the spooled job, write its result, free the host."""
    from .bench import run_job  # imported here: the serve process never loads the runtime

    check_key(key)
    document = _read(_path(key, "job", folder))
    if not isinstance(document, dict):
        hostlock.release(key, folder)
        return 2
    lease = float((hostlock.holder_of(folder) or {}).get("lease") or hostlock.lease_seconds())
    hostlock.renew(key, folder)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew_until, args=(key, stop, max(0.2, lease / 3.0), folder))
    renewer.daemon = True
    renewer.start()
    try:
        result = run_job(document.get("job"))
        result["spool_key"] = key
        power._write_state(_path(key, "result", folder),
                           {"key": key, "result": result, "finished_at": time.time()})
    finally:
        stop.set()
        hostlock.release(key, folder)
    return 0
