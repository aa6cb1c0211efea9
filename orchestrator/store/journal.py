"""Writes that survive the database going away: retried, else journaled to a local file and replayed.

A run's state changes and results go through ``StoreWriter``. A lost
connection is retried with backoff (PostgreSQL restarting, SQLite busy); if
the database stays away, the write is appended to a JSONL journal in the data
directory (fsynced, so a result the agent may now delete is on disk) and the
run goes on. Every later write first replays the journal, in order, so the
database sees the changes in the order they happened. Replaying is safe twice:
state changes never reopen a terminal job and ingest is idempotent.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from . import jobs, records
from .db import Store, data_dir

# How long one write keeps retrying a lost connection before it is journaled instead.
DB_RETRY_ENV = "FARM_DB_RETRY_SECONDS"
# While the journal is non-empty, the database is tried again at most this often.
REPLAY_INTERVAL = 2.0


def journal_path(run_id: int) -> Path:
    return data_dir() / "journal" / f"run-{run_id}.jsonl"


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _retry_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(DB_RETRY_ENV) or 20.0))
    except ValueError:
        return 20.0


class Journal:
    """Append-only JSONL of pending writes, fsynced line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a kill mid-append: its write was never acknowledged to anyone
        return out

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def keep_only(self, entries: list[dict[str, Any]]) -> None:
        """Replace the journal with the entries still pending (atomic)."""
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            handle.writelines(json.dumps(entry, sort_keys=True) + "\n" for entry in entries)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def _ingest(store: Store, **a: Any) -> Any:
    return jobs.ingest_result(store, a["job_id"], a["attempt"], a["spool_key"], a["facts_id"],
                              a["python_version"], a["result"])


OPERATIONS: dict[str, Callable[..., Any]] = {
    "dispatched": lambda s, **a: jobs.dispatched(s, a["job_id"], a["attempt"], a["spool_key"], a["job_doc"]),
    "running": lambda s, **a: jobs.running(s, a["job_id"]),
    "requeue": lambda s, **a: jobs.requeue(s, a["job_id"], a["failure"], a["reason"]),
    "finish": lambda s, **a: jobs.finish(s, a["job_id"], a["status"], failure=a.get("failure"),
                                         reason=a.get("reason")),
    "ingest": _ingest,
    "host_failed": lambda s, **a: jobs.host_failed(s, a["host_id"], a["reason"], a["unhealthy_after"]),
    "host_ok": lambda s, **a: jobs.host_ok(s, a["host_id"], a.get("reason")),
    "finish_run": lambda s, **a: records.finish_run(s, a["run_id"], a["status"]),
}


class StoreWriter:
    """The run's one writer: serialised, retried, journaled when the database is away."""

    def __init__(self, store: Store, run_id: int, journal: Journal | None = None) -> None:
        self.store = store
        self.journal = journal or Journal(journal_path(run_id))
        self._lock = threading.Lock()
        self._pending = bool(self.journal.entries())
        self._last_try = 0.0
        self.stats = {"retried": 0, "journaled": 0, "replayed": 0}

    @property
    def pending(self) -> int:
        return len(self.journal.entries())

    def write(self, op: str, **args: Any) -> Any:
        """Apply one change; returns its result, or None if it was journaled for later."""
        with self._lock:
            if self._pending:
                self._replay_locked(force=False)
            if self._pending:
                self.journal.append({"op": op, "args": args, "at": time.time()})
                self.stats["journaled"] += 1
                return None
            try:
                return self._retrying(lambda: OPERATIONS[op](self.store, **args))
            except (OperationalError, DBAPIError) as exc:
                if not _connection_lost(exc):
                    raise
                self.journal.append({"op": op, "args": args, "at": time.time()})
                self.stats["journaled"] += 1
                self._pending, self._last_try = True, time.monotonic()
                return None

    def replay(self) -> int:
        """Apply journaled writes now; returns how many are still pending."""
        with self._lock:
            self._replay_locked(force=True)
            return self.pending

    def _retrying(self, action: Callable[[], Any]) -> Any:
        def count(_state: Any) -> None:
            self.stats["retried"] += 1

        for attempt in Retrying(retry=retry_if_exception(_connection_lost), reraise=True,
                                stop=stop_after_delay(_retry_seconds()),
                                wait=wait_exponential(multiplier=0.2, max=2.0), before_sleep=count):
            with attempt:
                return action()
        raise AssertionError("unreachable")

    def _replay_locked(self, *, force: bool) -> None:
        if not force and time.monotonic() - self._last_try < REPLAY_INTERVAL:
            return
        self._last_try = time.monotonic()
        entries = self.journal.entries()
        done = 0
        try:
            for entry in entries:
                def apply(entry: dict[str, Any] = entry) -> Any:
                    return OPERATIONS[entry["op"]](self.store, **entry["args"])

                # Forced (the run's last word): as patient as a write; the first use of a pooled
                # connection the outage broke fails once even when the database is back.
                self._retrying(apply) if force else apply()
                done += 1
        except (OperationalError, DBAPIError) as exc:
            if not _connection_lost(exc):
                raise
        self.stats["replayed"] += done
        if done:
            self.journal.keep_only(entries[done:])
        self._pending = done < len(entries)
