"""The host lock: one farm benchmark at a time on this device, whichever controller asks, or one per device.

A JSON file (holder, job key, pid, lease expiry) guarded by flock on a side
file, so reading and replacing it is one step for every process on the
device. A job of ``concurrency: per-accelerator`` locks only its devices
(each Edge TPU by its port, ``cpu`` for CPU jobs): one more JSON file per
device beside the host's, under the same flock, so a host with N TPUs runs
up to N jobs at once. A whole-host job waits for every device lock, and a
device job for the whole-host lock: the default stays one benchmark per host. The job's own process renews the lease while it runs; a lease whose
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


def job_devices(job):
    """The device locks a job takes (its ``concurrency``): None for the whole host, else names such as "usb-port:2-1"."""
    concurrency = (job or {}).get("concurrency") if isinstance(job, dict) else None
    if not isinstance(concurrency, dict) or concurrency.get("mode") != "per-accelerator":
        return None
    devices = concurrency.get("devices")
    return sorted(set(devices)) if isinstance(devices, list) and devices else None



def lock_dir():
    """FARM_LOCK_DIR, else ~/.cache/farm: per device and user, not per workdir, so two controllers
    that deploy the agent to different workdirs still meet at one lock."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "farm")


def lock_path(folder=None, device=None):
    """The host's lock file, or a device's (``device``: "usb-port:2-1", "cpu") beside it."""
    tag = restore_state.root_tag()  # simulated boards sharing one home each get their own lock
    name = "host-lock" if tag == "root" else "host-lock-{}".format(tag)
    if device is not None:
        name += "@" + "".join(c if c.isalnum() or c in ".-_" else "_" for c in device)
    return os.path.join(folder or lock_dir(), name + ".json")


def _device_paths(path):
    """Every device lock file beside the host lock ``path``: {path: device}."""
    folder, base = os.path.split(path)
    prefix = base[:-len(".json")] + "@"
    found = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        if name.startswith(prefix) and name.endswith(".json"):
            found[os.path.join(folder, name)] = name[len(prefix):-len(".json")]
    return found


def _held_paths(path, key):
    """The lock files (host and devices) that job ``key`` holds."""
    held = []
    for candidate in [path] + sorted(_device_paths(path)):
        doc = _read(candidate)
        if doc is not None and doc.get("key") == key:
            held.append(candidate)
    return held


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


def holders(folder=None):
    """Every live lock on this host, whole-host and per device: [{"device": None or name, ...doc}]."""
    path = lock_path(folder)
    now = time.time()
    found = []
    with _guard(path):
        for candidate, device in [(path, None)] + sorted(_device_paths(path).items()):
            doc = _read(candidate)
            if doc is not None and not _stale(doc, now):
                found.append(dict(doc, device=device))
    return found


def acquire(holder, key, lease=None, folder=None, finished=None, devices=None):
    """Take the lock for job ``key``; returns (True, doc) or (False, the other holder's doc).

    ``devices``: None takes the whole host (every device lock must be free too); a list of
    device names takes only those (the whole-host lock must be free).
    ``finished(other_key)``: True when that job's result is already written. Such a holder is only
    on its way out (releasing is its last step, and a release of a lock it no longer holds does
    nothing), so the lock is taken at once rather than after it has let go.
    """
    path = lock_path(folder)
    lease = lease_seconds(lease)
    now = time.time()
    with _guard(path):
        if devices:
            wanted = [lock_path(folder, device) for device in sorted(set(devices))]
            blocking = [path] + wanted
        else:
            wanted = [path]
            blocking = [path] + sorted(_device_paths(path))
        previous = None
        for candidate in blocking:
            doc = _read(candidate)
            done = doc is not None and finished is not None and finished(doc.get("key"))
            if doc is not None and doc.get("key") != key and not done and not _stale(doc, now):
                return False, doc
            if candidate in wanted and doc is not None and doc.get("key") != key and not done:
                previous = doc
        taken = {"holder": holder, "key": key, "pid": None, "pid_start": None, "lease": lease,
                 "taken_at": now, "expires_at": now + lease}
        if devices:
            taken["devices"] = sorted(set(devices))
        if previous is not None:
            taken["took_over"] = {"holder": previous.get("holder"), "key": previous.get("key")}
        for candidate in wanted:
            _write(candidate, taken)
        # A device job leaves no stale whole-host lock behind it, nor a whole-host job stale device locks.
        for candidate in blocking:
            if candidate not in wanted:
                stale = _read(candidate)
                if stale is not None and stale.get("key") != key:
                    with contextlib.suppress(OSError):
                        os.remove(candidate)
        return True, taken


def set_owner(key, pid, pid_start, folder=None):
    """Record the process that runs job ``key``: the lease ends early if it dies."""
    path = lock_path(folder)
    with _guard(path):
        held = _held_paths(path, key)
        for candidate in held:
            doc = _read(candidate)
            doc["pid"], doc["pid_start"] = pid, pid_start
            _write(candidate, doc)
        return bool(held)


def renew(key, folder=None):
    """Extend the lease of job ``key`` on every lock it holds; False if none is its own any more."""
    path = lock_path(folder)
    with _guard(path):
        held = _held_paths(path, key)
        for candidate in held:
            doc = _read(candidate)
            doc["expires_at"] = time.time() + float(doc.get("lease") or DEFAULT_LEASE)
            _write(candidate, doc)
        return bool(held)


def release(key, folder=None):
    path = lock_path(folder)
    with _guard(path):
        held = _held_paths(path, key)
        for candidate in held:
            with contextlib.suppress(OSError):
                os.remove(candidate)
        return bool(held)
