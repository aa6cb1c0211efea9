"""Replace a file whole: a reader sees the old file or the new one, never half, and a power cut keeps one."""

import contextlib
import json
import os


def write_json(path, doc, sync=True):
    """Atomic: write a temporary file, fsync it, rename it over ``path``.

    ``sync=False`` leaves the folder's fsync (which makes the rename itself survive a power
    cut) to the caller's ``sync_folder``, for one that has something more urgent to do first.
    """
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder)
    temporary = "{}.{}.tmp".format(path, os.getpid())
    with open(temporary, "w") as handle:
        json.dump(doc, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, path)
    if sync:
        sync_folder(folder)


def read_json(path):
    """The document a ``write_json`` left, or None for a missing, unreadable or half-written file."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return None


def sync_folder(folder):
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
