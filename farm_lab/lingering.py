"""Stop the lingering agents (agent/linger.py) that a lab's checks left running on its hosts, and the
controller's SSH keepers (orchestrator/transport/keeper.py) that a test's checks left running.

They run in their own session, so stopping a host's sshd leaves them; they would exit on their own
after their idle time, but a lab taken down (or a test done with it) should leave no process behind.
Found by their command line: the agent's ``linger`` command, under a folder of the lab's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path


def processes() -> Iterator[tuple[Path, list[str]]]:
    """Each running process's /proc folder and command line (those gone while read are skipped)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        yield entry, [w.decode("utf-8", "replace") for w in argv if w]


def lingering_agents(marker: str) -> list[int]:
    """Pids of lingering agents whose command line names a path containing ``marker``."""
    return [int(entry.name) for entry, words in processes()
            if "linger" in words[1:] and any(marker in w for w in words)]


def stop_lingering_agents(marker: str) -> int:
    """SIGTERM each of them; how many were signalled."""
    count = 0
    for pid in lingering_agents(marker):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            count += 1
        except OSError:
            pass  # gone already, or not ours to stop
    return count


KEEPER_MODULE = "orchestrator.transport.keeper"


def keepers(marker: str) -> list[int]:
    """Pids of SSH keepers whose command line (its socket, the cache folder it serves) contains ``marker``."""
    return [int(entry.name) for entry, words in processes()
            if KEEPER_MODULE in words[1:3] and any(marker in w for w in words[2:])]


def stop_keepers(marker: str) -> int:
    """SIGTERM each of them (each closes its connections and removes its socket); how many were signalled."""
    count = 0
    for pid in keepers(marker):
        try:
            os.kill(pid, signal.SIGTERM)
            count += 1
        except OSError:
            pass
    return count
