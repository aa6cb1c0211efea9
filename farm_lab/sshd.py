"""One real OpenSSH server per simulated host: keys, config, start, stop, state.

Each server has its own config, host key, pid file and log in the lab's
private directory, and listens on its own loopback address, so the lab's
servers never touch the machine's own sshd and ``down`` stops exactly them.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .account import LabError

# By absolute path: sshd re-executes itself for every connection and refuses a relative argv[0].
SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
START_SECONDS = 10.0


def require_openssh() -> None:
    if not SSHD.is_file():
        raise LabError(f"the lab runs real OpenSSH servers and {SSHD} is missing: install it with "
                       "'apt-get install openssh-server' (its own sshd service may stay disabled).")
    if shutil.which("ssh-keygen") is None:
        raise LabError("the lab needs ssh-keygen to make its keys: install it with 'apt-get install openssh-client'.")
    if os.geteuid() == 0:
        # Root's sshd drops privileges into this directory for every connection; packages create it at boot.
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)


@functools.lru_cache(maxsize=1)
def openssh_version() -> tuple[int, int]:
    done = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stdout + done.stderr)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def generate_key(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (made once); returns the public key line."""
    public = path.with_name(path.name + ".pub")
    if not (path.exists() and public.exists()):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        public.unlink(missing_ok=True)
        done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LabError(f"ssh-keygen could not make {path}: {done.stderr.strip()}")
    return public.read_text().strip()


@dataclass(frozen=True)
class Sshd:
    name: str
    address: str
    port: int
    directory: Path            # private to the controller: host key, config, pid file, log
    authorized_keys: Path
    user: str
    # Words before sshd's own argv, e.g. ("ip", "netns", "exec", NS) for a host in a network namespace.
    launcher: tuple[str, ...] = ()

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def config_path(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def pid_path(self) -> Path:
        return self.directory / "sshd.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    def ensure_host_key(self) -> str:
        return generate_key(self.host_key, f"farm lab host {self.name}")

    def config(self) -> str:
        lines = [
            f"# sshd for the simulated host {self.name}, written by farm lab up.",
            f"Port {self.port}",
            f"ListenAddress {self.address}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            # Without PAM, sshd only needs the account unlocked; with it, a full login stack.
            "UsePAM no",
            # The lab's files may live under /tmp or in directories the login user does not own.
            "StrictModes no",
            # The default, 10:30:100, refuses connections beyond 10 concurrent handshakes:
            # a controller opening a whole lab at once would see random resets.
            "MaxStartups 200:30:400",
            "MaxSessions 64",
            "ClientAliveInterval 5",
            "ClientAliveCountMax 3",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
        ]
        if openssh_version() >= (9, 8):
            # Tests connect and drop on purpose (refused host keys, probes); penalties would lock them out.
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    def write_config(self) -> bool:
        """Write the config; True if it differs from the one there before."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = self.config()
        if self.config_path.exists() and self.config_path.read_text() == text:
            return False
        self.config_path.write_text(text)
        return True

    def pid(self) -> int | None:
        """The pid of this host's running sshd, checked to be ours (pid files outlive processes)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return pid if str(self.config_path) in command else None

    def listening(self, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def bound(self, pid: int) -> bool:
        """Whether a socket listens on our address and port in ``pid``'s network namespace.

        Read from the kernel's table rather than by connecting: sshd forks and re-executes itself for
        every connection, a cost a 250-host lab paid once per host just to learn it had started.
        """
        wanted = f"{struct.unpack('=I', socket.inet_aton(self.address))[0]:08X}:{self.port:04X}"
        try:
            table = Path(f"/proc/{pid}/net/tcp").read_text()
        except OSError:
            return False
        # Columns: sl, local_address, rem_address, st (0A: LISTEN), ...
        return any(fields[1] == wanted and fields[3] == "0A"
                   for fields in (line.split() for line in table.splitlines()[1:]) if len(fields) > 3)

    def start(self) -> int:
        self.pid_path.unlink(missing_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        done = subprocess.run([*self.launcher, str(SSHD), "-f", str(self.config_path), "-E", str(self.log_path)],
                              capture_output=True, text=True, check=False, timeout=30)
        if done.returncode != 0:
            raise LabError(f"sshd for {self.name} ({self.address}:{self.port}) did not start: "
                           f"{done.stderr.strip() or self._log_since(offset)}")
        # sshd forks into the background before it binds: success is a pid file and a listening port.
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and self.bound(pid):
                return pid
            if pid is None and "Cannot bind any address" in self._log_since(offset):
                break  # the daemon has already given up
            time.sleep(0.02)
        log = self._log_since(offset).rstrip(".")
        hint = (f"; something else listens on {self.address}:{self.port}: choose another port with --port"
                if "Address already in use" in log else "")
        raise LabError(f"sshd for {self.name} could not listen on {self.address}:{self.port}: {log}{hint} "
                       f"(full log: {self.log_path})")

    def stop(self) -> bool:
        """Stop this sshd and its sessions (and so the agents they run); True if it was running."""
        pid = self.pid()
        self.pid_path.unlink(missing_ok=True)
        if pid is None:
            return False
        # Children first in the list, found before the listener dies and they are re-parented.
        tree = [pid, *_descendants(pid)]
        for member in tree:
            _signal(member, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.02)
        survivors = [member for member in tree if _alive(member)]
        for member in survivors:
            _signal(member, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_alive(p) for p in survivors):
            time.sleep(0.02)
        return True

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                lines = handle.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(nothing in its log)"


def free_port(addresses: list[str], low: int = 20000, high: int = 45000) -> int:
    """A port free on every one of ``addresses``, away from 22 so the user's own lab can keep running."""
    for _ in range(200):
        port = random.randint(low, high)
        try:
            for address in addresses:
                with socket.socket() as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return port
    raise LabError(f"no port between {low} and {high} is free on all of {', '.join(addresses[:3])}...")


def _alive(pid: int) -> bool:
    """Running, not a zombie: a container's init may never reap the daemons we stop."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _signal(pid: int, which: signal.Signals) -> None:
    try:
        os.kill(pid, which)
    except (ProcessLookupError, PermissionError):
        pass
