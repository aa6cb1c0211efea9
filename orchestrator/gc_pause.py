"""Pausing Python's cyclic garbage collector while a short command makes many objects that hold no cycles."""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block; it resumes (if it was on) when the block ends.

    Each 700 new container objects set off a collection, and every tenth of those scans everything loaded so
    far: reading 10,000 rows (as many row objects) after SQLAlchemy's import cost `farm results` 0.07 s of its
    0.46 s of CPU in collections that found nothing. Rows, their columns and a module's import make no cycles
    worth collecting on the way.

    When the block ends, what it made counts as old (``gc.freeze`` then ``gc.unfreeze`` moves every tracked
    object into the oldest generation and restarts the young one's count): else the first collection after
    it would scan all of it at once (0.02 s there). A full collection, which Python runs when enough has
    outlived the young ones, still finds whatever cycles the block left."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


_EXIT_COLLECTION_SKIPPED = False


def skip_exit_collection() -> None:
    """Leave every object out of the collection Python runs as the process shuts down (``gc.freeze`` at exit).

    That collection scans all that is still alive, SQLAlchemy's modules and a table's rows included, to free
    what the exit frees anyway: 0.06-0.1 s of CPU after `farm results`, a fifth of the command here. For a
    command that closes what it opens (the store, its output file): an object in a cycle whose ``__del__``
    would still have work to do is not collected at exit. Called again, it registers nothing more; in a
    process that runs commands in turn (the tests), it acts only when that process exits."""
    global _EXIT_COLLECTION_SKIPPED
    if not _EXIT_COLLECTION_SKIPPED:
        atexit.register(gc.freeze)
        _EXIT_COLLECTION_SKIPPED = True


@contextmanager
def old_objects_frozen() -> Iterator[None]:
    """Every object alive when the block starts is left out of the collections inside it (``gc.freeze``).

    A fan-out over many hosts makes garbage (paramiko's messages, threads, channels) that sets off young
    collections and, now and then, a full one, which scans all that was loaded before: SQLAlchemy, the
    migrations, the store, 100,000 objects. That was a fifth of `farm inventory check`'s controller CPU per
    host (bench/ctrl_cpu.py under callgrind). What the block makes is still collected as usual, and what was
    frozen is collected again once the block ends (``gc.unfreeze``). Where something else already froze
    objects (a long-lived process that chose to), this leaves the freeze to it and does nothing."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
