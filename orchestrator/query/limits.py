"""How long `farm query` may run and how much it may return; each one an environment variable."""

from __future__ import annotations

from dataclasses import dataclass

from ..env_limits import positive_env as _positive

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
