"""A simulated lab whose hosts live in network namespaces, so their links can be cut.

Each host's sshd runs in its own ``ip netns`` joined to this machine by a veth
pair (10.A.i.1 here, 10.A.i.2 in the namespace). The kernel here has no netem,
so a link is cut with ``ip link set down`` on the namespace's end: packets
vanish without a reset, as when a board's cable is pulled. Everything else
(boards, device roots, keys, inventory) is :class:`~farm_lab.lab.Lab`'s.

    lab = NetnsLab(directory)
    inventory = lab.up(3, port=22)
    lab.cut_link("lab-01-jetson-nano"); lab.restore_link("lab-01-jetson-nano")
    lab.kill_sshd(name); lab.start_sshd(name)
    lab.kill_agents(name)          # SIGKILL the agent and its detached jobs on that host
    lab.down(purge=True)           # also deletes the namespaces (and atexit does, in the process
                                   # that brought them up, should a test die)

Needs root (network namespaces); nothing outside the namespaces and their veth pairs is touched.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import ipaddress
import os
import signal
import subprocess
import time
from pathlib import Path

from agent.spool import JOB_PROCESS_NAME

from .account import LabError
from .lab import Lab, LabHost, plan_hosts
from .sshd import Sshd

NETNS_DIR = Path("/run/netns")
# Second octets the labs choose from; a lab takes one not routed here already.
OCTETS = range(160, 224)
MAX_HOSTS = 250


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return done


def require_netns() -> None:
    if os.geteuid() != 0:
        raise LabError("a lab in network namespaces needs root (ip netns add)")
    try:
        ip("netns", "list")
    except (OSError, LabError) as exc:
        raise LabError(f"network namespaces are not available here (iproute2 'ip netns'): {exc}") from None


@dataclasses.dataclass(frozen=True)
class Link:
    """One host's namespace and veth pair."""

    netns: str
    outside: str  # the veth end on this machine
    inside: str  # the veth end in the namespace
    outside_address: str
    inside_address: str


