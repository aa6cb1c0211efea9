"""A simulated lab: N real sshd hosts on loopback addresses, each posing as one board.

A lab lives in a directory private to whoever runs it (keys, sshd configs,
pid files, the inventory, known_hosts). What the login user must read (its
authorized_keys, the device roots) lives in a *public* directory: under the
``farmlab`` home when run as root, else inside the lab directory. Every host
shares that one login home, so each gets its own workdir in it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from . import board_hardware, standin_libedgetpu, standin_native
from .account import Account, LabError, lab_account
from .boards import BOARDS, DEFAULT_BOARDS
from .device_roots import DeviceRoots
from .lingering import stop_lingering_agents
from .parallel import each_in_order
from .pythons import PythonEnv, default_cache_dir, file_lock, prepare
from .sshd import Sshd, generate_key, require_openssh

STATE_VERSION = 1
FIRST_ADDRESS = ipaddress.IPv4Address("127.0.0.2")
LAST_ADDRESS = ipaddress.IPv4Address("127.255.255.254")
# Root may take port 22 as real boards have it; anyone else gets an unprivileged port.
ROOT_PORT, USER_PORT = 22, 2222
# The lab key gets a shell, SFTP and TCP forwarding (so a lab host can serve as a ProxyJump
# gateway, as a lab's bastion does); no agent or X11 forwarding, no ~/.ssh/rc.
KEY_OPTIONS = "restrict,pty,port-forwarding"


def default_lab_dir() -> Path:
    # The same data dir as the results database (orchestrator.store.db.data_dir), without importing SQLAlchemy.
    import platformdirs

    return Path(os.environ.get("FARM_DATA_DIR") or platformdirs.user_data_dir("farm")) / "lab"


def lab_known_hosts(lab_dir: Path | None = None) -> Path:
    """The known_hosts file holding every host key of the lab in ``lab_dir``: give it to SshTransport."""
    return Lab(lab_dir).known_hosts


def lab_inventory(lab_dir: Path | None = None) -> Path:
    return Lab(lab_dir).inventory_path


@dataclass(frozen=True)
class LabHost:
    name: str
    board: str
    address: str
    port: int
    python: str = ""


@dataclass(frozen=True)
class HostStatus:
    host: LabHost
    pid: int | None
    listening: bool

    @property
    def up(self) -> bool:
        return self.pid is not None and self.listening


def plan_hosts(count: int, boards: list[str] | None, port: int) -> list[LabHost]:
    """Hosts 1..count, boards assigned round-robin; the same arguments always give the same lab."""
    order = list(boards or DEFAULT_BOARDS)
    unknown = [b for b in order if b not in BOARDS]
    if unknown:
        raise LabError(f"unknown board '{unknown[0]}': the lab simulates {', '.join(BOARDS)}.")
    if count < 1:
        raise LabError("a lab needs at least one host (--hosts 1 or more).")
    if int(FIRST_ADDRESS) + count - 1 > int(LAST_ADDRESS):
        raise LabError(f"a lab of {count} hosts does not fit in 127.0.0.0/8.")
    hosts = []
    for index in range(count):
        board = order[index % len(order)]
        # '+' (rpi3b+) is not allowed in inventory host names.
        name = f"lab-{index + 1:02d}-{board.replace('+', 'plus')}"
        hosts.append(LabHost(name, board, str(FIRST_ADDRESS + index), port))
    return hosts


class Lab:
    def __init__(self, directory: Path | None = None, *, cache: Path | None = None) -> None:
        self.dir = Path(directory or default_lab_dir()).expanduser().absolute()
        self.cache = cache
        self._libedgetpu: Path | None = None  # the built stand-in, once `up` has built it
        # Names this lab's public files and workdirs apart from other labs' in the shared login home.
        self.id = "lab-" + hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:10]

    # -- where things are -----------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def client_key(self) -> Path:
        return self.dir / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yaml"

    @property
    def ssh_config_path(self) -> Path:
        return self.dir / "ssh_config"

    def public_dir(self, account: Account) -> Path:
        return self.dir / "public" if account.is_self else account.home / "labs" / self.id

    def workdir(self, host: LabHost) -> str:
        return f".cache/farm-lab/{self.id}/{host.name}"

    def state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("version") == STATE_VERSION else None

    def hosts(self) -> list[LabHost]:
        state = self.state() or {}
        return [LabHost(**entry) for entry in state.get("hosts", [])]

    def _sshd(self, host: LabHost, user: str, public: Path) -> Sshd:
        return Sshd(host.name, host.address, host.port, self.dir / "hosts" / host.name,
                    public / "authorized_keys", user)

    def _saved_sshds(self) -> list[Sshd]:
        state = self.state()
        if state is None:
            return []
        public = Path(state["public_dir"])
        return [self._sshd(host, state["user"], public) for host in self.hosts()]

    # -- commands -------------------------------------------------------------------------------------------

    def up(self, count: int, boards: list[str] | None = None, port: int | None = None,
           say: Callable[[str], None] = print) -> Path:
        """Make the lab exactly ``count`` hosts, all running; returns the inventory's path."""
        require_openssh()
        account = lab_account()
        port = port or (ROOT_PORT if os.geteuid() == 0 else USER_PORT)
        if port < 1024 and os.geteuid() != 0:
            raise LabError(f"port {port} needs root; run as root, or choose --port {USER_PORT}.")
        planned = self._plan(count, boards, port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)  # it holds the lab's private keys
        with file_lock(self.dir / ".lock"):
            planned = self._with_pythons(planned, account, say)
            self._libedgetpu = self._build_libedgetpu(planned, account, say)
            public = self._publish_client_key(account)
            board_hardware.publish_tools(public, self._build_native_tools(account, say))
            wanted = {h.name for h in planned}
            for old in self._saved_sshds():
                if old.name not in wanted and old.stop():
                    say(f"{old.name}: stopped (no longer in the lab)")
            # Saved before any sshd starts, so that `down` finds every one of them even if a later one fails.
            self.state_path.write_text(json.dumps({
                "version": STATE_VERSION, "id": self.id, "user": account.name, "home": str(account.home),
                "public_dir": str(public), "hosts": [asdict(h) for h in planned]}, indent=2) + "\n")
            host_keys = self._start_all(planned, account, public, say)
            self._write_known_hosts(planned, host_keys)
            self._write_ssh_config(planned, account)
            self._write_inventory(planned, account, public)
        return self.inventory_path

    def _plan(self, count: int, boards: list[str] | None, port: int) -> list[LabHost]:
        """The hosts ``up`` makes; a lab with hosts in network namespaces gives them other addresses."""
        return plan_hosts(count, boards, port)

    def _with_pythons(self, planned: list[LabHost], account: Account, say: Callable[[str], None]) -> list[LabHost]:
        cache = self.cache or default_cache_dir(account)
        envs = {h.name: PythonEnv(BOARDS[h.board].python, BOARDS[h.board].runtime) for h in planned}
        wanted = list({env.key: env for env in envs.values()}.values())
        # Side by side: a first build is minutes of pip and file copies per venv, each venv under its own lock.
        pythons: dict[str, Path] = {}
        for outcome in each_in_order(lambda env: prepare(env, cache, account, say), wanted):
            if outcome.error is not None:
                raise outcome.error
            pythons[outcome.item.key] = outcome.value  # type: ignore[assignment]
        return [dataclasses.replace(h, python=str(pythons[envs[h.name].key])) for h in planned]

    def _build_libedgetpu(self, planned: list[LabHost], account: Account, say: Callable[[str], None]) -> Path | None:
        """The stand-in libedgetpu, built once per source version, when a host has an Edge TPU; None (and
        a clear line) without a C compiler: the lab still comes up, its Edge TPU cells are skipped."""
        if not any(board_hardware.has_edgetpu(BOARDS[h.board]) for h in planned):
            return None
        try:
            return standin_libedgetpu.build(self.cache or default_cache_dir(account))
        except standin_libedgetpu.CompilerMissing as exc:
            say(f"warning: {exc}")
            return None

    def _build_native_tools(self, account: Account, say: Callable[[str], None]) -> dict[str, Path] | None:
        """The native vcgencmd and nvpmodel (``standin_native``); None (and one line) without a C compiler:
        the hosts then run the Python stand-ins on every call, as real boards would not."""
        try:
            return standin_native.build(self.cache or default_cache_dir(account))
        except standin_native.CompilerMissing as exc:
            say(f"warning: {exc}")
            return None

    def _publish_client_key(self, account: Account) -> Path:
        """The public directory, with the lab key in its authorized_keys; returns the directory."""
        client_public = generate_key(self.client_key, f"farm lab client ({self.dir})")
        public = self.public_dir(account)
        public.mkdir(parents=True, exist_ok=True)
        for directory in [public, *public.parents]:
            if directory in (account.home, self.dir):
                break
            directory.chmod(0o755)  # the login user reads through these
        authorized = public / "authorized_keys"
        authorized.write_text(f"{KEY_OPTIONS} {client_public}\n")
        authorized.chmod(0o644)
        return public

    def _start_all(self, planned: list[LabHost], account: Account, public: Path,
                   say: Callable[[str], None]) -> dict[str, str]:
        """Bring every host up, several at once; their public host keys by name.

        Lines come in host order. When a host cannot start, the hosts already started stay up (the
        state file lists them for `down`, and the next `up` finds them up) and no further host starts.
        """
        roots = DeviceRoots(self.dir / "device-templates", account, self._libedgetpu)
        keys: dict[str, str] = {}
        failures: list[tuple[LabHost, Exception]] = []
        for outcome in each_in_order(lambda host: self._start(host, account, public, roots), planned):
            if outcome.error is not None:
                failures.append((outcome.item, outcome.error))
            elif outcome.value is not None:
                keys[outcome.item.name], line = outcome.value
                say(line)
        if failures:
            raise _start_failure(failures)
        return keys

    def _start(self, host: LabHost, account: Account, public: Path, roots: DeviceRoots) -> tuple[str, str]:
        """Bring one host up (if it is not, or runs an old config); its public host key and a line to say.

        Runs beside other hosts' starts: it touches only this host's files and processes."""
        sshd = self._sshd(host, account.name, public)
        host_key = sshd.ensure_host_key()
        changed = sshd.write_config()
        device_root = public / "devices" / host.name
        running = sshd.pid() is not None
        library = self._libedgetpu
        stale = library is not None and board_hardware.has_edgetpu(BOARDS[host.board]) and \
            board_hardware.library_folder(BOARDS[host.board], device_root) is None
        if running and not changed and device_root.is_dir() and not stale:
            return host_key, f"{host.name}: already up on {host.address}:{host.port}"
        if running:
            sshd.stop()
        roots.lay_out(BOARDS[host.board], device_root)
        sshd.start()
        return host_key, f"{host.name}: up on {host.address}:{host.port} as {BOARDS[host.board].description}"

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop every sshd of the lab (and the sessions they serve); names of those that were running."""
        if not self.dir.is_dir():
            return []
        with file_lock(self.dir / ".lock"):
            stopped = [sshd.name for sshd in self._saved_sshds() if sshd.stop()]
        stop_lingering_agents(f"/farm-lab/{self.id}/")
        if purge:
            state = self.state()
            if state is not None:
                shutil.rmtree(state["public_dir"], ignore_errors=True)
                shutil.rmtree(Path(state["home"]) / ".cache" / "farm-lab" / self.id, ignore_errors=True)
            shutil.rmtree(self.dir, ignore_errors=True)
        return stopped

    def status(self) -> list[HostStatus]:
        out = []
        for host, sshd in zip(self.hosts(), self._saved_sshds(), strict=True):
            pid = sshd.pid()
            out.append(HostStatus(host, pid, pid is not None and sshd.listening(timeout=0.5)))
        return out

    # -- files for the controller and for people ------------------------------------------------------------

    def _write_known_hosts(self, hosts: list[LabHost], keys: dict[str, str]) -> None:
        lines = []
        for host in hosts:
            # OpenSSH's spelling for a non-default port, which paramiko looks up too.
            name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
            key_type, key_data = keys[host.name].split()[:2]
            lines.append(f"{name} {key_type} {key_data}\n")
        self.known_hosts.write_text("".join(lines))

    def _write_ssh_config(self, hosts: list[LabHost], account: Account) -> None:
        blocks = [f"# For people: ssh -F {self.ssh_config_path} {hosts[0].name}\n"]
        for host in hosts:
            blocks.append(f"Host {host.name}\n  HostName {host.address}\n  Port {host.port}\n"
                          f"  User {account.name}\n  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                          f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n")
        self.ssh_config_path.write_text("\n".join(blocks))

    def _host_env(self, host: LabHost, public: Path) -> dict[str, str]:
        root = public / "devices" / host.name
        env = {"FARM_DEVICE_ROOT": str(root),
               # The stand-in nvpmodel, jetson_clocks and vcgencmd, found as the real ones would be.
               "PATH": board_hardware.agent_path(public / "tools")}
        library = board_hardware.library_folder(BOARDS[host.board], root)
        if library is not None:
            # The stand-in libedgetpu.so.1 is found by the dynamic loader here, and on no real host.
            env["LD_LIBRARY_PATH"] = str(library)
        return env

    def _write_inventory(self, hosts: list[LabHost], account: Account, public: Path) -> None:
        entries = [{
            "name": host.name,
            "address": host.address,
            "port": host.port,
            "user": account.name,
            "identity_file": str(self.client_key),
            "python": host.python,
            "board": host.board,
            "tags": ["lab", host.board],
            "env": self._host_env(host, public),
            "workdir": self.workdir(host),
        } for host in hosts]
        header = f"# The simulated lab in {self.dir}, written by 'farm lab up' (and rewritten by every 'up').\n"
        # Trust in the lab's host keys is stated here, in the inventory, where farm reads it (a
        # --known-hosts on the command line still wins); relative, so it holds wherever the lab moves.
        defaults = {"known_hosts": os.path.relpath(self.known_hosts, self.inventory_path.parent)}
        text = yaml.safe_dump({"defaults": defaults, "hosts": entries}, sort_keys=False, default_flow_style=None,
                              width=1000)
        self.inventory_path.write_text(header + text)


def _start_failure(failures: list[tuple[LabHost, Exception]]) -> Exception:
    """One error naming the first host (in host order) that could not start, and any others."""
    host, error = failures[0]
    if isinstance(error, LabError):
        message = str(error) if host.name in str(error) else f"{host.name} could not start: {error}"
    elif isinstance(error, (OSError, subprocess.SubprocessError)):
        message = f"{host.name} could not start: {error}"
    else:
        return error  # a bug, not the machine: its own traceback says most
    others = [h.name for h, _ in failures[1:]]
    if others:
        message += f" (and {len(others)} more could not start: {', '.join(others)})"
    failure = LabError(message)
    failure.__cause__ = error
    return failure
