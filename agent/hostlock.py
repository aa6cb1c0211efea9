"""The host lock: one farm benchmark at a time on this device, whichever controller asks.

A JSON file (holder, job key, pid, lease expiry) guarded by flock on a side
file, so reading and replacing it is one step for every process on the
device. The job's own process renews the lease while it runs; a lease whose
process died, or that was not renewed in time, is taken over. Without a
lease a dead holder would keep the board locked forever (labgrid's stale
locks).
"""

import contextlib
import errno
import fcntl
import json
import os
import time

from . import restore_state

LEASE_ENV = "FARM_LOCK_LEASE"
LOCK_DIR_ENV = "FARM_LOCK_DIR"
DEFAULT_LEASE = 30.0


def lease_seconds(requested=None):
    if isinstance(requested, (int, float)) and not isinstance(requested, bool) and requested > 0:
        return float(requested)
    try:
        value = float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE)
    except ValueError:
        value = DEFAULT_LEASE
    return value if value > 0 else DEFAULT_LEASE


def lock_dir():
    """FARM_LOCK_DIR, else ~/.cache/farm: per device and user, not per workdir, so two controllers
    that deploy the agent to different workdirs still meet at one lock."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "farm")


def lock_path(folder=None):
    tag = restore_state.root_tag()  # simulated boards sharing one home each get their own lock
    name = "host-lock.json" if tag == "root" else "host-lock-{}.json".format(tag)
    return os.path.join(folder or lock_dir(), name)


@contextlib.contextmanager
def _guard(path):
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
    descriptor = os.open(path + ".mutex", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the flock


def _read(path):
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except (OSError, IOError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_atomic(path, doc):
    """Replace ``path`` whole (tmp + rename), without fsync: a lock or pid file that a power cut
    loses is harmless (a lease expires, a dead pid is dead), and fsyncs cost a job tens of ms."""
    temporary = "{}.{}.tmp".format(path, os.getpid())
    with open(temporary, "w") as handle:
        json.dump(doc, handle, sort_keys=True)
    os.rename(temporary, path)


def _write(path, doc):
    write_atomic(path, doc)


def process_alive(pid, start=None):
    """True if ``pid`` runs (and is not a zombie), and is the same process as when ``start`` was read."""
    try:
        with open("/proc/{}/stat".format(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[-1].split()
    except (OSError, IOError, TypeError):
        return False
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start is None or (len(fields) > 19 and fields[19] == start)


def _stale(doc, now):
    if float(doc.get("expires_at") or 0) < now:
        return True
    pid = doc.get("pid")
    return bool(pid) and not process_alive(pid, doc.get("pid_start"))


def holder_of(folder=None):
    """The current lock document, or None when the host is free (an expired lease counts as free)."""
    path = lock_path(folder)
    with _guard(path):
        doc = _read(path)
    if doc is None or _stale(doc, time.time()):
        return None
    return doc


def acquire(holder, key, lease=None, folder=None, finished=None):
    """Take the lock for job ``key``; returns (True, doc) or (False, the other holder's doc).

    ``finished(other_key)``: True when that job's result is already written. Such a holder is only
    on its way out (releasing is its last step, and a release of a lock it no longer holds does
    nothing), so the lock is taken at once rather than after it has let go.
    """
    path = lock_path(folder)
    lease = lease_seconds(lease)
    now = time.time()
    with _guard(path):
        doc = _read(path)
        done = doc is not None and finished is not None and finished(doc.get("key"))
        if doc is not None and doc.get("key") != key and not done and not _stale(doc, now):
            return False, doc
        taken = {"holder": holder, "key": key, "pid": None, "pid_start": None, "lease": lease,
                 "taken_at": now, "expires_at": now + lease}
        if doc is not None and doc.get("key") != key and not done:
            taken["took_over"] = {"holder": doc.get("holder"), "key": doc.get("key")}
        _write(path, taken)
        return True, taken


def set_owner(key, pid, pid_start, folder=None):
    """Record the process that runs job ``key``: the lease ends early if it dies."""
    path = lock_path(folder)
    with _guard(path):
        doc = _read(path)
        if doc is None or doc.get("key") != key:
            return False
        doc["pid"], doc["pid_start"] = pid, pid_start
        _write(path, doc)
        return True


def renew(key, folder=None):
    """Extend the lease of job ``key``; False if the lock is no longer its own."""
    path = lock_path(folder)
    with _guard(path):
        doc = _read(path)
        if doc is None or doc.get("key") != key:
            return False
        doc["expires_at"] = time.time() + float(doc.get("lease") or DEFAULT_LEASE)
        _write(path, doc)
        return True


def release(key, folder=None):
    path = lock_path(folder)
    with _guard(path):
        doc = _read(path)
        if doc is not None and doc.get("key") == key:
            with contextlib.suppress(OSError):
                os.remove(path)
            return True
        return False
