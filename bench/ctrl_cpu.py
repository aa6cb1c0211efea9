"""The controller's own CPU per host, one contact at a time, for the agent floor and for a check.

``bench/ssh_farm.py`` measures the fan-out (every host at once); on two shared CPUs its wall times
swing with the load. This one contacts the hosts of a running lab one after another, so that the
controller's CPU per contact (``time.process_time``: every thread of this process, paramiko's
transport threads included) can be profiled and compared between two versions of the code:

- agent floor: ``SshTransport`` connect, authenticate, ``python3 -c pass``, close (as ``ssh_farm.py``);
- check: ``check_hosts`` with one worker over the same hosts, its store write included (SQLite).

Floor and check alternate round by round, so a slow moment of the machine hits both.
``--profile FILE`` writes a yappi CPU profile of the check rounds (every thread), ``--profile-floor FILE``
one of the floor rounds (one of the two per run: yappi profiles the whole process); read them with
``python -m pstats``.

Run against a lab that is up:

    .venv/bin/python -m farm_lab up -n 12 --dir /tmp/lab --port 2311
    flock /work/wt/measure.lock .venv/bin/python bench/ctrl_cpu.py -i /tmp/lab/inventory.yaml --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ssh_farm import agent_floor_once  # beside this file: python runs a script with its folder on sys.path
from typing_extensions import Self

from orchestrator.facts_check import check_hosts
from orchestrator.inventory import Host, load_inventory
from orchestrator.store import open_store
from orchestrator.store.db import Store
from orchestrator.transport import keeper_link


def floor_once(host: Host, known_hosts: Path) -> None:
    agent_floor_once(host, {"known_hosts": known_hosts})  # the same floor as bench/ssh_farm.py's


def floor_round(hosts: list[Host], known_hosts: Path) -> None:
    for host in hosts:
        floor_once(host, known_hosts)


def check_round(hosts: list[Host], known_hosts: Path, store: Store) -> None:
    checks = check_hosts(hosts, {"known_hosts": known_hosts}, store, workers=1)
    down = [f"{c.host.name}: {c.error}" for c in checks if not c.reachable]
    if down:
        raise RuntimeError("; ".join(down[:3]))


class Profiler:
    """yappi on CPU time over every thread (paramiko's transport threads do the key exchange and crypto).

    cProfile sees one thread only; yappi (``pip install yappi``, not a farm dependency) sees them all.
    """

    def __init__(self) -> None:
        import yappi  # only when asked: a profiling aid, not a dependency

        self.yappi = yappi
        yappi.set_clock_type("cpu")

    def __enter__(self) -> Self:
        self.yappi.start(builtins=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.yappi.stop()

    def dump(self, path: Path) -> None:
        self.yappi.get_func_stats().save(str(path), type="pstat")
        self.yappi.clear_stats()


def cpu_ms(action: Callable[[], None], count: int) -> float:
    """This process's CPU and the SSH keeper's (transport/keeper.py), which holds a check's connections."""
    started, keeper = time.process_time(), keeper_link.cpu_seconds()
    action()
    return (time.process_time() - started + keeper_link.cpu_seconds() - keeper) / count * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--inventory", type=Path, required=True, help="a running lab's inventory.yaml")
    parser.add_argument("--rounds", type=int, default=10, help="rounds over every host (default 10)")
    parser.add_argument("--hosts", type=int, default=0, help="only the first N hosts (default all)")
    parser.add_argument("--profile", type=Path, help="write a yappi profile (pstats format) of the check rounds here")
    parser.add_argument("--profile-floor", type=Path, help="write one of the floor rounds here")
    args = parser.parse_args(argv)
    hosts = list(load_inventory(args.inventory).hosts)
    if args.hosts:
        hosts = hosts[:args.hosts]
    known_hosts = args.inventory.parent / "known_hosts"
    scratch = Path(tempfile.mkdtemp(prefix="farm-ctrl-cpu-"))
    os.environ["FARM_DATA_DIR"] = str(scratch)
    store = open_store()
    try:
        # Warm-up, untimed: deploys the agent where it is missing, fills the per-process caches.
        floor_round(hosts, known_hosts)
        check_round(hosts, known_hosts, store)
        floor_ms: list[float] = []
        check_ms: list[float] = []
        if args.profile and args.profile_floor:
            parser.error("--profile and --profile-floor: one at a time")
        profiler = Profiler() if args.profile or args.profile_floor else None
        for _ in range(args.rounds):
            if args.profile_floor and profiler:
                with profiler:
                    floor_ms.append(cpu_ms(lambda: floor_round(hosts, known_hosts), len(hosts)))
            else:
                floor_ms.append(cpu_ms(lambda: floor_round(hosts, known_hosts), len(hosts)))
            if args.profile and profiler:
                with profiler:
                    check_ms.append(cpu_ms(lambda: check_round(hosts, known_hosts, store), len(hosts)))
            else:
                check_ms.append(cpu_ms(lambda: check_round(hosts, known_hosts, store), len(hosts)))
        if profiler:
            profiler.dump(args.profile or args.profile_floor)
    finally:
        store.close()
    load = os.getloadavg()[0]
    print(f"{len(hosts)} hosts x {args.rounds} rounds, one contact at a time; controller CPU ms per host "
          f"(median, min-max of the rounds; load average {load:.1f}):")
    for name, values in (("agent floor", floor_ms), ("check", check_ms)):
        print(f"  {name:<12} {statistics.median(values):6.2f}  ({min(values):.2f}-{max(values):.2f})")
    print(f"  check/floor  {statistics.median(check_ms) / statistics.median(floor_ms):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
