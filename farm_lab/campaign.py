"""The fault campaign: a matrix run again and again on the namespaced lab while faults land at random.

Each *round* is one ``farm run`` (the real command, a child process) of the same
matrix. A fault-free round first gives the reference: its cells and counts. While
a faulted round runs, an injector picks faults (seeded) and moments: a link cut
and later restored, an sshd killed and restarted, a host's agents SIGKILLed, the
controller SIGKILLed and ``farm run --resume`` started, the scratch database's
PostgreSQL backends terminated and new connections refused for seconds (a restart
as the controller sees it; the system PostgreSQL is never stopped). After
each round: every job terminal, no result stored twice or on the wrong job
(``orchestrator.integrity.check_run``), nothing left unacknowledged in a spool that
the store lacks, every board in its original power mode, and the same cells with
the same statuses as the reference.

Measured on the way: faults by kind, retries (from ``farm run``'s own summary),
time to detect a dead link (from the cut until the controller drops the TCP
connection it had, watched in /proc/net/tcp) and time to resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from typing_extensions import Self

from .netns import NetnsLab

REPO = Path(__file__).resolve().parent.parent
FAULT_KINDS = ("link", "sshd", "agent", "controller", "database")
BOARDS = ["jetson-nano", "rpi4", "devboard"]
# Small, quick cells; power modes "all" so every job sets (and must restore) a mode.
MATRIX = {"matrices": {"campaign": {
    "models": ["all"], "delegates": ["cpu"], "threads": [1, 2], "power_modes": "all",
    "timing": {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.3,
               "max_seconds": 20}}}}
RUN_LINE = re.compile(r"Run (\d+) (started|resumed)")
FAULTS_LINE = re.compile(r"Faults survived: (\d+) job retries, (\d+) reconnects, (\d+) results collected after "
                         r"a lost link or controller, (\d+) database retries, (\d+) writes journaled")
# Files that hold a simulated board's power mode (nvpmodel's status, cpufreq governors, jetson_clocks).
POWER_FILES = ("status", "scaling_governor", "scaling_min_freq", "scaling_max_freq")


@dataclass
class Fault:
    kind: str
    host: str | None
    at: float  # seconds after the round's run started
    hold: float = 0.0  # link cut / sshd down for this long
    sessions: bool = True  # sshd: its sessions die too
    injected: bool = False
    note: str = ""


@dataclass
class CampaignReport:
    seed: int
    faults: list[Fault] = field(default_factory=list)
    rounds: int = 0
    retries: Counter = field(default_factory=Counter)  # job retries, reconnects, late, db retries, journaled
    detect_seconds: list[float] = field(default_factory=list)
    undetected_cuts: int = 0  # cuts restored before the controller noticed (TCP recovered by itself)
    resume_seconds: list[float] = field(default_factory=list)  # --resume start to "Run N resumed"
    resume_total_seconds: list[float] = field(default_factory=list)  # --resume start to its exit
    problems: list[str] = field(default_factory=list)
    exit_codes: Counter = field(default_factory=Counter)
    reference: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def injected(self) -> Counter:
        return Counter(f.kind for f in self.faults if f.injected)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"n": len(values), "median": round(statistics.median(values), 2),
                    "min": round(min(values), 2), "max": round(max(values), 2)}

        return {"seed": self.seed, "rounds": self.rounds, "faults_injected": dict(self.injected),
                "faults_total": sum(self.injected.values()), "retries": dict(self.retries),
                "dead_link_detect_s": stats(self.detect_seconds), "cuts_recovered_before_detection": self.undetected_cuts,
                "resume_to_resumed_s": stats(self.resume_seconds), "resume_to_done_s": stats(self.resume_total_seconds),
                "exit_codes": dict(self.exit_codes), "reference": self.reference,
                "problems": self.problems, "seconds": round(self.seconds, 1)}


class Controller:
    """One ``farm run`` (or ``--resume``) child process, its output read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.started = time.monotonic()
        self.run_id: int | None = None
        self.run_seen = threading.Event()
        self.run_seen_at: float | None = None
        self.lines: list[str] = []
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("a") as log:
            for line in self.process.stdout:
                self.lines.append(line)
                log.write(line)
                match = RUN_LINE.search(line)
                if match and self.run_id is None:
                    self.run_id = int(match.group(1))
                    self.run_seen_at = time.monotonic()
                    self.run_seen.set()

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._reader.join(timeout=5)

    def lost_database(self) -> str | None:
        """The controller's 'lost the database' error, if it gave up on one."""
        text = " ".join("".join(self.lines).split())
        start = text.find("error: lost the database")
        return text[start:] if start >= 0 else None

    def faults_line(self) -> tuple[int, ...] | None:
        for line in self.lines:
            match = FAULTS_LINE.search(" ".join(line.split()))
            if match:
                return tuple(int(g) for g in match.groups())
        return None


