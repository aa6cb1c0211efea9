"""The spool: jobs run detached from the SSH session and their results wait on the device.

``start`` writes the job to ``<workdir>/spool/KEY.job.json`` and runs it in a
process of its own session (fork + setsid, stdin/stdout/stderr away
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
import select
import sys
import threading
import time

from . import atomic, hostlock, priority, restore_state

KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")  # \Z: "$" would accept a trailing newline
# A job file without a pid file this old belongs to a start that died half-way.
START_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.02
# A collect whose running keys all have a wake-up pipe still looks at the spool this often: the pipe
# is a shortcut, the files stay the truth.
WAKE_CHECK_SECONDS = 0.5
JOB_PROCESS_NAME = "farm-job"  # the detached job's process name (comm), as ps and pgrep show it
STANDBY_PROCESS_NAME = "farm-standby"  # a job process forked ahead, waiting for its job

_preloaded = []
# key -> read end of a pipe whose write end only that key's job process holds. The job writes a byte
# once its result is on disk, and the kernel closes the pipe if it dies: either way a collect
# waiting in select() wakes at once instead of on its next poll of the spool.
_wakeups = {}
_notify_fd = []  # in a job process: the write end of its own wake-up pipe
_children = []  # pids of job processes this serve forked and has not reaped yet
_standby = []  # at most one (pid, order pipe, wake-up pipe): a job process forked ahead of its job
# Keys started "after" a running job, oldest first: this serve starts each the moment the job it
# waits for is no longer running, with no request in between. Read back from the spool by a
# serve that did not queue them (the one that did may have died with its link).
_queue = []
_queue_loaded = []


class SpoolError(ValueError):
    """A request the spool cannot honour; the message names the field."""


def spool_dir(folder=None):
    # One spool per workdir even when simulated boards share it: keys are unique per controller's
    # database and job, so they never collide, and a reader finds the spool at <workdir>/spool.
    return os.path.join(folder or restore_state.state_dir(), "spool")


def _path(key, kind, folder=None):
    return os.path.join(spool_dir(folder), "{}.{}.json".format(key, kind))


def check_key(key):
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise SpoolError("field 'key' must be 1 to 200 letters, digits, '.', '_' or '-' "
                         "(not starting with a symbol), got {!r}".format(key))
    return key


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
    from . import backends, bench  # noqa: F401 - bench too: each forked job would import it again

    # A missing runtime is the job's to report (in its result), not the spool's.
    with contextlib.suppress(Exception):
        backends.preload()


def _spawn(key, folder, log_path, document, lease):
    """Run job ``key`` in a process of its own session; returns its pid.

    The process is the standby forked while the job before ran (``prepare_standby``), else a
    fresh fork. A fork of ``serve`` with the runtime loaded costs 2-3 ms before the child runs;
    a standby only has to read its order. One fork, not the classic two: the process leads a
    session of its own with no terminal, so a dropped link's SIGHUP never reaches it; ``serve``
    reaps it (``_reap``), and if ``serve`` dies first, init does.
    """
    order = json.dumps({"key": key, "folder": folder, "log": log_path, "document": document,
                        "lease": lease}).encode("utf-8")
    while True:
        standby = bool(_standby)
        pid, order_write, wake_read = _standby.pop() if standby else _fork_job_process()
        try:
            rest = order
            while rest:
                rest = rest[os.write(order_write, rest):]
        except OSError:
            if not standby:
                raise
            os.close(wake_read)  # the standby died (killed): fork a fresh one
            continue
        finally:
            os.close(order_write)
        _forget_wakeup(key)
        _wakeups[key] = wake_read
        return pid


def prepare_standby():
    """Fork the next job's process now, while a job runs, so the start of the next costs no fork.

    Called when a job is queued: the controller queues the next job right after the current one
    starts, so the fork lands in that job's model load or warm-up rather than in its timed runs.
    """
    if not _standby:
        _preload()
        _standby.append(_fork_job_process())


def _fork_job_process():
    """Fork a process that waits for its job's order on a pipe; returns (pid, order pipe, wake-up pipe)."""
    order_read, order_write = os.pipe()
    wake_read, wake_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(order_write)
            os.close(wake_read)
            for other in _wakeups.values():
                os.close(other)
            del _children[:]
            code = _job_process(order_read, wake_write)
        finally:
            os._exit(code)
    os.close(order_read)
    os.close(wake_write)
    _children.append(pid)
    return pid, order_write, wake_read


