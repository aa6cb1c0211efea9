"""What SshTransport negotiates with a stock OpenSSH server, and what it no longer does per connection."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import pytest

from farm_lab.sshd import Sshd, free_port
from orchestrator.transport import ssh_direct
from orchestrator.transport.ssh import SshTransport

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

WEAK = {"3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "hmac-md5", "hmac-md5-96", "hmac-sha1-96"}


def _authorized_keys_of(running_lab: RunningLab) -> Path:
    state = running_lab.lab.state() or {}
    return Path(state["public_dir"]) / "authorized_keys"


def _agreed_kex(caplog: pytest.LogCaptureFixture) -> list[str]:
    # paramiko keeps no record of the key exchange once it is done, but logs what it agreed on.
    return [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith("Kex: ")]


def test_the_lab_sshd_negotiates_aes_gcm_and_an_x25519_key_exchange(running_lab: RunningLab,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="paramiko"), \
            SshTransport(running_lab.host("rpi4"), known_hosts=running_lab.known_hosts) as transport:
        assert transport.run(["true"]).ok
        link = transport._transport()
        options = link.get_security_options()
        assert (link.local_cipher, link.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
        # OpenSSH 9.2 has no ML-KEM hybrid; where both ends do (9.9+), paramiko's order picks it first.
        assert _agreed_kex(caplog) in (["curve25519-sha256@libssh.org"], ["mlkem768x25519-sha256"])
        assert not WEAK & set(options.ciphers + options.digests)
        assert options.ciphers[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class _RestrictedSshd(Sshd):
    """A stock sshd that offers only what paramiko's defaults put last: CTR, a plain SHA-2 HMAC, DH group 14."""

    def config(self) -> str:
        return super().config() + "Ciphers aes256-ctr\nMACs hmac-sha2-512\nKexAlgorithms diffie-hellman-group14-sha256\n"


def test_a_server_without_gcm_or_x25519_still_connects(running_lab: RunningLab, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    rpi = running_lab.host("rpi4")
    address = rpi.address
    sshd = _RestrictedSshd("restricted", address, free_port([address]), tmp_path / "sshd",
                           _authorized_keys_of(running_lab), rpi.user or "")
    sshd.ensure_host_key()
    sshd.write_config()
    sshd.start()
    try:
        host = dataclasses.replace(rpi, name="restricted", port=sshd.port)
        with caplog.at_level(logging.DEBUG, logger="paramiko"), \
                SshTransport(host, known_hosts=tmp_path / "known_hosts", accept_new_host_keys=True) as transport:
            assert transport.run(["true"]).ok
            link = transport._transport()
            assert (link.local_cipher, link.local_mac) == ("aes256-ctr", "hmac-sha2-512")
            assert _agreed_kex(caplog) == ["diffie-hellman-group14-sha256"]
        # The host key was checked and saved as before: a second connection checks it against the file.
        with SshTransport(host, known_hosts=tmp_path / "known_hosts") as transport:
            assert transport.run(["true"]).ok
    finally:
        sshd.stop()


def test_sshd_debug_messages_are_escaped_only_when_logged(running_lab: RunningLab, caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The lab's authorized_keys line carries `restrict,...`: sshd answers the key with debug messages.
    escaped: list[bytes] = []
    real = paramiko.util.safe_string
    monkeypatch.setattr(paramiko.util, "safe_string", lambda s: escaped.append(s) or real(s))
    host = running_lab.host("rpi4")
    with SshTransport(host, known_hosts=running_lab.known_hosts) as transport:
        assert transport.run(["true"]).ok
    assert escaped == []
    with caplog.at_level(logging.DEBUG, logger="paramiko"), \
            SshTransport(host, known_hosts=running_lab.known_hosts) as transport:
        assert transport.run(["true"]).ok
    assert escaped, "the lab's sshd sent no debug message: this test no longer tests anything"
    assert any("Debug msg:" in record.getMessage() for record in caplog.records)


def test_ssh_config_paths_are_expanded_once_per_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        (tmp_path / name / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    first = ssh_direct._identity()
    calls: list[str] = []
    real = ssh_direct.os.path.expanduser
    monkeypatch.setattr(ssh_direct.os.path, "expanduser", lambda p: calls.append(p) or real(p))
    assert ssh_direct._identity() == first
    assert calls == []  # the second connection under the same home expands nothing
    (tmp_path / "b" / ".ssh" / "config").write_text("Host x\n  Port 2\n")
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    second = ssh_direct._identity()
    assert second != first and calls  # another home: its own files, read again
    assert ssh_direct._settings().ssh_config.lookup("x")["port"] == "2"