class Campaign:
    def __init__(self, workdir: Path, *, faults: int, seed: int, hosts: int = 3,
                 server_url: str = "postgresql+psycopg://root@127.0.0.1:5432/test",
                 round_faults: int = 4, say: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.total_faults = faults
        self.random = random.Random(seed)
        self.report = CampaignReport(seed=seed)
        self.hosts = hosts
        self.server_url = server_url
        self.round_faults = round_faults
        self.say = say
        self.lab = NetnsLab(workdir / "lab")
        self.db_name = f"farm_campaign_{uuid.uuid4().hex[:10]}"
        self.db_url = server_url.rsplit("/", 1)[0] + "/" + self.db_name
        self.matrix_file = workdir / "matrices.yaml"
        self.inventory: Path | None = None
        self.host_names: list[str] = []
        self.env = {**os.environ, "COLUMNS": "250", "FARM_DATA_DIR": str(workdir / "data"),
                    "FARM_RETRIES": "8", "FARM_RETRY_BACKOFF": "0.2", "FARM_RETRY_MAX_BACKOFF": "2",
                    "FARM_DB_RETRY_SECONDS": "60", "PYTHONUNBUFFERED": "1"}
        self.env.pop("FARM_DB_URL", None)
        self._round_log = workdir / "controller.log"
        self._bag: list[str] = []

    # -- setting up and tearing down ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.matrix_file.write_text(yaml.safe_dump(MATRIX))
        boards = (BOARDS * self.hosts)[:self.hosts]
        self.inventory = self.lab.up(self.hosts, boards=boards, port=22, say=lambda _: None)
        self.host_names = [h.name for h in self.lab.hosts()]
        try:
            self._setup_database()
        except BaseException:
            self.__exit__()  # no half-built campaign left behind: the lab's namespaces and sshds go
            raise
        return self

    def _setup_database(self) -> None:
        self._admin(f'CREATE DATABASE "{self.db_name}"')
        # The registry functions `farm models build` calls, in this process: the command's own start (a
        # fresh interpreter's imports, about 2 s each on a shared 2-core machine) is not what the campaign
        # tests, and test_cli_help / test_nightly_run run the command itself. The model files go where the
        # rounds' controllers (FARM_DATA_DIR below) would have put them.
        from orchestrator.models import registry
        from orchestrator.store import open_store

        with _data_dir(self.env["FARM_DATA_DIR"]):
            store = open_store(self.db_url)
            try:
                for family, layers in (("dense_stack", 10), ("conv_stack", 1)):
                    registry.build(store, family, [layers])
            finally:
                store.close()

    def __exit__(self, *exc: object) -> None:
        try:
            self.lab.down(purge=True)
        finally:
            with contextlib.suppress(Exception):  # the server may be the very thing that failed
                self._admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def _admin(self, statement: str) -> list[Any]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                result = connection.execute(text(statement))
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    # -- one round ------------------------------------------------------------------------------------------

    def _controller(self, *extra: str) -> Controller:
        args = ["run", *extra, "-i", str(self.inventory), "--known-hosts", str(self.lab.known_hosts),
                "--db", self.db_url]
        if not extra:
            args += ["-m", "campaign", "--matrix-file", str(self.matrix_file)]
        return Controller(args, self.env, self._round_log)

    def run(self) -> CampaignReport:
        started = time.monotonic()
        self.say(f"campaign: seed {self.report.seed}, {self.total_faults} faults, lab of {len(self.host_names)} "
                 f"hosts in network namespaces, database {self.db_name}")
        reference = self._round([])
        if reference is None or self.report.problems:  # no fault-free run to compare with
            tail = "".join(self._round_log.read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(f"the fault-free round failed: {self.report.problems}\n{tail}")
        self.report.reference = {"counts": dict(reference["counts"]), "cells": len(reference["cells"]),
                                 "seconds": round(reference["seconds"], 1)}
        self._reference = reference
        self.say(f"reference round: {dict(reference['counts'])} in {reference['seconds']:.1f} s")
        remaining = self.total_faults
        while remaining > 0:
            count = min(remaining, self.round_faults)
            faults = self._plan_faults(count, reference["seconds"])
            outcome = self._round(faults)
            injected = sum(1 for f in faults if f.injected)
            self.report.faults.extend(f for f in faults if f.injected)
            remaining -= injected
            kinds = ", ".join(f"{f.kind}@{f.at:.1f}s" + (f" ({f.note})" if f.note else "")
                              for f in faults if f.injected)
            self.say(f"round {self.report.rounds}: {injected} fault(s) [{kinds}]"
                     + (f"; {outcome['counts']}" if outcome else ""))
        self.report.seconds = time.monotonic() - started
        return self.report

    def _plan_faults(self, count: int, reference_seconds: float) -> list[Fault]:
        # Moments spread over the run as long as a fault-free one takes; faults come one after another.
        span = max(3.0, reference_seconds * 0.8)
        moments = sorted(self.random.uniform(0.3, span) for _ in range(count))
        faults = []
        for moment in moments:
            if not self._bag:  # every kind once per len(FAULT_KINDS) faults, in a random order
                self._bag = list(FAULT_KINDS)
                self.random.shuffle(self._bag)
            kind = self._bag.pop()
            host = self.random.choice(self.host_names) if kind in ("link", "sshd", "agent") else None
            hold = {"link": self.random.choice([self.random.uniform(0.5, 3.0), self.random.uniform(8.0, 20.0)]),
                    "sshd": self.random.uniform(0.5, 4.0), "database": self.random.uniform(0.5, 8.0)}.get(kind, 0.0)
            faults.append(Fault(kind, host, moment, hold, sessions=self.random.random() < 0.7))
        return faults

    def _round(self, faults: list[Fault]) -> dict[str, Any] | None:
        self.report.rounds += 1 if faults else 0
        before = self._power_modes()
        round_started = time.monotonic()
        controller = self._controller()
        if not controller.run_seen.wait(120):
            controller.kill()
            self.report.problems.append(f"round {self.report.rounds}: farm run printed no 'Run N started'")
            return None
        run_id = controller.run_id
        assert run_id is not None
        holder = {"controller": controller}
        injector = threading.Thread(target=self._inject, args=(faults, holder, controller.run_seen_at), daemon=True)
        injector.start()
        injector.join()
        controller = holder["controller"]
        code = controller.wait(600)
        where = f"round {self.report.rounds} (run {run_id})"
        for _ in range(3):
            # Incomplete (exit 3) or gave up on the database: resume, as the README and the message say.
            lost = controller.lost_database()
            if code is None or (code != 3 and lost is None):
                break
            self._count(controller, code)
            if lost is not None:
                self.report.problems.append(f"{where}: farm run exited {code} after a database outage of at most "
                                            f"8 s instead of retrying: {lost[:160]}")
            self._heal()
            controller = self._resume(run_id)
            code = controller.wait(600)
        if code is None:
            controller.kill()
            self.report.problems.append(f"{where}: farm run did not finish in 600 s")
        else:
            self._count(controller, code)
        self._heal()
        return self._check(run_id, before, time.monotonic() - round_started, bool(faults))

    def _count(self, controller: Controller, code: int) -> None:
        self.report.exit_codes[code] += 1
        for name, number in zip(("job retries", "reconnects", "collected late", "database retries", "journaled"),
                                controller.faults_line() or (), strict=False):
            self.report.retries[name] += number

    def _resume(self, run_id: int) -> Controller:
        controller = self._controller("--resume", str(run_id))
        if controller.run_seen.wait(120) and controller.run_seen_at is not None:
            self.report.resume_seconds.append(controller.run_seen_at - controller.started)
        return controller

    # -- faults ---------------------------------------------------------------------------------------------

    def _inject(self, faults: list[Fault], holder: dict[str, Controller], zero: float | None) -> None:
        zero = zero or time.monotonic()
        for fault in faults:
            controller = holder["controller"]
            delay = zero + fault.at - time.monotonic()
            if delay > 0 and controller.wait(delay) is not None:
                return  # the run ended first: the remaining faults go to the next round
            if controller.process.poll() is not None:
                return
            fault.injected = True
            try:
                self._apply(fault, holder)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be applied is reported, not fatal
                fault.note = f"not applied: {exc}"[:120]

    def _apply(self, fault: Fault, holder: dict[str, Controller]) -> None:
        lab = self.lab
        if fault.kind == "link":
            assert fault.host
            pid = holder["controller"].process.pid
            address = lab.link(fault.host).inside_address
            open_ports = tcp_connections(pid, address)
            lab.cut_link(fault.host)
            cut_at = time.monotonic()
            detected = None
            while time.monotonic() - cut_at < fault.hold:
                if open_ports and not (open_ports & tcp_connections(pid, address)) and detected is None:
                    detected = time.monotonic() - cut_at
                time.sleep(0.05)
            lab.restore_link(fault.host)
            if detected is not None:
                self.report.detect_seconds.append(detected)
                fault.note = f"cut {fault.hold:.1f}s, detected after {detected:.1f}s"
            else:
                self.report.undetected_cuts += bool(open_ports)
                fault.note = f"cut {fault.hold:.1f}s" + ("" if open_ports else ", no open connection")
        elif fault.kind == "sshd":
            assert fault.host
            lab.kill_sshd(fault.host, sessions=fault.sessions)
            time.sleep(fault.hold)
            lab.start_sshd(fault.host)
            fault.note = f"{'with' if fault.sessions else 'without'} sessions, down {fault.hold:.1f}s"
        elif fault.kind == "agent":
            assert fault.host
            fault.note = f"{len(lab.kill_agents(fault.host))} process(es)"
        elif fault.kind == "controller":
            controller = holder["controller"]
            run_id = controller.run_id
            controller.kill()
            assert run_id is not None
            started = time.monotonic()
            resumed = self._resume(run_id)
            holder["controller"] = resumed
            fault.note = f"resumed run {run_id}"
            resumed.run_seen.wait(120)
            threading.Thread(target=self._time_resume, args=(resumed, started), daemon=True).start()
        elif fault.kind == "database":
            # A database restart as the controller sees it: its connections die and new ones are
            # refused for a while. Only the scratch database; the server itself keeps running.
            self._admin(f'ALTER DATABASE "{self.db_name}" ALLOW_CONNECTIONS false')
            try:
                rows = self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   f"WHERE datname = '{self.db_name}' AND pid <> pg_backend_pid()")
                time.sleep(fault.hold)
            finally:
                self._admin(f'ALTER DATABASE "{self.db_name}" ALLOW_CONNECTIONS true')
            fault.note = f"{len(rows)} backend(s) terminated, refused for {fault.hold:.1f}s"

    def _time_resume(self, controller: Controller, started: float) -> None:
        if controller.wait(600) is not None:
            self.report.resume_total_seconds.append(time.monotonic() - started)

    def _heal(self) -> None:
        """Between rounds every link is up and every sshd runs, whatever the last fault left."""
        self._admin(f'ALTER DATABASE "{self.db_name}" ALLOW_CONNECTIONS true')
        for name in self.host_names:
            if not self.lab.link_is_up(name):
                self.lab.restore_link(name)
            self.lab.start_sshd(name)

    # -- checks ---------------------------------------------------------------------------------------------

    def _power_modes(self) -> dict[str, str]:
        state = self.lab.state() or {}
        devices = Path(state.get("public_dir", "/nonexistent")) / "devices"
        modes = {}
        for path in sorted(devices.rglob("*")):
            if path.name in POWER_FILES and ("nvpmodel" in str(path) or "cpufreq" in str(path)) and path.is_file():
                try:
                    modes[str(path.relative_to(devices))] = path.read_text().strip()
                except OSError:
                    continue
        return modes

    def _spool_keys(self) -> set[str]:
        """Results finished on a device and not (yet) acknowledged: must all be stored."""
        state = self.lab.state() or {}
        keys = set()
        for host in self.lab.hosts():
            spool = Path(state.get("home", "/nonexistent")) / self.lab.workdir(host) / "spool"
            keys.update(p.name[:-len(".result.json")] for p in spool.glob("*.result.json"))
        return keys

    def _check(self, run_id: int, before: dict[str, str], seconds: float, faulted: bool) -> dict[str, Any]:
        from sqlalchemy import select

        from orchestrator.integrity import check_run
        from orchestrator.store import open_store
        from orchestrator.store.schema import JobRow, ResultRow

        where = f"round {self.report.rounds} (run {run_id})" if faulted else f"reference run {run_id}"
        store = open_store(self.db_url)
        try:
            integrity = check_run(store, run_id)
            with store.session() as session:
                stored_keys = set(session.scalars(select(ResultRow.spool_key).join(JobRow)
                                                  .where(JobRow.run_id == run_id)))
                job_ids = {doc.get("job_id") for doc in session.scalars(
                    select(JobRow.job_doc).where(JobRow.run_id == run_id)) if doc}
        finally:
            store.close()
        for name, ids in integrity.problems().items():
            self.report.problems.append(f"{where}: {name}: {ids[:10]}")
        finished = {key for key in self._spool_keys() if key.rsplit(".", 1)[0] in job_ids}
        # A finished result still in a spool is fine when it is stored (ack lost) or superseded by
        # a stored later attempt; it must not be a succeeded benchmark the store has no trace of.
        for key in sorted(finished - stored_keys):
            job = key.rsplit(".", 1)[0]
            if not any(k and k.rsplit(".", 1)[0] == job for k in stored_keys):
                self.report.problems.append(f"{where}: result {key} finished on a device but nothing of its "
                                            f"job is stored")
        after = self._power_modes()
        changed = {path: (before.get(path), now) for path, now in after.items() if before.get(path) != now}
        if changed:
            self.report.problems.append(f"{where}: boards not in their original power mode: {changed}")
        outcome = {"counts": Counter(integrity.by_status), "cells": dict(integrity.cells), "seconds": seconds}
        if faulted:
            reference = self._reference
            if outcome["counts"] != reference["counts"]:
                self.report.problems.append(f"{where}: counts {dict(outcome['counts'])} differ from the "
                                            f"fault-free run's {dict(reference['counts'])}")
            differing = {cell: (reference["cells"].get(cell), status) for cell, status in outcome["cells"].items()
                         if reference["cells"].get(cell) != status}
            missing = set(reference["cells"]) - set(outcome["cells"])
            if differing or missing:
                self.report.problems.append(f"{where}: cells differ from the fault-free run: "
                                            f"{dict(list(differing.items())[:5])}, missing {sorted(missing)[:5]}")
        return outcome


@contextlib.contextmanager
def _data_dir(folder: str) -> Iterator[None]:
    """FARM_DATA_DIR set to ``folder`` for a block run before the campaign starts any thread or child."""
    saved = os.environ.get("FARM_DATA_DIR")
    os.environ["FARM_DATA_DIR"] = folder
    try:
        yield
    finally:
        if saved is None:
            del os.environ["FARM_DATA_DIR"]
        else:
            os.environ["FARM_DATA_DIR"] = saved


def tcp_connections(pid: int, address: str, port: int = 22) -> set[int]:
    """Local ports of ``pid``'s established TCP connections to ``address:port`` (IPv4)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    octets = address.split(".")
    wanted = "".join(f"{int(o):02X}" for o in reversed(octets)) + f":{port:04X}"
    ports = set()
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return set()
    for line in lines:
        fields = line.split()
        if fields[2] == wanted and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def main_json(report: CampaignReport) -> str:
    return json.dumps(report.summary(), indent=2, sort_keys=True)
