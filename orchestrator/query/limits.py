"""How long `farm query` may run and how much it may return; each one an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import FarmError

TIMEOUT_ENV = "FARM_QUERY_TIMEOUT"
MAX_ROWS_ENV = "FARM_QUERY_MAX_ROWS"
MAX_MB_ENV = "FARM_QUERY_MAX_MB"


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: float = 30.0
    max_rows: int = 100_000
    # What the rows may take in farm's memory, and on SQLite what the engine itself may allocate.
    max_mb: int = 256

    @classmethod
    def from_env(cls) -> QueryLimits:
        defaults = cls()
        return cls(timeout_s=_positive(TIMEOUT_ENV, float, defaults.timeout_s),
                   max_rows=_positive(MAX_ROWS_ENV, int, defaults.max_rows),
                   max_mb=_positive(MAX_MB_ENV, int, defaults.max_mb))

    @property
    def max_bytes(self) -> int:
        return self.max_mb * 1024 * 1024


def _positive(name: str, kind: type, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not value > 0:
        raise FarmError(f"{name}={raw!r} is not a positive {kind.__name__}")
    return value
