"""How fast farm drives a farm over SSH, next to the floor SSH itself sets, measured in one run.

Brings up a simulated lab (real sshd hosts on loopback, farm_lab/), then:

1. ``farm inventory check`` on 10, 30 and 60 hosts (``--sizes 60,250`` for the issue's goals; in-process
   through the same function the CLI calls, and as the CLI itself), against two floors, all hosts in
   parallel: the SSH floor, one SSH handshake plus one command round trip per host (``true`` over our
   SSH transport), and the agent floor, the same with the host's Python started once
   (``python3 -c pass``): the least any agent-based tool can do. Goal: check <= 1.5 x the agent floor,
   controller CPU <= 5 ms per host.
2. Per-job controller overhead on an open connection, for jobs of a model that does almost nothing:
   - round trips on one open connection: an agent ``ping`` on its JSON-lines channel, and ``exec true``;
   - jobs sent through one agent session (AgentSession.run_job) less the agent's time in each: dispatch
     and parse;
   - whole ``farm run``s of N such jobs on one host (Runner.run, as the CLI drives it), read on the
     host's clock inside the agent: the host idle between one job's end and the next one's start
     (the controller's per-job cost: result back, parse, store, bookkeeping, next job out), the
     agent's own work in a job around its benchmark (model hash, power mode, conditions read before
     and after), and their sum. A job's benchmark is what its result reports: model load, warm-up,
     timed invokes.

Floor and farm alternate within each repeat, so a slow moment of the machine hits both.
Medians are printed; ratios are farm / floor. The lab is taken down at the end.

Run:  .venv/bin/python bench/ssh_farm.py
      .venv/bin/python bench/ssh_farm.py --sizes 10,30 --repeats 3 --jobs 100 --json out/ssh_farm.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from typing_extensions import Self

from agent.result_schema import AGENT_WORK_PARTS
from agent.schema import make_job
from farm_lab.boards import BOARDS
from farm_lab.lab import FIRST_ADDRESS, Lab
from farm_lab.lingering import processes
from farm_lab.sshd import free_port
from orchestrator.agent_client import AgentSession
from orchestrator.agent_linger import LINGER_ENV
from orchestrator.facts_check import check_hosts
from orchestrator.inventory import Host, load_inventory
from orchestrator.matrix import MatrixSpec
from orchestrator.models import registry
from orchestrator.models.synthetic import build_dense_stack
from orchestrator.scheduler import MAX_CONNECT_WORKERS, Runner
from orchestrator.store import open_store
from orchestrator.store.db import Store
from orchestrator.store.schema import JobRow, ModelRow, ResultRow
from orchestrator.transport import keeper_link
from orchestrator.transport.ssh import SshTransport

# One warm-up-free timed invoke: the job's work is a model load and one tiny invoke, all agent-side.
NOOP_TIMING = {"warmup_min_runs": 0, "warmup_min_seconds": 0, "min_runs": 1, "min_seconds": 0, "max_seconds": 10}
TARGET_MS_PER_JOB = 5.0
CHECK_OVER_AGENT_FLOOR = 1.5  # issue 18's goal for `farm inventory check`
CONTROLLER_MS_PER_HOST = 5.0
PING = "round trip: agent ping"
EXEC = "round trip: exec `true`"
SESSION = "job: agent session (dispatch, parse)"
AROUND = "job: agent's own work around the benchmark"
# Threads 1..4 per model: the lab's boards have 4 CPUs, and more threads than CPUs is a skipped cell.
RUN_THREADS = 4
RUN_ROW = "job: farm run, host idle between jobs"
CONTROLLER_ROW = "  of which: controller, result in -> start out"
CPU_ROW = "job: farm run, controller CPU per job"
TOTAL_ROW = "job: farm run, all but the benchmark"


@dataclass(frozen=True)
class Sample:
    """One timed action: wall seconds, and CPU seconds of the whole machine and of this process (the controller)."""

    wall: float
    machine_cpu: float
    controller_cpu: float
    hosts_cpu: float = 0.0  # CPU of the simulated hosts' sshds and all they ran (sessions, agents, tools)


@dataclass
class Measurements:
    lab_up_s: float = 0.0
    first_check_s: float = 0.0
    check: dict[int, list[Sample]] = field(default_factory=dict)
    # The same check where no lingering agent runs (FARM_AGENT_LINGER=0): every host's Python is started.
    check_cold: dict[int, list[Sample]] = field(default_factory=dict)
    # Agents lingering, but no connection kept by the SSH keeper (FARM_SSH_KEEPER=0): a handshake per host.
    check_unkept: dict[int, list[Sample]] = field(default_factory=dict)
    check_cli: dict[int, list[float]] = field(default_factory=dict)
    floor: dict[int, list[Sample]] = field(default_factory=dict)
    agent_floor: dict[int, list[Sample]] = field(default_factory=dict)
    per_job: dict[str, list[float]] = field(default_factory=dict)  # name -> ms per job, one per job
    agent_parts: dict[str, list[float]] = field(default_factory=dict)  # the agent's own work, by part (ms)
    run_walls: list[float] = field(default_factory=list)  # seconds per measured farm run
    run_jobs: int = 0  # jobs in each of those runs
    session_open_s: float = 0.0
    queued_starts: int = 0  # jobs the agent started on its own once the one before was done
    keeper: dict[int, dict[str, Any]] = field(default_factory=dict)  # size -> the SSH keeper's own figures
    lab_dir: str = ""
    job_host: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,30,60", help="lab sizes to time the check on (default 10,30,60)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per size (default 5)")
    parser.add_argument("--cli-repeats", type=int, default=3,
                        help="repeats of the `farm inventory check` command per size; 0 skips it (default 3)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per per-job measurement (default 200)")
    parser.add_argument("--run-jobs", type=int, default=50,
                        help="jobs in each measured `farm run` on one host (default 50)")
    parser.add_argument("--run-repeats", type=int, default=3, help="measured `farm run`s (default 3)")
    parser.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab running (its directory is printed)")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, not '{args.sizes}'")
    if not sizes or sizes[0] < 1 or min(args.repeats, args.jobs, args.run_jobs - 1, args.run_repeats) < 1:
        parser.error("--sizes, --repeats, --jobs and --run-repeats must be positive, --run-jobs at least 2")

    scratch = Path(tempfile.mkdtemp(prefix="farm-bench-ssh-"))
    # A private results database and model cache: farm reads the variable whenever it opens them.
    os.environ["FARM_DATA_DIR"] = str(scratch / "data")
    os.environ["FARM_CACHE_DIR"] = str(scratch / "cache")  # where the lingering agents' sockets are noted
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the lab is taken down either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab(scratch / "lab")
    found = Measurements(lab_dir=str(lab.dir))
    started = time.perf_counter()
    try:
        port = free_port([str(FIRST_ADDRESS + n) for n in range(sizes[-1])])
        found.lab_up_s = timed(lambda: lab.up(sizes[-1], port=port, say=lambda line: None))
        hosts = list(load_inventory(lab.inventory_path).hosts)
        options = {"known_hosts": lab.known_hosts}
        store = open_store()
        try:
            measure_check(found, hosts, options, store, sizes, args.repeats, args.cli_repeats, lab)
            measure_per_job(found, hosts, options, store, args.jobs, args.run_jobs, args.run_repeats)
        finally:
            store.close()
    finally:
        keeper_link.stop()  # this run's own keeper (its name follows FARM_CACHE_DIR)
        if args.keep_lab:
            print(f"lab left running in {lab.dir}: farm lab down --dir {lab.dir}")
        else:
            lab.down(purge=True)
            shutil.rmtree(scratch, ignore_errors=True)
    report(found, time.perf_counter() - started)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(found), indent=1) + "\n")
    return 0


def timed(action: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def machine_cpu_seconds() -> float:
    """CPU time spent by everything on this machine so far (the simulated hosts' sshd and agents included)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds(sshd_pids: list[int], marker: str) -> float:
    """CPU spent by these sshds, their lab's lingering agents, and every process under them, live or reaped:
    each session (the SSH keeper's long-lived ones included), shell, agent and tool a host ran.

    The sum over each process of that tree of /proc/PID/stat's utime, stime, cutime and cstime: a process
    still running counts its own time, one reaped is in its parent's. Unlike the machine's total, other
    work on the machine does not add to it, so it stays comparable on a busy machine.
    """
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    roots = set(sshd_pids)
    for entry, words in processes():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid], ticks[pid] = int(fields[1]), sum(int(v) for v in fields[11:15])
        if "linger" in words[1:] and any(marker in w for w in words):
            roots.add(pid)  # a lingering agent: its own session, not under sshd

    def counted(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in roots:
                return True
            pid, seen = parents.get(pid, 0), seen + 1
        return False

    return sum(t for pid, t in ticks.items() if counted(pid)) / os.sysconf("SC_CLK_TCK")


# sshd reaps a finished session a moment after its channel closes; only then is its CPU in cutime.
REAP_WAIT_S = 0.3


def controller_cpu_seconds() -> float:
    """This process's CPU, every thread's, and the SSH keeper's (transport/keeper.py): the keeper holds a
    check's connections and relays its streams, so its work is the controller's."""
    return time.process_time() + keeper_link.cpu_seconds()


def measured(action: Callable[..., Any], *args: Any, sshd_pids: list[int] | None = None,
             marker: str = "") -> Sample:
    hosts = host_cpu_seconds(sshd_pids, marker) if sshd_pids else 0.0
    machine, controller, started = machine_cpu_seconds(), controller_cpu_seconds(), time.perf_counter()
    action(*args)
    wall = time.perf_counter() - started
    sample = Sample(wall, machine_cpu_seconds() - machine, controller_cpu_seconds() - controller)
    if sshd_pids:
        time.sleep(REAP_WAIT_S)
        sample = replace(sample, hosts_cpu=host_cpu_seconds(sshd_pids, marker) - hosts)
    return sample


# -- farm inventory check vs the handshake floor --------------------------------------------------------------

def handshake_floor(hosts: list[Host], options: dict[str, Any]) -> None:
    """What any SSH controller pays: connect, authenticate, run one command, for every host at once."""
    def one(host: Host) -> None:
        transport = SshTransport(host, **options)
        try:
            done = transport.run(["true"])
            if not done.ok:
                raise RuntimeError(f"{host.name}: 'true' exited {done.exit_code}: {done.stderr}")
        finally:
            transport.close()

    # The same pool width as the check's, so the floor gets the same parallelism.
    with ThreadPoolExecutor(max_workers=min(len(hosts), MAX_CONNECT_WORKERS)) as pool:
        list(pool.map(one, hosts))


def agent_floor_once(host: Host, options: dict[str, Any]) -> None:
    """The agent floor for one host: connect, authenticate, start the host's Python once."""
    transport = SshTransport(host, **options)
    try:
        done = transport.run([host.python, "-c", "pass"])
        if not done.ok:
            raise RuntimeError(f"{host.name}: '{host.python} -c pass' exited {done.exit_code}: {done.stderr}")
    finally:
        transport.close()


def agent_floor(hosts: list[Host], options: dict[str, Any]) -> None:
    """What any agent-based tool pays: the agent floor of every host, all at once."""
    with ThreadPoolExecutor(max_workers=min(len(hosts), MAX_CONNECT_WORKERS)) as pool:
        list(pool.map(lambda host: agent_floor_once(host, options), hosts))


def inventory_check(hosts: list[Host], options: dict[str, Any], store: Store) -> None:
    checks = check_hosts(hosts, options, store)
    down = [f"{c.host.name}: {c.error}" for c in checks if not c.reachable]
    if down:
        raise RuntimeError("inventory check could not reach every host: " + "; ".join(down[:3]))


def cold_check(hosts: list[Host], options: dict[str, Any], store: Store) -> None:
    """The check where no agent lingers: each host's agent is started, and asked not to stay."""
    os.environ[LINGER_ENV] = "0"
    try:
        inventory_check(hosts, options, store)
    finally:
        del os.environ[LINGER_ENV]


def keeper_figures() -> dict[str, Any]:
    """What the SSH keeper holds: connections, threads, resident memory, sockets."""
    stats = keeper_link.ask("stats") or {}
    pid = stats.get("pid")
    figures: dict[str, Any] = {"kept": len(stats.get("kept") or []), "connections made": stats.get("connections")}
    if pid:
        status = Path(f"/proc/{pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(("VmRSS:", "Threads:")):
                name, value = line.split(":", 1)
                figures[name] = value.strip()
        try:
            figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return figures


def warm_keeper(hosts: list[Host], options: dict[str, Any], store: Store) -> None:
    """Untimed: a check that leaves every host's agent lingering and its connection kept, as the check of a
    quarter of an hour before would have (the first check to want a keeper starts it and goes on without)."""
    inventory_check(hosts, options, store)
    deadline = time.monotonic() + 10
    while keeper_link.ask("stats") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    inventory_check(hosts, options, store)


def unkept_check(hosts: list[Host], options: dict[str, Any], store: Store) -> None:
    """The check where agents linger but no connection is kept (FARM_SSH_KEEPER=0): one handshake per host."""
    os.environ[keeper_link.KEEPER_ENV] = "0"
    try:
        inventory_check(hosts, options, store)
    finally:
        del os.environ[keeper_link.KEEPER_ENV]


def farm_cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"farm {' '.join(args[:2])} exited {done.returncode}: {done.stderr[-500:]}")


def cli_database(directory: Path) -> str:
    """The CLI's own database, apart from this process's store, created (untimed) at the newest schema."""
    url = f"sqlite:///{directory / 'cli.db'}"
    farm_cli("db", "upgrade", "--db", url)
    return url


def cli_check(inventory: Path, known_hosts: Path, db: str) -> None:
    farm_cli("inventory", "check", "-i", str(inventory), "--known-hosts", str(known_hosts), "--db", db)


def measure_check(found: Measurements, hosts: list[Host], options: dict[str, Any], store: Store,
                  sizes: list[int], repeats: int, cli_repeats: int, lab: Lab) -> None:
    # The first check deploys the agent to every host; later ones find it there, as in daily use.
    found.first_check_s = timed(inventory_check, hosts, options, store)
    for size in sizes:
        subset = hosts[:size]
        inventory = lab_subset(lab.inventory_path, lab.dir.parent, size)
        db = cli_database(lab.dir.parent) if cli_repeats else ""
        found.floor[size], found.agent_floor[size], found.check[size], found.check_cli[size] = [], [], [], []
        found.check_cold[size], found.check_unkept[size] = [], []
        pids, marker = sshd_pids(lab, subset), f"/farm-lab/{lab.id}/"
        warm_keeper(subset, options, store)
        for repeat in range(max(repeats, cli_repeats)):
            if repeat < repeats:
                found.floor[size].append(measured(handshake_floor, subset, options, sshd_pids=pids, marker=marker))
                found.agent_floor[size].append(measured(agent_floor, subset, options, sshd_pids=pids, marker=marker))
                found.check[size].append(measured(inventory_check, subset, options, store, sshd_pids=pids,
                                                  marker=marker))
                found.check_unkept[size].append(measured(unkept_check, subset, options, store, sshd_pids=pids,
                                                         marker=marker))
                found.check_cold[size].append(measured(cold_check, subset, options, store, sshd_pids=pids,
                                                       marker=marker))
            if repeat < cli_repeats:
                found.check_cli[size].append(timed(cli_check, inventory, lab.known_hosts, db))
        found.keeper[size] = keeper_figures()
        print(f"  {size:3d} hosts: check {median(walls(found.check[size])):.2f} s, "
              f"with no kept connection {median(walls(found.check_unkept[size])):.2f} s, "
              f"with no lingering agent {median(walls(found.check_cold[size])):.2f} s, "
              f"SSH floor {median(walls(found.floor[size])):.2f} s, "
              f"agent floor {median(walls(found.agent_floor[size])):.2f} s", flush=True)


def sshd_pids(lab: Lab, hosts: list[Host]) -> list[int]:
    """The pids of these hosts' sshds (the lab's own processes, checked by farm_lab)."""
    names = {h.name for h in hosts}
    return [pid for sshd in lab._saved_sshds() if sshd.name in names and (pid := sshd.pid()) is not None]


def lab_subset(inventory: Path, directory: Path, size: int) -> Path:
    """The lab's inventory cut to its first ``size`` hosts, for the CLI (outside the lab's directory, so
    that the CLI is given the lab's known_hosts explicitly, as a user of any inventory would)."""
    entries = yaml.safe_load(inventory.read_text())["hosts"][:size]
    path = directory / f"inventory-{size}.yaml"
    path.write_text(yaml.safe_dump({"hosts": entries}, sort_keys=False))
    return path


# -- per-job controller overhead on an open connection ----------------------------------------------------------

def pick_job_host(hosts: list[Host]) -> Host:
    """A host whose board has a runtime; the newest Python, as most of a real farm would run."""
    runnable = [h for h in hosts if h.board in BOARDS and BOARDS[h.board].runtime is not None]
    if not runnable:
        raise RuntimeError("the lab has no host with a TFLite runtime")
    return max(runnable, key=lambda h: tuple(int(p) for p in BOARDS[h.board].python.split(".")))


def noop_models(store: Store, count: int) -> list[ModelRow]:
    """``count`` different one-layer dense models of 1..count units: a job of each does almost nothing."""
    rows = []
    for units in range(1, count + 1):
        row, _ = registry.register_bytes(store, build_dense_stack(1, units=units), name=f"bench-noop-dense1x{units}",
                                         family="dense_stack", params={"layers": 1, "units": units},
                                         source="bench/ssh_farm.py")
        rows.append(row)
    return rows


def agent_seconds(result: dict[str, Any]) -> float:
    return float(result["finished_at"]) - float(result["started_at"])


def benchmark_seconds(result: dict[str, Any]) -> float:
    """The benchmark itself, as the agent timed it: model load, warm-up (first inference included), timed runs."""
    timing = result["timing"]
    return float(timing["init_ms"]) / 1e3 + float(timing["warmup_seconds"]) + float(timing["timed_seconds"])


def measure_per_job(found: Measurements, hosts: list[Host], options: dict[str, Any], store: Store,
                    jobs: int, run_jobs: int, run_repeats: int) -> None:
    host = pick_job_host(hosts)
    found.job_host = f"{host.name} ({host.board}, Python {BOARDS[host.board].python})"
    models = noop_models(store, max(2, run_jobs))
    started = time.perf_counter()
    session = AgentSession(SshTransport(host, **options)).open()
    found.session_open_s = time.perf_counter() - started
    try:
        remote = session.upload_model(Path(models[0].path), models[0].sha256)
        ping, command, dispatch = [], [], []
        for index in range(jobs):
            ping.append(timed(lambda: session.request({"op": "ping"}, timeout=30)) * 1e3)
            command.append(timed(lambda: session.transport.run(["true"])) * 1e3)
            job = make_job(f"bench-dispatch-{index}", remote, models[0].sha256, "cpu", 1, timing=NOOP_TIMING)
            before = time.perf_counter()
            result = session.run_job(job)
            wall = time.perf_counter() - before
            if result["status"] != "succeeded":
                raise RuntimeError(f"the no-op job failed on {host.name}: {result.get('error')}")
            dispatch.append((wall - agent_seconds(result)) * 1e3)
        found.per_job[PING] = ping
        found.per_job[EXEC] = command
        found.per_job[SESSION] = dispatch
    finally:
        session.close()
        session.transport.close()
    run_matrix(store, host, options, models)  # uploads the models: the measured runs find them there
    gaps: list[float] = []
    around: list[float] = []
    totals: list[float] = []
    shares: list[float] = []
    cpu: list[float] = []
    for _ in range(run_repeats):
        with RequestLog() as requests:
            cpu_before = time.process_time()
            wall, details = run_matrix(store, host, options, models)
            cpu.append((time.process_time() - cpu_before) / len(models) * 1e3)
        idle, work = per_job_overheads(details)
        for detail in details:
            for part, value in (detail.get("agent_work") or {}).items():
                if part in AGENT_WORK_PARTS:
                    found.agent_parts.setdefault(part, []).append(float(value))
        gaps += idle
        shares += requests.controller_shares()
        found.queued_starts += requests.queued_starts()
        around += work
        totals += [w + i for w, i in zip(work, idle, strict=False)]  # the last job has no idle time after it
        found.run_walls.append(wall)
    found.per_job[AROUND] = around
    found.per_job[RUN_ROW] = gaps
    found.per_job[CONTROLLER_ROW] = shares
    found.per_job[CPU_ROW] = cpu
    found.per_job[TOTAL_ROW] = totals
    found.run_jobs = len(models)


class RequestLog:
    """Every agent request of a run with its send and answer times, read on the controller's clock.

    Bench instrumentation only: it wraps AgentSession.request for the duration of the block.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, float, float, dict[str, Any]]] = []  # op, sent, answered, reply
        self._original = AgentSession.request

    def __enter__(self) -> Self:
        original, entries = self._original, self.entries

        def request(session: AgentSession, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
            sent = time.perf_counter()
            reply = original(session, message, timeout)
            entries.append((str(message.get("op")), sent, time.perf_counter(), reply))
            return reply

        AgentSession.request = request  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        AgentSession.request = self._original  # type: ignore[method-assign]

    def controller_shares(self) -> list[float]:
        """Per job after the first: ms of the controller's own work on the path from one job to the next.

        A job the agent had queued (``start`` answered "queued") began with no request: 0. Otherwise
        from the collect answer that brought the previous result to the send of the next start.
        """
        shares, result_in, first = [], None, True
        for op, sent, answered, reply in self.entries:
            if op == "collect" and reply.get("finished"):
                result_in = answered
            elif op == "start":
                if reply.get("state") == "queued":
                    shares.append(0.0)
                elif result_in is not None and not first:
                    shares.append((sent - result_in) * 1e3)
                first, result_in = False, None
        return shares

    def queued_starts(self) -> int:
        return sum(1 for op, _, _, reply in self.entries if op == "start" and reply.get("state") == "queued")


def run_matrix(store: Store, host: Host, options: dict[str, Any],
               models: list[ModelRow]) -> tuple[float, list[dict[str, Any]]]:
    """One `farm run` of ``models`` on ``host``, one thread each, through Runner.run as the CLI drives it.

    Returns its wall seconds and its stored results.
    """
    spec = MatrixSpec(name="bench-per-job", models=tuple(m.name for m in models), delegates=("cpu",),
                      threads=(1,), timing=dict(NOOP_TIMING))
    started = time.perf_counter()
    outcome = Runner(store, transport_options=options).run(spec, [host], models, "bench/ssh_farm.py")
    wall = time.perf_counter() - started
    expected = len(models)
    with store.session() as db:
        if dict(outcome.counts) != {"succeeded": expected}:
            reasons = sorted(set(db.scalars(select(JobRow.reason).where(JobRow.run_id == outcome.run_id,
                                                                        JobRow.reason.is_not(None))).all()))
            raise RuntimeError(f"the no-op run on {host.name} ended {dict(outcome.counts)}, not {expected} "
                               "succeeded: " + "; ".join(reasons[:3]))
        details = list(db.scalars(select(ResultRow.detail).join(JobRow, JobRow.id == ResultRow.job_id)
                                  .where(JobRow.run_id == outcome.run_id)).all())
    if len(details) != expected:
        raise RuntimeError(f"run {outcome.run_id} stored {len(details)} results, expected {expected}")
    return wall, details


def per_job_overheads(details: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Milliseconds each job of one lane cost beyond its benchmark, in two parts, in the order they ran.

    Idle: from the end of a job to the start of the next, both read on the host's clock inside the
    agent, so the controller's clock plays no part: result back, parse, store, bookkeeping, next job
    out. Around: the agent's own time in the job less the benchmark (model hash, power mode, the
    conditions read before and after). The last job has no successor, so its idle time is unknown.
    """
    ordered = sorted(details, key=lambda d: float(d["started_at"]))
    idle = [(float(following["started_at"]) - float(current["finished_at"])) * 1e3
            for current, following in itertools.pairwise(ordered)]
    around = [(agent_seconds(d) - benchmark_seconds(d)) * 1e3 for d in ordered]
    return idle, around


# -- the report -------------------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def walls(samples: list[Sample]) -> list[float]:
    return [sample.wall for sample in samples]


def report(found: Measurements, total_s: float) -> None:
    print()
    print(f"farm over SSH: one run on {os.cpu_count()} CPUs, shared by the controller and every simulated host")
    print(f"lab up: {found.lab_up_s:.2f} s for {max(found.check)} hosts; first check (uploads the agent "
          f"everywhere): {found.first_check_s:.2f} s")
    print()
    cpus = os.cpu_count() or 1
    print("farm inventory check vs two floors, all hosts in parallel: SSH (one handshake + `true` per host) and")
    print("agent (one handshake + `python3 -c pass`: the least any agent-based tool does). Medians. ctrl CPU: CPU")
    print("the controller process spent per host during a check (and during the agent floor). Busy: how much of")
    print("the machine's CPU was in use during the checks (controller, simulated hosts, and any other work on it);")
    print("near 100% the check waits for CPU, not for the network: on real boards each host brings its own.")
    print("host CPU: what each simulated host's sshd and everything it ran (session, Python, agent, tools) spent,")
    print("per host, during a check (and during the agent floor); CPU chk/agent: (controller + host CPU) of a check")
    print("over the agent floor's, what the wall ratio is where the machine's CPUs are the bottleneck, as here,")
    print("but unaffected by other work on the machine.")
    header = (f"{'hosts':>5}  {'SSH s':>6}  {'agent s':>7}  {'check s':>7}  {'chk/agent':>9}  {'chk/SSH':>7}  "
              f"{'CLI s':>6}  {'CLI/agent':>9}  {'ctrl CPU ms':>11}  {'floor CPU':>9}  {'host CPU':>8}  "
              f"{'floor':>5}  {'CPU chk/agent':>13}  {'busy':>5}  {'runs':>4}  {'check min-max s':>15}")
    print(header)
    print("-" * len(header))
    verdicts = []
    for size in sorted(found.check):
        floor, check = median(walls(found.floor[size])), median(walls(found.check[size]))
        agent = median(walls(found.agent_floor[size]))
        cli = median(found.check_cli[size])
        cli_text = f"{cli:6.2f}  {cli / agent:9.2f}" if found.check_cli[size] else f"{'-':>6}  {'-':>9}"
        controller = median([s.controller_cpu for s in found.check[size]]) / size * 1e3
        floor_cpu = median([s.controller_cpu for s in found.agent_floor[size]]) / size * 1e3
        hosts_cpu = median([s.hosts_cpu for s in found.check[size]]) / size * 1e3
        floor_hosts = median([s.hosts_cpu for s in found.agent_floor[size]]) / size * 1e3
        cpu_ratio = (controller + hosts_cpu) / (floor_cpu + floor_hosts) if floor_cpu + floor_hosts else float("nan")
        busy = median([s.machine_cpu / (s.wall * cpus) for s in found.check[size]])
        spread = f"{min(walls(found.check[size])):.2f}-{max(walls(found.check[size])):.2f}"
        print(f"{size:5d}  {floor:6.2f}  {agent:7.2f}  {check:7.2f}  {check / agent:9.2f}  {check / floor:7.2f}  "
              f"{cli_text}  {controller:11.1f}  {floor_cpu:9.1f}  {hosts_cpu:8.1f}  {floor_hosts:5.1f}  "
              f"{cpu_ratio:13.2f}  {busy:5.0%}  {len(found.check[size]):4d}  {spread:>15}")
        ok = check / agent <= CHECK_OVER_AGENT_FLOOR and controller <= CONTROLLER_MS_PER_HOST
        verdicts.append(f"{size} hosts {'meets' if ok else 'MISSES'} (check/agent floor {check / agent:.2f}, "
                        f"controller {controller:.1f} ms/host)")
    print(f"Goal: check <= {CHECK_OVER_AGENT_FLOOR:g} x agent floor and <= {CONTROLLER_MS_PER_HOST:g} ms controller "
          f"CPU per host: {'; '.join(verdicts)}. Load average at the end: "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}.")
    print()
    print("check: each host's agent lingers from the check before (agent/linger.py: reached through sshd's")
    print("direct-streamlocal channel, no process started) and the SSH keeper (transport/keeper.py) kept each")
    print("host's connection from the check before, as when checks come less than agent_linger (15 min) apart;")
    print("ctrl CPU counts the keeper's CPU too. Two other checks, side by side with it: agents lingering but")
    print("no connection kept (FARM_SSH_KEEPER=0: a handshake per host), and no lingering agent either")
    print("(FARM_AGENT_LINGER=0, the first check of the day: each host's Python and agent are started):")
    header = (f"{'hosts':>5}  {'which check':<22}  {'wall s':>6}  {'/agent':>6}  {'ctrl CPU ms':>11}  "
              f"{'host CPU':>8}  {'CPU /agent':>10}  {'min-max s':>11}")
    print(header)
    print("-" * len(header))
    for size in sorted(found.check):
        floor_cpu = median([s.controller_cpu for s in found.agent_floor[size]]) / size * 1e3
        floor_hosts = median([s.hosts_cpu for s in found.agent_floor[size]]) / size * 1e3
        agent = median(walls(found.agent_floor[size]))
        for label, samples in (("kept connection", found.check[size]),
                               ("no kept connection", found.check_unkept.get(size, [])),
                               ("no lingering agent", found.check_cold.get(size, []))):
            if not samples:
                continue
            wall = median(walls(samples))
            controller = median([s.controller_cpu for s in samples]) / size * 1e3
            hosts_cpu = median([s.hosts_cpu for s in samples]) / size * 1e3
            spread = f"{min(walls(samples)):.2f}-{max(walls(samples)):.2f}"
            print(f"{size:5d}  {label:<22}  {wall:6.2f}  {wall / agent:6.2f}  {controller:11.1f}  {hosts_cpu:8.1f}  "
                  f"{(controller + hosts_cpu) / (floor_cpu + floor_hosts):10.2f}  {spread:>11}")
    print()
    for size, figures in sorted(found.keeper.items()):
        print(f"SSH keeper after the {size}-host checks: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print()
    print(f"Per-job overhead on an open connection to {found.job_host}, each job's benchmark (model")
    print(f"load, warm-up, timed runs) taken out. Opening the session once (handshake, deploy check, agent start): "
          f"{found.session_open_s * 1e3:.0f} ms.")
    rows = found.per_job
    floor_ms = median(rows.get(PING, []))
    header = f"{'what':<42}  {'median ms':>9}  {'p90 ms':>7}  {'vs ping':>7}  {'n':>4}"
    print(header)
    print("-" * len(header))
    for name, values in rows.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(f"{name:<42}  {median(values):9.2f}  {p90:7.2f}  {median(values) / floor_ms:7.2f}  {len(values):4d}")
    if found.agent_parts:
        print("The agent's own work around the benchmark, by part (ms per job, medians; result.agent_work): "
              + ", ".join(f"{part.removesuffix('_ms')} {median(values):.2f}"
                          for part, values in found.agent_parts.items()) + ". On a simulated board the "
              "conditions parts are mostly the stand-in tools (vcgencmd, nvpmodel): native fronts like a real "
              "board's binaries where the lab had a C compiler, else a Python start each.")
    lane = median(rows.get(RUN_ROW, []))
    print(f"(farm run rows: {len(found.run_walls)} runs of {found.run_jobs} jobs on that host, read on the host's "
          f"clock; whole runs took {median(found.run_walls):.2f} s. Host idle between jobs: result written and "
          f"fsynced, the next job's process forked and running. {found.queued_starts} of "
          f"{max(0, found.run_jobs - 1) * len(found.run_walls)} next jobs were queued on the agent while the "
          f"one before ran and started by it on its own (controller's share 0); for the others the share runs "
          f"from the result's answer to the next start going out, on the controller's clock. Controller CPU per "
          f"job: all its work, done while jobs run.)")
    verdict = "meets" if lane <= TARGET_MS_PER_JOB else "MISSES"
    share = median(rows.get(CONTROLLER_ROW, []))
    print(f"\nPer-job overhead in farm run (host idle between jobs): {lane:.2f} ms, which {verdict} the target of "
          f"{TARGET_MS_PER_JOB:g} ms (round trip on the agent channel: {floor_ms:.2f} ms); the controller's own "
          f"share of it: {share:.2f} ms. Whole benchmark: {total_s:.0f} s.")


if __name__ == "__main__":
    sys.exit(main())
