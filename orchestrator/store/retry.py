"""Store calls that must wait out a database restart: the ones no journal can stand in for.

Creating a run, planning its jobs and reading what a resume continues all need
an answer from the database before anything else can happen, so they cannot be
journaled like a state change. They are retried while the connection is lost,
for as long as one journaled write would be (``FARM_DB_RETRY_SECONDS``); a
database still away after that is the controller's to report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from .journal import _connection_lost, _retry_seconds

T = TypeVar("T")


def with_db_retry(action: Callable[..., T], *args: Any, stats: dict[str, int] | None = None, **kwargs: Any) -> T:
    """``action(*args, **kwargs)``, again while the database connection is lost; counts into ``stats['retried']``."""
    def count(_state: Any) -> None:
        if stats is not None:
            stats["retried"] = stats.get("retried", 0) + 1

    for attempt in Retrying(retry=retry_if_exception(_connection_lost), reraise=True,
                            stop=stop_after_delay(_retry_seconds()),
                            wait=wait_exponential(multiplier=0.2, max=2.0), before_sleep=count):
        with attempt:
            return action(*args, **kwargs)
    raise AssertionError("unreachable")
