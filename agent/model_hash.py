"""A model's sha256, computed once per file: a job re-reads a cached digest while the file is unchanged.

Every job checks that the model on the device is the one the controller sent (its sha256). A model
of a few MB costs tens of ms to hash on a Raspberry Pi, in every job of a thread sweep; the cache
keeps the digest with the file's identity (path, size, mtime and ctime in ns, inode, device) and
hashes again only when any of them changed. ctime cannot be set from user space (utime sets it to
now), so a file rewritten in place with its old size and mtime restored still reads as changed.
One small JSON file per model under ``<state dir>/hashes``, written atomically: job processes are
forked per job, so a cache in memory would die with each of them.
"""

import hashlib
import os

from . import atomic, restore_state

__all__ = ["file_sha256", "identity", "verified_sha256"]


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identity(path):
    """What must not change for a cached digest to stand: [path, size, mtime_ns, ctime_ns, inode, device]."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return [real, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _cache_path(real_path, folder):
    name = hashlib.sha1(real_path.encode("utf-8", "surrogateescape")).hexdigest() + ".json"
    return os.path.join(folder or restore_state.state_dir(), "hashes", name)


def verified_sha256(path, folder=None):
    """(sha256 of the file at ``path``, True if it came from the cache)."""
    before = identity(path)
    cache = _cache_path(before[0], folder)
    entry = atomic.read_json(cache)
    if isinstance(entry, dict) and entry.get("identity") == before and isinstance(entry.get("sha256"), str):
        return entry["sha256"], True
    sha = file_sha256(before[0])
    # Kept only if the file did not change while it was read; a torn read must not be remembered.
    if identity(path) == before:
        try:
            atomic.write_json(cache, {"identity": before, "sha256": sha}, sync=False)
        except (OSError, IOError):
            pass  # a full or read-only disk: the job goes on, the next one hashes again
    return sha, False
