"""SQLite's hard heap limit, set for one query and lifted after it.

The limit belongs to the whole process and ``PRAGMA hard_heap_limit`` can only lower it, so the
C function sqlite3_hard_heap_limit64 does the setting and the restoring. Where it cannot be found
(a Python with SQLite linked in statically), the pragma lowers it for the rest of the process,
which `farm query`, one command in its own process, can afford.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _c_setter() -> Callable[[int], int] | None:
    try:
        import _sqlite3

        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_hard_heap_limit64
    except (ImportError, OSError, AttributeError):
        return None
    function.restype = ctypes.c_int64
    function.argtypes = [ctypes.c_int64]
    return function


_SET_LIMIT = _c_setter()


@contextmanager
def heap_limit(driver: Any, limit_bytes: int) -> Iterator[None]:
    if _SET_LIMIT is None:
        driver.execute(f"PRAGMA hard_heap_limit = {int(limit_bytes)}")
        yield
        return
    before = _SET_LIMIT(int(limit_bytes))
    try:
        yield
    finally:
        _SET_LIMIT(before)
