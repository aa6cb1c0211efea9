"""Run one piece of work per lab host, several at once, and hand back the outcomes in the hosts' order.

The work is mostly waiting on child processes (ssh-keygen, sshd binding its
port), so threads overlap it well; what the caller reports comes out in the
order it would have had one host after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Enough to overlap each host's waits (sshd forks and binds in the background) on a machine of any size;
# more only adds threads contending for the GIL over the device roots' Python file writes.
MAX_WORKERS = 16


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    item: T
    value: R | None = None
    error: Exception | None = None


def each_in_order(work: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> Iterator[Outcome[T, R]]:
    """``work(item)`` for every item, up to ``workers`` (default MAX_WORKERS) at a time; each outcome as soon as it and all
    before it are done.

    After the first failure no further item starts (those already running finish, so nothing is left
    half done), and the items never started yield nothing: as when a loop stops at its first error,
    except that what ran beside the failure ran to its end.
    """
    failed = threading.Event()
    size = max(1, min(workers or MAX_WORKERS, len(items)))
    pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="farm-lab")
    futures: list[Future[R]] = []

    def stop_on_failure(done: Future[R]) -> None:
        if not done.cancelled() and done.exception() is not None and not failed.is_set():
            failed.set()
            for future in futures:
                future.cancel()  # only those not yet running

    try:
        for item in items:
            future = pool.submit(work, item)
            futures.append(future)
            future.add_done_callback(stop_on_failure)
            if failed.is_set():
                future.cancel()
        for item, future in zip(items, futures, strict=True):
            try:
                value = future.result()
            except CancelledError:
                continue
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who knows what it means
                yield Outcome(item, error=exc)
                continue
            yield Outcome(item, value=value)
    finally:
        # Also when the caller stops early (its own error): nothing keeps running behind its back.
        pool.shutdown(wait=True, cancel_futures=True)