class NetnsLab(Lab):
    def __init__(self, directory: Path | None = None, *, cache: Path | None = None) -> None:
        super().__init__(directory, cache=cache)
        self.tag = hashlib.sha256(self.id.encode()).hexdigest()[:6]
        self._octet: int | None = None
        self._cleanup_registered = False

    # -- addresses and names --------------------------------------------------------------------------------

    def link(self, host: LabHost | str, index: int | None = None) -> Link:
        if index is None:
            name = host if isinstance(host, str) else host.name
            index = next(i for i, h in enumerate(self.hosts()) if h.name == name)
        octet = self._choose_octet()
        # Interface names are at most 15 characters: "fo" + 6 hex + index stays well below.
        return Link(netns=f"farm-{self.tag}-{index + 1}", outside=f"fo{self.tag}{index + 1}",
                    inside=f"fi{self.tag}{index + 1}", outside_address=f"10.{octet}.{index + 1}.1",
                    inside_address=f"10.{octet}.{index + 1}.2")

    def _choose_octet(self) -> int:
        if self._octet is not None:
            return self._octet
        for host in self.hosts():  # a lab brought up before keeps its addresses
            address = ipaddress.IPv4Address(host.address)
            if address.is_private and str(address).startswith("10."):
                self._octet = int(str(address).split(".")[1])
                return self._octet
        routed = ip("-4", "route", "show", "table", "all", check=False).stdout
        preferred = OCTETS.start + int(self.tag, 16) % len(OCTETS)
        for octet in [preferred, *OCTETS]:
            if f"10.{octet}." not in routed:
                self._octet = octet
                return octet
        raise LabError("no free 10.X.0.0/16 for the lab's links")

    def namespaces(self) -> list[str]:
        prefix = f"farm-{self.tag}-"
        listed = ip("netns", "list", check=False).stdout.split("\n")
        return sorted(line.split()[0] for line in listed if line.startswith(prefix))

    # -- Lab hooks -----------------------------------------------------------------------------------------

    def _plan(self, count: int, boards: list[str] | None, port: int) -> list[LabHost]:
        require_netns()
        if not self._cleanup_registered:
            # Only the process that brings the lab up removes it at exit; one that merely looks at
            # a lab (status, faults from another process) must not tear it down.
            atexit.register(self._remove_namespaces)
            self._cleanup_registered = True
        if count > MAX_HOSTS:
            raise LabError(f"a namespaced lab has at most {MAX_HOSTS} hosts")
        planned = []
        for index, host in enumerate(plan_hosts(count, boards, port)):
            link = self.link(host, index)
            self._make_link(link)
            planned.append(dataclasses.replace(host, address=link.inside_address))
        return planned

    def _sshd(self, host: LabHost, user: str, public: Path) -> Sshd:
        return dataclasses.replace(super()._sshd(host, user, public),
                                   launcher=("ip", "netns", "exec", self.link(host).netns))

    def _make_link(self, link: Link) -> None:
        if (NETNS_DIR / link.netns).exists():
            self.restore_link_of(link)
            return
        ip("netns", "add", link.netns)
        ip("link", "add", link.outside, "type", "veth", "peer", "name", link.inside, "netns", link.netns)
        ip("addr", "add", f"{link.outside_address}/24", "dev", link.outside)
        ip("-n", link.netns, "addr", "add", f"{link.inside_address}/24", "dev", link.inside)
        ip("link", "set", link.outside, "up")
        ip("-n", link.netns, "link", "set", link.inside, "up")
        ip("-n", link.netns, "link", "set", "lo", "up")

    def down(self, *, purge: bool = False) -> list[str]:
        stopped = super().down(purge=False)
        self._remove_namespaces()
        if purge:
            super().down(purge=True)
        return stopped

    def _remove_namespaces(self) -> None:
        """Delete this lab's namespaces; deleting one removes its veth pair. Safe to call twice."""
        for netns in self.namespaces():
            for pid in self.pids_in(netns):
                _kill(pid, signal.SIGKILL)
            ip("netns", "del", netns, check=False)

    # -- faults ---------------------------------------------------------------------------------------------

    def cut_link(self, name: str) -> None:
        """Packets to and from the host vanish (no reset): a pulled cable."""
        link = self.link(name)
        ip("-n", link.netns, "link", "set", link.inside, "down")

    def restore_link(self, name: str) -> None:
        self.restore_link_of(self.link(name))

    @staticmethod
    def restore_link_of(link: Link) -> None:
        ip("-n", link.netns, "link", "set", link.inside, "up")

    def link_is_up(self, name: str) -> bool:
        link = self.link(name)
        shown = ip("-n", link.netns, "-o", "link", "show", link.inside).stdout
        return "UP" in shown.partition("<")[2].partition(">")[0].split(",")

    def sshd(self, name: str) -> Sshd:
        return next(s for s in self._saved_sshds() if s.name == name)

    def kill_sshd(self, name: str, *, sessions: bool = True) -> bool:
        """SIGKILL the host's sshd; with ``sessions`` its sessions (and the agents they serve) too.

        Detached jobs (their own session, re-parented to init) survive either way, as on a real board.
        """
        sshd = self.sshd(name)
        pid = sshd.pid()
        if sessions:
            # Every process of the namespace but the detached jobs: sessions of an sshd killed
            # earlier are no descendants of today's listener, so Sshd.stop() would miss them.
            victims = [p for p in self.pids_in(self.link(name).netns) if _comm(p) != JOB_PROCESS_NAME]
        else:
            victims = [pid] if pid is not None else []
        for victim in victims:
            _kill(victim, signal.SIGKILL)
        _wait_gone(victims)  # else a restart right away finds the port still bound
        sshd.pid_path.unlink(missing_ok=True)
        return pid is not None

    def start_sshd(self, name: str) -> int:
        sshd = self.sshd(name)
        return sshd.pid() or sshd.start()

    def pids_in(self, netns: str) -> list[int]:
        """Processes whose network namespace is ``netns`` (sshd, its sessions, agents, detached jobs)."""
        try:
            wanted = os.stat(NETNS_DIR / netns).st_ino
        except OSError:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if os.stat(entry / "ns" / "net").st_ino == wanted:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def agent_pids(self, name: str, *, jobs: bool = True) -> list[int]:
        """The agent processes on a host: ``serve`` sessions and (``jobs``) detached ``farm-job`` processes."""
        out = []
        for pid in self.pids_in(self.link(name).netns):
            try:
                words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if not jobs and _comm(pid) == JOB_PROCESS_NAME:
                continue
            if any("/agent-" in w and w.endswith(".pyz") for w in words) or "agent" in words[1:3]:
                out.append(pid)
        return out

    def kill_agents(self, name: str, *, jobs: bool = True) -> list[int]:
        """SIGKILL the host's agent processes (with ``jobs``, its running benchmarks too): a crashed agent."""
        pids = self.agent_pids(name, jobs=jobs)
        for pid in pids:
            _kill(pid, signal.SIGKILL)
        _wait_gone(pids)
        return pids


def _kill(pid: int, which: signal.Signals) -> None:
    try:
        os.kill(pid, which)
    except (ProcessLookupError, PermissionError):
        pass


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_gone(pids: list[int], seconds: float = 5.0) -> None:
    """Until every pid has exited (a zombie counts: it holds no port and runs nothing)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                alive.append(pid)
        if not alive:
            return
        time.sleep(0.02)
