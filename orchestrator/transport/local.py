"""The local transport: this machine, through subprocesses, no SSH."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import threading
from collections import deque
from pathlib import Path

from ..errors import AgentTimeout, StreamRefused, TransportError
from ..inventory import Host
from .base import AgentChannel, CommandResult, Transport


class LocalTransport(Transport):
    def __init__(self, host: Host, home: Path | None = None) -> None:
        super().__init__(host)
        self.home = Path(home or Path.home())

    def _path(self, remote: str) -> Path:
        return self.home / Path(remote).expanduser()

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        return {**os.environ, **self.host.env_dict, **(env or {})}

    def run(self, argv: list[str], *, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> CommandResult:
        try:
            done = subprocess.run(argv, cwd=self.home, env=self._env(env), capture_output=True, check=False,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            return CommandResult(127, "", str(exc))
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.host.name}: command timed out after {timeout} s: {argv[0]}") from None
        return CommandResult(done.returncode, done.stdout.decode("utf-8", "replace"),
                             done.stderr.decode("utf-8", "replace"))

    def put(self, local: Path, remote: str) -> None:
        target = self._path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(self._path(remote), local)

    def exists(self, remote: str) -> bool:
        return self._path(remote).exists()

    def rename(self, remote_from: str, remote_to: str) -> None:
        os.replace(self._path(remote_from), self._path(remote_to))

    def start(self, argv: list[str], *, env: dict[str, str] | None = None) -> AgentChannel:
        try:
            process = subprocess.Popen(argv, cwd=self.home, env=self._env(env), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise TransportError(f"{self.host.name}: cannot start {argv[0]}: {exc}") from None
        return PipeChannel(process, self.host.name)

    def connect_socket(self, path: str) -> AgentChannel:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(path)
        except OSError as exc:
            connection.close()
            raise StreamRefused(f"{self.host.name}: no stream to {path}: {exc}") from None
        return UnixSocketChannel(connection, self.host.name)

    def close(self) -> None:
        pass


class UnixSocketChannel(AgentChannel):
    """A lingering agent's session on its Unix socket (agent/linger.py), read in the caller's thread."""

    def __init__(self, connection: socket.socket, host_name: str) -> None:
        self.connection = connection
        self.host_name = host_name
        self._reader = connection.makefile("rb")

    def send_line(self, line: str) -> None:
        try:
            self.connection.sendall(line.encode("utf-8") + b"\n")
        except OSError as exc:
            raise TransportError(f"{self.host_name}: the lingering agent is gone ({exc})") from None

    def read_line(self, timeout: float | None = None) -> str:
        self.connection.settimeout(timeout)
        try:
            line = self._reader.readline()
        except TimeoutError:
            raise AgentTimeout(f"{self.host_name}: no answer from the agent in {timeout} s") from None
        except OSError as exc:
            raise TransportError(f"{self.host_name}: the lingering agent is gone ({exc})") from None
        if not line.endswith(b"\n"):
            raise TransportError(f"{self.host_name}: the lingering agent closed its socket "
                                 "(it went stale or was stopped)")
        return line.decode("utf-8", "replace").rstrip("\n")

    def stderr_tail(self) -> str:
        return "(a lingering agent's stderr goes to its log beside its socket)"

    def close(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._reader.close()
        self.connection.close()


class PipeChannel(AgentChannel):
    """Lines from a child's stdout, read by a thread so reads can time out."""

    def __init__(self, process: subprocess.Popen, host_name: str) -> None:
        self.process = process
        self.host_name = host_name
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def send_line(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line.encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise TransportError(f"{self.host_name}: agent is gone ({exc}); {self.stderr_tail()}") from None

    def read_line(self, timeout: float | None = None) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AgentTimeout(f"{self.host_name}: no answer from the agent in {timeout} s") from None
        if line is None:
            self._lines.put(None)
            self.process.wait()
            raise TransportError(f"{self.host_name}: agent exited with code {self.process.returncode}; "
                                 f"{self.stderr_tail()}")
        return line.decode("utf-8", "replace").rstrip("\n")

    def stderr_tail(self) -> str:
        return " | ".join(list(self._stderr)[-5:]) or "(nothing on stderr)"

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
