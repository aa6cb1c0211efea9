"""Build the agent into one zipapp, named by its content hash, and put it on hosts.

The archive is byte-for-byte reproducible (fixed timestamps, sorted entries), so
its hash changes only when the agent's code does, and a host that already has
that hash is sent nothing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .own_packages import AGENT_DIR
from .transport.base import Transport

# By location, not `import agent`: a user's own agent/ folder on sys.path must never be what is deployed.
AGENT_SOURCE = AGENT_DIR
# The archive's entry point: unpacks it beside itself once, so later starts import byte code, not source.
MAIN_SOURCE = AGENT_SOURCE / "zipapp_main.py"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
UTF8_NAME = 0x800  # general purpose flag bit 11: the entry's name is UTF-8


@dataclass(frozen=True)
class AgentBundle:
    data: bytes
    sha256: str

    @property
    def file_name(self) -> str:
        return f"agent-{self.sha256[:16]}.pyz"

    @property
    def unpacked_name(self) -> str:
        """The folder the archive unpacks itself into on its first start (agent/zipapp_main.py)."""
        return f"agent-{self.sha256[:16]}.d"


@functools.lru_cache(maxsize=1)
def build_agent() -> AgentBundle:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "__main__.py", MAIN_SOURCE.read_bytes())
        for name, path in agent_sources():
            _add(archive, name, path.read_bytes())
    data = b"#!/usr/bin/env python3\n" + buffer.getvalue()
    return AgentBundle(data=data, sha256=hashlib.sha256(data).hexdigest())


def agent_sources() -> list[tuple[str, Path]]:
    """(archive name, file) of every module of the agent, its subpackages included, in a fixed order.

    Sorted by the archive name (POSIX separators), not by the file system's order, so the
    archive and its hash are the same on every controller.
    """
    found = [(f"agent/{path.relative_to(AGENT_SOURCE).as_posix()}", path) for path in AGENT_SOURCE.rglob("*.py")
             if "__pycache__" not in path.relative_to(AGENT_SOURCE).parts]
    return sorted(found)


class _Utf8Entry(zipfile.ZipInfo):
    """An entry whose name is marked UTF-8 (bit 11), as zipfile marks only non-ASCII names.

    zipimport decodes unmarked names as cp437, and on Python 3.6 imports that codec to do so at
    every start from the archive; marked ones it decodes as UTF-8, which needs no import.
    """

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # zipfile's hook for a name and its flags
        return self.filename.encode("utf-8"), self.flag_bits | UTF8_NAME


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = _Utf8Entry(name, date_time=FIXED_TIME)
    # Every start reads __main__.py from the archive: stored, it is read without loading zlib.
    # The rest is read only by the first start's unpacking.
    info.compress_type = zipfile.ZIP_STORED if name == "__main__.py" else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


@dataclass(frozen=True)
class Deployment:
    remote_path: str
    uploaded: bool


def ensure_file(transport: Transport, remote: str, data_path: Path) -> bool:
    """Upload ``data_path`` to ``remote`` unless it is there; atomic. True if sent."""
    if transport.exists(remote):
        return False
    # Unique per upload: two controllers (or two inventory hosts sharing one home) may upload at once.
    temporary = f"{remote}.tmp-{secrets.token_hex(6)}"
    transport.put(data_path, temporary)
    transport.rename(temporary, remote)
    return True


def agent_path(transport: Transport) -> str:
    """Where this controller's agent lives on the host, deployed or not."""
    return f"{transport.host.workdir}/{build_agent().file_name}"


def deploy_agent(transport: Transport) -> Deployment:
    bundle = build_agent()
    remote = agent_path(transport)
    if transport.exists(remote):
        return Deployment(remote, uploaded=False)
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / bundle.file_name
        local.write_bytes(bundle.data)
        ensure_file(transport, remote, local)
    return Deployment(remote, uploaded=True)