def _job_process(order_read, wake_write):
    group_nice = priority.autogroup_nice()
    os.setsid()
    priority.keep(group_nice)  # a session of its own, at the priority the agent was given
    _detach_stdio(os.devnull)
    _name_process(STANDBY_PROCESS_NAME)
    renewer = _Renewer()
    chunks = []
    while True:
        chunk = os.read(order_read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(order_read)
    if not chunks:
        return 0  # serve is gone, or never needed this standby
    order = json.loads(b"".join(chunks).decode("utf-8"))
    _detach_stdio(order["log"])
    _name_process(JOB_PROCESS_NAME)
    _notify_fd.append(wake_write)
    try:
        return run_detached(order["key"], order["folder"], order["document"], order["lease"], renewer)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _reap():
    """Collect the exit status of finished job processes, so none lingers as a zombie."""
    for pid in list(_children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except OSError:  # not our child (any more)
            done = pid
        if done:
            _children.remove(pid)


def _forget_wakeup(key):
    fd = _wakeups.pop(key, None)
    if fd is not None:
        os.close(fd)


def _notify_finished():
    """In a job process: tell a waiting collect that the result is on disk."""
    while _notify_fd:
        fd = _notify_fd.pop()
        with contextlib.suppress(OSError):
            os.write(fd, b"1")
        with contextlib.suppress(OSError):
            os.close(fd)


def _sleep_until_change(running, deadline):
    """Wait until a running key's job may have finished, or a poll interval passes, or ``deadline``."""
    pipes = {_wakeups[key]: key for key in running if key in _wakeups}
    timeout = max(0.0, deadline - time.time())
    if not pipes or len(pipes) < len(running):
        time.sleep(min(POLL_SECONDS, timeout))  # a key started by an earlier serve has no pipe: poll
        return
    try:
        ready, _, _ = select.select(list(pipes), [], [], min(WAKE_CHECK_SECONDS, timeout))
    except (OSError, ValueError):
        time.sleep(min(POLL_SECONDS, timeout))
        return
    # A woken pipe has done its job: from now on that key is polled (a dying job's pipe stays
    # readable while the process is a zombie, and select would spin).
    for fd in ready:
        _forget_wakeup(pipes[fd])


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
    owner = atomic.read_json(_path(key, "pid", folder))
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
        if (atomic.read_json(job_path) or {}).get("after"):
            return "running"  # queued: it runs once the job it waits for is done
        try:
            age = time.time() - os.path.getmtime(job_path)
        except OSError:
            return "unknown"
        return "running" if age < START_GRACE_SECONDS else "dead"
    return "dead"


def start(job, key, holder="?", lease=None, folder=None, after=None):
    """Start job ``key`` detached; returns {"state": started|queued|running|finished|dead|busy, ...}.

    ``after``: a key that may still be running on this host. While it runs, ``key`` is queued
    and started by this spool as soon as that job is done, without waiting for another request:
    the board goes from one job to the next without a round trip to the controller.
    """
    check_key(key)
    if after is not None:
        check_key(after)
    if not isinstance(job, dict):
        raise SpoolError("field 'job' must be a JSON object")
    _reap()
    start_queued(folder)
    current = state_of(key, folder)
    if current != "unknown":
        return {"key": key, "state": current}
    document = {"key": key, "job": job, "holder": holder, "created_at": time.time()}
    if after is not None and after != key and state_of(after, folder) == "running":
        _ensure_spool(folder)
        document.update(after=after, lease=lease)
        hostlock.write_atomic(_path(key, "job", folder), document)
        _queue.append(key)
        prepare_standby()
        return {"key": key, "state": "queued", "after": after}
    taken, lock = hostlock.acquire(holder, key, lease, folder, finished=lambda other: _has_result(other, folder),
                                   devices=hostlock.job_devices(job))
    if not taken:
        return {"key": key, "state": "busy", "holder": lock.get("holder"), "busy_key": lock.get("key"),
                "expires_in": max(0.0, float(lock.get("expires_at") or 0) - time.time())}
    try:
        _ensure_spool(folder)
        # Not fsynced: a job a power cut loses is simply dead, and run again. Only results are fsynced.
        hostlock.write_atomic(_path(key, "job", folder), document)
    except BaseException:
        hostlock.release(key, folder)
        raise
    return {"key": key, "state": "started", "pid": _launch(key, folder, document, lock)}


def _ensure_spool(folder):
    folder_path = spool_dir(folder)
    if not os.path.isdir(folder_path):
        with contextlib.suppress(OSError):  # made at the same moment by another serve: fine
            os.makedirs(folder_path)


def _launch(key, folder, document, lock):
    """Fork the process of job ``key``, whose lock is taken and job file written; returns its pid."""
    try:
        _preload()
        # The job keeps the session's cwd (the login home): its model path is relative to it.
        pid = _spawn(key, folder, os.path.join(spool_dir(folder), key + ".log"), document, lock.get("lease"))
    except BaseException:
        hostlock.release(key, folder)
        raise
    pid_start = restore_state.process_start(pid)
    hostlock.write_atomic(_path(key, "pid", folder), {"pid": pid, "pid_start": pid_start})
    hostlock.set_owner(key, pid, pid_start, folder)
    return pid


def _load_queue(folder):
    if _queue_loaded:
        return
    _queue_loaded.append(True)
    waiting = []
    for key in _known_keys(folder):
        if key in _queue or os.path.exists(_path(key, "pid", folder)):
            continue
        document = atomic.read_json(_path(key, "job", folder))
        if isinstance(document, dict) and document.get("after"):
            waiting.append((float(document.get("created_at") or 0), key))
    _queue.extend(key for _, key in sorted(waiting))


def _claim(key, folder):
    """True for the one serve that may start queued ``key`` (two serves may look at one spool)."""
    try:
        os.close(os.open(_path(key, "claim", folder), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise


def start_queued(folder=None):
    """Start the oldest queued job if the job it waits for is done and the host is free."""
    _load_queue(folder)
    position = 0
    # Every queued key is looked at, not only the oldest: with per-accelerator locks, jobs queued
    # behind one TPU's job must not wait for another TPU's.
    while position < len(_queue):
        key = _queue[position]
        document = atomic.read_json(_path(key, "job", folder))
        if not isinstance(document, dict) or state_of(key, folder) != "running" \
                or os.path.exists(_path(key, "pid", folder)) or os.path.exists(_path(key, "claim", folder)):
            _queue.pop(position)  # acked, started elsewhere, or gone: not this serve's to start
            continue
        after = document.get("after")
        if isinstance(after, str) and after != key and state_of(after, folder) == "running":
            position += 1  # its predecessor still runs: its pipe wakes the collect that waits on it
            continue
        taken, lock = hostlock.acquire(document.get("holder") or "?", key, document.get("lease"), folder,
                                       finished=lambda other: _has_result(other, folder),
                                       devices=hostlock.job_devices(document.get("job")))
        if not taken:
            position += 1  # another job holds its host or device: try again on the next look
            continue
        _queue.pop(position)
        if not _claim(key, folder):
            continue
        _launch(key, folder, document, lock)


def _has_result(key, folder=None):
    try:
        return os.path.exists(_path(check_key(key), "result", folder))
    except SpoolError:
        return False


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
        _reap()
        start_queued(folder)
        report = {"finished": {}, "running": [], "dead": [], "unknown": []}
        for key in (keys if keys is not None else _known_keys(folder)):
            state = state_of(key, folder)
            if state == "finished":
                document = atomic.read_json(_path(key, "result", folder)) or {}
                report["finished"][key] = document.get("result")
            else:
                report[state].append(key)
        if report["finished"] or report["dead"] or not report["running"] or time.time() >= deadline:
            return report
        _sleep_until_change(report["running"], deadline)


def ack(keys, folder=None):
    """Forget finished or dead keys (the controller has stored them); running ones are kept."""
    if not isinstance(keys, list):
        raise SpoolError("field 'keys' must be a list of keys")
    _reap()  # often a lane's last request: its finished jobs should not wait for serve's exit
    acked, kept = [], []
    for key in keys:
        check_key(key)
        if state_of(key, folder) == "running":
            kept.append(key)
            continue
        _forget_wakeup(key)
        # A finished job may not have let go of the lock yet; once its result is gone nothing would
        # tell a start that the holder is only leaving. Its release after this one frees nothing.
        hostlock.release(key, folder)
        for kind in ("result", "job", "pid", "claim"):
            _remove(_path(key, kind, folder))
        _remove(os.path.join(spool_dir(folder), key + ".log"))
        acked.append(key)
    return {"acked": acked, "kept": kept}


class _Renewer(object):
    """Renews a job's lease while it runs. Its thread is started ahead (a standby starts it while it
    waits for its job), as a thread start costs about a millisecond on the path to the job."""

    def __init__(self):
        self._go = threading.Event()
        self._stop = threading.Event()
        self._args = None
        thread = threading.Thread(target=self._loop)
        thread.daemon = True
        thread.start()

    def _loop(self):
        self._go.wait()
        if self._args is None:
            return
        key, folder, interval = self._args
        while not self._stop.wait(interval):
            hostlock.renew(key, folder)

    def begin(self, key, folder, interval):
        self._args = (key, folder, interval)
        self._go.set()

    def stop(self):
        self._stop.set()
        self._go.set()


def run_detached(key, folder=None, document=None, lease=None, renewer=None):
    """The body of the detached process: run the spooled job, write its result, free the host.

    ``document`` and ``lease``: what ``start`` just wrote and took, handed over by the fork, so
    the job starts without reading them back (``spool-run KEY`` reads both).
    """
    from .bench import run_job  # imported here: the serve process never loads the runtime
    from .result_builder import with_spool_key

    check_key(key)
    if document is None:
        document = atomic.read_json(_path(key, "job", folder))
        if not isinstance(document, dict):
            hostlock.release(key, folder)
            return 2
    if lease is None:
        lease = float((hostlock.holder_of(folder) or {}).get("lease") or hostlock.lease_seconds())
        hostlock.renew(key, folder)
    lease = float(lease)
    renewer = renewer or _Renewer()
    renewer.begin(key, folder, max(0.2, lease / 3.0))
    try:
        result = with_spool_key(run_job(document.get("job")), key)
        atomic.write_json(_path(key, "result", folder),
                          {"key": key, "result": result, "finished_at": time.time()}, sync=False)
        renewer.stop()
        # Before the release: a controller woken now may start its next job at once, since a lock
        # whose job has its result written counts as free (hostlock.acquire). Before the folder's
        # fsync too: the result's bytes are on disk; were the rename lost to a power cut before the
        # fsync below, the key would read as dead and run again, and nothing has acked it so soon.
        _notify_finished()
        atomic.sync_folder(spool_dir(folder))
    finally:
        renewer.stop()
        hostlock.release(key, folder)
        _notify_finished()  # no result (the job raised): the waiting collect looks and finds it dead
    return 0
