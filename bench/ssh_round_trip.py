"""Round trips on one open SSH connection: ``exec true`` and an agent ``ping``, against a 30 ms goal.

With Nagle's algorithm on, a small write waits for the peer's delayed ACK and each round trip costs
about 40 ms; farm's transport turns it off (TCP_NODELAY), so a round trip takes a few milliseconds.
tests/test_ssh_transport.py checks the mechanism (one connection, TCP_NODELAY set, replies in turn);
this script keeps the speed goal, which a timed unit test cannot judge on a busy machine.

Brings up a one-host simulated lab (real sshd on loopback, farm_lab/), alternates the two kinds of
round trip within each repeat (so a slow moment hits both), prints medians and min, the load
average, and exits 1 when a median misses the goal. The lab is taken down at the end.

Run:  .venv/bin/python bench/ssh_round_trip.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from farm_lab.lab import Lab
from farm_lab.sshd import free_port
from orchestrator.agent_client import AgentSession
from orchestrator.inventory import load_inventory
from orchestrator.transport.ssh import SshTransport

GOAL_MS = 30.0  # well under Nagle's ~40 ms per round trip


def timed_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1e3


def measure(lab: Lab, repeats: int) -> dict[str, list[float]]:
    host = load_inventory(lab.inventory_path).hosts[0]
    transport = SshTransport(host, known_hosts=lab.known_hosts)
    session = AgentSession(transport).open()
    try:
        transport.run(["true"])  # the first use connects; only round trips on the open link count
        session.request({"op": "ping"}, timeout=10)
        found: dict[str, list[float]] = {"exec true": [], "agent ping": []}
        for _ in range(repeats):
            found["exec true"].append(timed_ms(lambda: transport.run(["true"])))
            found["agent ping"].append(timed_ms(lambda: session.request({"op": "ping"}, timeout=10)))
        return found
    finally:
        session.close()
        transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="round trips of each kind (default 200)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    scratch = Path(tempfile.mkdtemp(prefix="farm-bench-rtt-"))
    os.environ["FARM_DATA_DIR"] = str(scratch / "data")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the lab is taken down
    lab = Lab(scratch / "lab")
    try:
        lab.up(1, port=free_port(["127.0.0.2"]), say=lambda line: None)
        found = measure(lab, args.repeats)
    finally:
        lab.down(purge=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}; {args.repeats} round trips each")
    missed = []
    for what, samples in found.items():
        median = statistics.median(samples)
        print(f"{what:<12} median {median:7.2f} ms  min {min(samples):7.2f} ms  (goal: median < {GOAL_MS:g} ms)")
        if median >= GOAL_MS:
            missed.append(what)
    if missed:
        print(f"goal missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
